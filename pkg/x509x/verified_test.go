package x509x

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// lyingSigner signs with another key.
type lyingSigner struct {
	algo.Signer
	other *ecdsa.PrivateKey
}

func (l lyingSigner) Sign(r io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	return ecdsa.SignASN1(r, l.other, digest)
}

// The certificate of an ECDSA signer is the one crypto/x509 makes (the
// same TBSCertificate, a signature that verifies), and a signer that
// returns a bad signature is caught.
func TestVerifiedCertificate(t *testing.T) {
	for _, c := range []struct {
		alg   algo.Algorithm
		curve elliptic.Curve
	}{{algo.ECDSAP256, elliptic.P256()}, {algo.ECDSAP384, elliptic.P384()}, {algo.ECDSAP521, elliptic.P521()}} {
		priv, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		s, err := algo.NewSigner(priv, c.alg)
		if err != nil {
			t.Fatal(err)
		}
		leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: "self-check.example"},
			NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1800000000, 0), DNSNames: []string{"self-check.example"},
			SubjectKeyId: []byte{1, 2, 3}, AuthorityKeyId: []byte{4, 5, 6}}
		root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Root"}, NotBefore: tmpl.NotBefore,
			NotAfter: tmpl.NotAfter, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: []byte{4, 5, 6}}
		rootDER, err := CreateCertificate(rand.Reader, root, priv.Public(), nil, Issuer{Signer: s})
		if err != nil {
			t.Fatal(err)
		}
		rootCert, err := x509.ParseCertificate(rootDER)
		if err != nil {
			t.Fatal(err)
		}
		if err := rootCert.CheckSignatureFrom(rootCert); err != nil {
			t.Fatalf("%s self-signed: %v", c.alg, err)
		}
		fast, err := CreateCertificate(rand.Reader, tmpl, leafKey.Public(), nil, Issuer{Cert: rootCert, Signer: s})
		if err != nil {
			t.Fatal(err)
		}
		t2 := *tmpl
		t2.SignatureAlgorithm = SignatureAlgorithm(c.alg, false)
		std, err := x509.CreateCertificate(rand.Reader, &t2, rootCert, leafKey.Public(), s)
		if err != nil {
			t.Fatal(err)
		}
		a, err := x509.ParseCertificate(fast)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := x509.ParseCertificate(std)
		if !bytes.Equal(a.RawTBSCertificate, b.RawTBSCertificate) || a.SignatureAlgorithm != b.SignatureAlgorithm {
			t.Fatalf("%s: the TBS differs from crypto/x509's", c.alg)
		}
		if err := a.CheckSignatureFrom(rootCert); err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}

		other, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		_, err = CreateCertificate(rand.Reader, tmpl, leafKey.Public(), nil, Issuer{Cert: rootCert, Signer: lyingSigner{s, other}})
		if err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%s: a bad signature gave %v", c.alg, err)
		}
		if _, err := CreateCertificate(rand.Reader, tmpl, leafKey.Public(), nil, Issuer{Cert: rootCert, Signer: lyingSigner{s, priv}}); err != nil {
			t.Errorf("%s: a good signature from another path: %v", c.alg, err)
		}
	}
}
