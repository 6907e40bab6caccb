package algo

import (
	"crypto"
	"crypto/rand"
	"testing"

	"github.com/cloudflare/circl/sign/slhdsa"
)

// BenchmarkSignVerify: signature and verification rates of the algorithms
// issue 25 adds, next to pure ML-DSA-65, over a certificate-sized message.
// Pre-hash signatures are made with circl directly (qpki does not sign
// them); brainpool composites are verify-only and are not benchmarked here
// (their traditional half runs in math/big).
func BenchmarkSignVerify(b *testing.B) {
	msg := make([]byte, 1200)
	rand.Read(msg)
	type sv struct {
		name   string
		sign   func() []byte
		verify func(sig []byte) error
	}
	var cases []sv
	for _, a := range []Algorithm{MLDSA65, CompositeMLDSA65ECDSAP256, CompositeMLDSA87Ed448} {
		priv, _ := GenerateKey(a, rand.Reader)
		s := priv.(crypto.Signer)
		v := s.Public().(interface{ Verify(msg, sig []byte) error })
		cases = append(cases, sv{string(a),
			func() []byte { sig, _ := s.Sign(rand.Reader, msg, crypto.Hash(0)); return sig },
			func(sig []byte) error { return v.Verify(msg, sig) }})
	}
	// HashSLH-DSA-SHA2-128s with SHA-256, made with circl.
	{
		k, _ := GenerateSLHDSAKey(SLHDSASHA2128s, rand.Reader)
		ph, _ := ParsePreHashPublicKey(HashSLHDSASHA2128sSHA256, k.pub.raw)
		cases = append(cases, sv{string(HashSLHDSASHA2128sSHA256),
			func() []byte {
				m, _ := slhPreHashMessage(phSHA256, msg)
				sig, _ := slhdsa.SignRandomized(&k.sk, rand.Reader, m, nil)
				return sig
			},
			func(sig []byte) error { return ph.Verify(msg, sig) }})
	}
	for _, c := range cases {
		sig := c.sign()
		if err := c.verify(sig); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		b.Run("sign/"+c.name, func(b *testing.B) {
			for b.Loop() {
				c.sign()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
		b.Run("verify/"+c.name, func(b *testing.B) {
			for b.Loop() {
				if err := c.verify(sig); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkHashMLDSAVerify: HashML-DSA-65 verification (the linked
// Verify_internal) next to pure ML-DSA-65 verification, both of real
// signatures over the same message.
func BenchmarkHashMLDSAVerify(b *testing.B) {
	k, _ := GenerateMLDSAKey(MLDSA65, rand.Reader)
	msg := make([]byte, 1200)
	pure, _ := k.Sign(rand.Reader, msg, nil)
	pre := hashMLDSA65Sign(k, msg, nil)
	b.Run("pure-ml-dsa-65", func(b *testing.B) {
		for b.Loop() {
			if err := k.pub.Verify(msg, pure); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	b.Run("hash-ml-dsa-65-with-sha512", func(b *testing.B) {
		for b.Loop() {
			if err := VerifyPreHash(HashMLDSA65SHA512, k.pub, msg, nil, pre); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}

// BenchmarkCompositeBrainpoolVerify: verification of a composite
// MLDSA65-ECDSA-brainpoolP256r1 signature, whose brainpool half runs in
// math/big (the signature's brainpool half is made with the test's own
// variable-time arithmetic, never available to qpki's signers).
func BenchmarkCompositeBrainpoolVerify(b *testing.B) {
	p, _ := compositeParamsOf(CompositeMLDSA65ECDSABP256)
	c := bpP256
	d, pub, _ := c.generateEphemeral(rand.Reader)
	m, _ := GenerateMLDSAKey(MLDSA65, rand.Reader)
	msg := make([]byte, 1200)
	mPrime, _ := p.messageRepresentative(msg, nil)
	pqSig, _ := m.Sign(rand.Reader, mPrime, &ContextOpts{Context: []byte(p.label)})
	tradSig := bpSignForTest(c, d, mPrime)
	cpub, err := ParseCompositePublicKey(p.name, append(m.pub.Bytes(), pub.Bytes()...))
	if err != nil {
		b.Fatal(err)
	}
	sig := append(pqSig, tradSig...)
	if err := cpub.Verify(msg, sig); err != nil {
		b.Fatal(err)
	}
	b.Run("verify/"+string(p.name), func(b *testing.B) {
		for b.Loop() {
			cpub.Verify(msg, sig)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}

// BenchmarkKEM: encapsulation and decapsulation rates of every composite
// ML-KEM combination qpki can decapsulate, next to ML-KEM-768.
func BenchmarkKEM(b *testing.B) {
	algs := []Algorithm{MLKEM768}
	for _, p := range compositeKEMSets {
		if p.kind != tradBrainpool {
			algs = append(algs, p.name)
		}
	}
	for _, a := range algs {
		priv, err := GenerateKey(a, rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		pub := priv.(KEMPrivateKey).Public().(KEMPublicKey)
		ct, _, _ := pub.Encapsulate(rand.Reader)
		b.Run("encaps/"+string(a), func(b *testing.B) {
			for b.Loop() {
				pub.Encapsulate(rand.Reader)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
		b.Run("decaps/"+string(a), func(b *testing.B) {
			for b.Loop() {
				priv.(KEMPrivateKey).Decapsulate(ct)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
	// Brainpool: encapsulation only (math/big).
	bp, _ := compositeKEMParamsOf(CompositeMLKEM768BP256)
	_, eph, _ := brainpoolCurve(bp.trad).generateEphemeral(rand.Reader)
	mk, _ := GenerateMLKEMKey(MLKEM768, rand.Reader)
	pub, _ := ParseCompositeKEMPublicKey(bp.name, append(mk.pub.Bytes(), eph.Bytes()...))
	b.Run("encaps/"+string(bp.name), func(b *testing.B) {
		for b.Loop() {
			pub.Encapsulate(rand.Reader)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}
