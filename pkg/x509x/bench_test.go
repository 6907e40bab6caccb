package x509x

import (
	"crypto"
	"crypto/rand"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
)

var benchCAs = []struct {
	name     string
	key, alt algo.Algorithm
}{
	{"ml-dsa-65", algo.MLDSA65, ""},
	{"ml-dsa-87", algo.MLDSA87, ""},
	{"slh-dsa-sha2-128f", algo.SLHDSASHA2128f, ""},
	{"catalyst-p384+ml-dsa-65", algo.ECDSAP384, algo.MLDSA65},
	{"composite-mldsa65-ecdsa-p256", algo.CompositeMLDSA65ECDSAP256, ""},
}

// BenchmarkSign is the raw signature rate of each CA's key(s) over a
// certificate-sized message (both keys for Catalyst).
func BenchmarkSign(b *testing.B) {
	msg := make([]byte, 1200)
	rand.Read(msg)
	for _, c := range benchCAs {
		b.Run(c.name, func(b *testing.B) {
			s := newSigner(b, c.key)
			var alt algo.Signer
			if c.alt != "" {
				alt = newSigner(b, c.alt)
			}
			for b.Loop() {
				if _, err := algo.SignDigest(s, rand.Reader, msg, false); err != nil {
					b.Fatal(err)
				}
				if alt != nil {
					if _, err := alt.Sign(rand.Reader, msg, crypto.Hash(0)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
		})
	}
}

// BenchmarkIssue is the rate of certificates issued from a CSR (parse and
// proof of possession, build, sign, self-check) by each CA.
func BenchmarkIssue(b *testing.B) {
	csrDER, err := CreateCertificateRequest(rand.Reader, csrTemplate(), newSigner(b, algo.ECDSAP256), nil, false)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range benchCAs {
		b.Run(c.name, func(b *testing.B) {
			issuing := newRoot(b, c.key, c.alt)
			tmpl := leafTemplate(b, "leaf.example.com")
			for b.Loop() {
				csr, err := ParseCertificateRequest(csrDER)
				if err != nil {
					b.Fatal(err)
				}
				tmpl.SerialNumber = serial(b)
				if _, err := CreateCertificate(rand.Reader, tmpl, csr.PublicKey, csr.AltPublicKey, issuing.iss); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
		})
	}
}
