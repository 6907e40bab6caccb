package x509x

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// interopDir holds the IETF hackathon artifacts (see shared/interop/README.md).
const interopDir = "../../../shared/interop/pqc-certificates-r5"

// fixedNow lies inside the validity of every interop artifact (the Bouncy
// Castle ones expire in July 2027).
var fixedNow = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func newSigner(t testing.TB, a algo.Algorithm) algo.Signer {
	t.Helper()
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func caTemplate(t testing.TB, cn string, pathLen int) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"qpki test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
	}
}

func leafTemplate(t testing.TB, cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
}

// ca is an issuing certificate with its signer(s).
type ca struct {
	cert *x509.Certificate
	iss  Issuer
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newRoot makes a self-signed CA; alt != "" makes it Catalyst.
func newRoot(t testing.TB, a, alt algo.Algorithm) ca {
	t.Helper()
	iss := Issuer{Signer: newSigner(t, a)}
	var altPub crypto.PublicKey
	if alt != "" {
		iss.AltSigner = newSigner(t, alt)
		altPub = iss.AltSigner.Public()
	}
	der, err := CreateCertificate(rand.Reader, caTemplate(t, "root "+string(a)+" "+string(alt), 1), iss.Signer.Public(), altPub, iss)
	if err != nil {
		t.Fatalf("root %s/%s: %v", a, alt, err)
	}
	c := mustParse(t, der)
	iss.Cert = c
	return ca{c, iss}
}

// newSub makes a CA certified by parent.
func newSub(t testing.TB, parent ca, a, alt algo.Algorithm) ca {
	t.Helper()
	iss := Issuer{Signer: newSigner(t, a)}
	var altPub crypto.PublicKey
	if alt != "" {
		iss.AltSigner = newSigner(t, alt)
		altPub = iss.AltSigner.Public()
	}
	der, err := CreateCertificate(rand.Reader, caTemplate(t, "issuing "+string(a)+" "+string(alt), 0), iss.Signer.Public(), altPub, parent.iss)
	if err != nil {
		t.Fatalf("issuing %s/%s: %v", a, alt, err)
	}
	c := mustParse(t, der)
	iss.Cert = c
	return ca{c, iss}
}

func issueLeaf(t testing.TB, parent ca, pub, altPub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	der, err := CreateCertificate(rand.Reader, leafTemplate(t, "leaf.example.com"), pub, altPub, parent.iss)
	if err != nil {
		t.Fatalf("leaf: %v", err)
	}
	return mustParse(t, der)
}

// openssl finds the openssl binary; without it the test fails in CI and
// is skipped elsewhere.
func openssl(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not found (required when CI=true)")
		}
		t.Skip("openssl not found")
	}
	return p
}
