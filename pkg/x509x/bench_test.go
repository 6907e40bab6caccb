package x509x

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
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

// BenchmarkIssueCompositeKEMLeaf is the rate of certificates for a
// composite ML-KEM public key (as `cert issue --pubkey` makes them), by a
// composite ML-DSA CA and, for comparison, an ML-DSA-65 CA; the ML-KEM-768
// leaf is the baseline.
func BenchmarkIssueCompositeKEMLeaf(b *testing.B) {
	for _, c := range []struct{ ca, leaf algo.Algorithm }{
		{algo.MLDSA65, algo.MLKEM768},
		{algo.MLDSA65, algo.CompositeMLKEM768X25519},
		{algo.CompositeMLDSA65ECDSAP256, algo.CompositeMLKEM768X25519},
		{algo.CompositeMLDSA87ECDSAP384, algo.CompositeMLKEM1024P384},
	} {
		b.Run(string(c.ca)+"/"+string(c.leaf), func(b *testing.B) {
			issuing := newRoot(b, c.ca, "")
			priv, err := algo.GenerateKey(c.leaf, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			pub, _ := algo.PublicKey(priv)
			spki, _ := algo.MarshalPKIX(pub)
			tmpl := leafTemplate(b, "kem.example.com")
			tmpl.KeyUsage = x509.KeyUsageKeyEncipherment
			tmpl.ExtKeyUsage = nil
			for b.Loop() {
				pub, err := algo.ParsePKIX(spki)
				if err != nil {
					b.Fatal(err)
				}
				tmpl.SerialNumber = serial(b)
				if _, err := CreateCertificate(rand.Reader, tmpl, pub, nil, issuing.iss); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
		})
	}
}
