package algo

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
)

// The private-key check agrees with crypto/ecdsa's verification, on good
// signatures and on every kind of bad one.
func TestECDSASelfCheckAgreesWithVerify(t *testing.T) {
	for _, c := range []struct {
		alg   Algorithm
		curve elliptic.Curve
		hash  crypto.Hash
	}{{ECDSAP256, elliptic.P256(), crypto.SHA256}, {ECDSAP384, elliptic.P384(), crypto.SHA384}, {ECDSAP521, elliptic.P521(), crypto.SHA512}} {
		priv, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		other, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		s, err := NewSigner(priv, c.alg)
		if err != nil {
			t.Fatal(err)
		}
		sc, ok := s.(SelfChecker)
		if !ok {
			t.Fatalf("%s: not a SelfChecker", c.alg)
		}
		for i := 0; i < 200; i++ {
			digest := make([]byte, c.hash.Size())
			rand.Read(digest)
			sig, err := s.Sign(rand.Reader, digest, c.hash)
			if err != nil {
				t.Fatal(err)
			}
			otherSig, _ := ecdsa.SignASN1(rand.Reader, other, digest)
			flipped := append([]byte(nil), sig...)
			flipped[len(flipped)-1-i%8] ^= 1 << (i % 8)
			wrongDigest := append([]byte(nil), digest...)
			wrongDigest[i%len(wrongDigest)] ^= 0x80
			for name, tc := range map[string]struct{ d, s []byte }{
				"good": {digest, sig}, "s negated": {digest, negateS(t, sig, priv.Curve.Params().N)},
				"another key's": {digest, otherSig}, "flipped bit": {digest, flipped},
				"other digest": {wrongDigest, sig}, "truncated": {digest, sig[:len(sig)-1]}, "empty": {digest, nil},
			} {
				want := ecdsa.VerifyASN1(&priv.PublicKey, tc.d, tc.s)
				err := sc.CheckOwnSignature(tc.d, tc.s)
				if errors.Is(err, ErrCannotCheck) {
					t.Fatalf("%s %s: cannot check", c.alg, name)
				}
				if (err == nil) != want {
					t.Fatalf("%s %s (round %d): self-check %v, crypto/ecdsa %v", c.alg, name, i, err, want)
				}
			}
		}
	}
}

// negateS returns (r, n-s), which is as valid as (r, s).
func negateS(t *testing.T, sig []byte, n *big.Int) []byte {
	var v struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &v); err != nil {
		t.Fatal(err)
	}
	v.S.Sub(n, v.S)
	out, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// r or s out of range, and digests longer than the order, are refused or
// left to a verify.
func TestECDSASelfCheckEdges(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, _ := NewSigner(priv, ECDSAP256)
	sc := s.(SelfChecker)
	n := priv.Curve.Params().N
	zero := []byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01}
	if sc.CheckOwnSignature(make([]byte, 32), zero) == nil {
		t.Error("r = 0 accepted")
	}
	nBytes := append([]byte{0}, n.Bytes()...)
	tooBig := append(append([]byte{0x30, byte(4 + 2*len(nBytes)), 0x02, byte(len(nBytes))}, nBytes...), append([]byte{0x02, byte(len(nBytes))}, nBytes...)...)
	if sc.CheckOwnSignature(make([]byte, 32), tooBig) == nil {
		t.Error("r = s = n accepted")
	}
	if err := sc.CheckOwnSignature(make([]byte, 48), zero); !errors.Is(err, ErrCannotCheck) {
		t.Errorf("a SHA-384 digest with P-256: %v, want ErrCannotCheck", err)
	}
	rsaKey, _ := GenerateKey(RSA2048, rand.Reader)
	rs, _ := NewSigner(rsaKey, RSA2048)
	if err := rs.(SelfChecker).CheckOwnSignature(make([]byte, 32), []byte{1}); !errors.Is(err, ErrCannotCheck) {
		t.Errorf("RSA: %v, want ErrCannotCheck", err)
	}
}

func BenchmarkECDSACheck(b *testing.B) {
	for _, c := range []struct {
		alg   Algorithm
		curve elliptic.Curve
		hash  crypto.Hash
	}{{ECDSAP256, elliptic.P256(), crypto.SHA256}, {ECDSAP384, elliptic.P384(), crypto.SHA384}} {
		priv, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		s, _ := NewSigner(priv, c.alg)
		digest := make([]byte, c.hash.Size())
		rand.Read(digest)
		sig, _ := s.Sign(rand.Reader, digest, c.hash)
		b.Run(string(c.alg)+"/self-check", func(b *testing.B) {
			for b.Loop() {
				if err := s.(SelfChecker).CheckOwnSignature(digest, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(c.alg)+"/verify", func(b *testing.B) {
			for b.Loop() {
				if !ecdsa.VerifyASN1(&priv.PublicKey, digest, sig) {
					b.Fatal("verify")
				}
			}
		})
	}
}
