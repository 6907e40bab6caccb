package cose

import (
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// Raw CWT signing rates: one token per iteration, claims encoding, iat/cti
// generation and x5chain included, no queue.

func benchmarkSignCWT(b *testing.B, a algo.Algorithm, withChain bool) {
	if !a.Valid() {
		b.Skipf("%s is not registered in pkg/algo yet", a)
	}
	s := newSigner(b, a)
	var chains [][]*x509.Certificate
	if withChain {
		pki := newPKI(b, "Bench")
		chains = [][]*x509.Certificate{pki.leafFor(b, s, "bench", nil)}
	}
	req := SignRequest{Type: TypeCWT, Claims: &Claims{Issuer: "qpki", Subject: "device", Expiry: time.Now().Add(24 * time.Hour)}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Sign(rand.Reader, req, []Signer{s}, chains); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func BenchmarkSignCWTES256(b *testing.B)          { benchmarkSignCWT(b, algo.ECDSAP256, false) }
func BenchmarkSignCWTES256X5Chain(b *testing.B)   { benchmarkSignCWT(b, algo.ECDSAP256, true) }
func BenchmarkSignCWTEd25519(b *testing.B)        { benchmarkSignCWT(b, algo.Ed25519, false) }
func BenchmarkSignCWTMLDSA65(b *testing.B)        { benchmarkSignCWT(b, "ml-dsa-65", false) }
func BenchmarkSignCWTMLDSA65X5Chain(b *testing.B) { benchmarkSignCWT(b, "ml-dsa-65", true) }

func BenchmarkVerifyCWTES256(b *testing.B) {
	pki := newPKI(b, "Bench")
	s := newSigner(b, algo.ECDSAP256)
	chain := pki.leafFor(b, s, "bench", nil)
	tok, err := Sign(rand.Reader, SignRequest{Type: TypeCWT, Claims: &Claims{Subject: "d"}}, []Signer{s}, [][]*x509.Certificate{chain})
	if err != nil {
		b.Fatal(err)
	}
	opts := VerifyOptions{Roots: []*x509.Certificate{pki.root}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(tok, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
