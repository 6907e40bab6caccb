package x509x

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
)

func classicalCSR(t testing.TB, a algo.Algorithm) []byte {
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		t.Fatal(err)
	}
	der, err := CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, DNSNames: []string{"x.example.com"}}, s, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestClassicalCSRRoundTrip(t *testing.T) {
	for _, a := range []algo.Algorithm{algo.ECDSAP256, algo.ECDSAP521, algo.RSA2048, algo.Ed25519} {
		der := classicalCSR(t, a)
		for _, in := range [][]byte{der, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})} {
			raw, err := DecodeCSR(in)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := ParseCertificateRequest(raw)
			if err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			if csr.Algorithm != a || csr.DNSNames[0] != "x.example.com" {
				t.Errorf("%s: parsed %s %v", a, csr.Algorithm, csr.DNSNames)
			}
		}
	}
}

func TestCSRLimits(t *testing.T) {
	if _, err := DecodeCSR(make([]byte, 3*MaxCSR)); err == nil {
		t.Error("oversized CSR accepted")
	}
	if _, err := DecodeCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})); err == nil {
		t.Error("certificate PEM accepted as a CSR")
	}
}

// FuzzParseCertificateRequest: whatever the bytes, the CSR parser returns
// an error or a CSR whose signature verified; it never panics.
func FuzzParseCertificateRequest(f *testing.F) {
	for _, a := range []algo.Algorithm{algo.ECDSAP256, algo.Ed25519} {
		f.Add(classicalCSR(f, a))
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := DecodeCSR(data)
		if err != nil {
			return
		}
		csr, err := ParseCertificateRequest(raw)
		if err == nil && csr.PublicKey == nil {
			t.Fatal("accepted CSR without a public key")
		}
	})
}
