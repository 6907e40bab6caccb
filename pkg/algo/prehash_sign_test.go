package algo

import (
	"crypto/rand"
	"errors"
	"testing"
	_ "unsafe" // go:linkname

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// Test-only: ML-DSA.Sign_internal, to make HashML-DSA signatures that qpki
// itself never makes (FIPS 204 Algorithm 4 builds M' and calls it).
//
//go:linkname mldsa65SignInternal github.com/cloudflare/circl/sign/mldsa/mldsa65.(*PrivateKey).unsafeSignInternal
func mldsa65SignInternal(sk *mldsa65.PrivateKey, msg []byte, rnd [32]byte) []byte

func hashMLDSA65Sign(k *MLDSAPrivateKey, msg, ctx []byte) []byte {
	m := append([]byte{1, byte(len(ctx))}, ctx...)
	m = append(m, phSHA512.oidDER()...)
	m = append(m, phSHA512.sum(msg)...)
	var rnd [32]byte
	rand.Read(rnd[:])
	return mldsa65SignInternal(k.sk.(*mldsa65.PrivateKey), m, rnd)
}

// A HashML-DSA-65 signature verifies with the pure and the pre-hash key,
// under its context only; a changed message, context or a pure
// verification fail.
func TestHashMLDSARoundTrip(t *testing.T) {
	k, _ := GenerateMLDSAKey(MLDSA65, rand.Reader)
	msg, ctx := []byte("tbs"), []byte("ctx")
	sig := hashMLDSA65Sign(k, msg, ctx)
	ph, _ := ParsePreHashPublicKey(HashMLDSA65SHA512, k.pub.raw)
	if err := ph.VerifyWithContext(msg, ctx, sig); err != nil {
		t.Fatal(err)
	}
	if err := VerifyPreHash(HashMLDSA65SHA512, k.Public(), msg, ctx, sig); err != nil {
		t.Fatalf("with the pure key: %v", err)
	}
	for _, c := range []struct{ msg, ctx []byte }{{[]byte("tbS"), ctx}, {msg, nil}, {msg, []byte("ctX")}} {
		if err := ph.VerifyWithContext(c.msg, c.ctx, sig); !errors.Is(err, ErrVerify) {
			t.Fatalf("%q/%q: %v", c.msg, c.ctx, err)
		}
	}
	if err := k.pub.VerifyWithContext(msg, ctx, sig); err == nil {
		t.Fatal("pre-hash signature verified as pure")
	}
	if err := VerifyPreHash(HashMLDSA44SHA512, k.Public(), msg, ctx, sig); err == nil {
		t.Fatal("verified under another parameter set")
	}
}
