package cms

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// testPKI is a root CA (ECDSA P-256) that certifies test keys.
type testPKI struct {
	root   *x509.Certificate
	signer algo.Signer
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	return n
}

func testRoot(t testing.TB) testPKI {
	pkiOnce.Do(func() {
		priv, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
		s, _ := algo.NewSigner(priv, algo.ECDSAP256)
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: "cms test root"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		}
		der, err := x509x.CreateCertificate(rand.Reader, tmpl, s.Public(), nil, x509x.Issuer{Signer: s})
		if err != nil {
			panic(err)
		}
		c, _ := x509.ParseCertificate(der)
		pki = testPKI{root: c, signer: s}
	})
	return pki
}

// leaf makes a key of algorithm a and a certificate for it from the root.
func leaf(t testing.TB, a algo.Algorithm) (crypto.PrivateKey, *x509.Certificate) {
	t.Helper()
	p := testRoot(t)
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := algo.PublicKey(priv)
	ku := x509.KeyUsageDigitalSignature
	if !a.CanSign() || a.Family() == algo.FamilyRSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "cms " + string(a)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: ku, BasicConstraintsValid: true,
	}
	der, err := x509x.CreateCertificate(rand.Reader, tmpl, pub, nil, x509x.Issuer{Cert: p.root, Signer: p.signer})
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return priv, c
}

func signerOf(t testing.TB, priv crypto.PrivateKey) algo.Signer {
	t.Helper()
	pub, _ := algo.PublicKey(priv)
	a, err := algo.Of(pub)
	if err != nil {
		t.Fatal(err)
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
