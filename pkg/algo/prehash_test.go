package algo

import (
	"crypto"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/cloudflare/circl/sign/slhdsa"
)

// verifyInternal, reached through go:linkname, must be FIPS 204
// Verify_internal: a pure signature verifies against the pure M' built by
// hand, and not against any other M'.
func TestHashMLDSAInternalMatchesPure(t *testing.T) {
	for _, a := range []Algorithm{MLDSA44, MLDSA65, MLDSA87} {
		k, err := GenerateMLDSAKey(a, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg, ctx := []byte("message"), []byte("ctx")
		sig, err := k.Sign(rand.Reader, msg, &ContextOpts{Context: ctx})
		if err != nil {
			t.Fatal(err)
		}
		m := append(append([]byte{0, byte(len(ctx))}, ctx...), msg...)
		if !verifyInternal(k.pub.pk, m, sig) {
			t.Fatalf("%s: Verify_internal refuses the pure M'", a)
		}
		m[0] = 1
		if verifyInternal(k.pub.pk, m, sig) {
			t.Fatalf("%s: Verify_internal accepts a wrong M'", a)
		}
	}
}

// A HashSLH-DSA signature made by circl's pre-hash signer verifies, with
// the pure key as with the pre-hash key, and a changed message does not.
func TestHashSLHDSAVerify(t *testing.T) {
	for _, a := range []Algorithm{HashSLHDSASHA2128fSHA256, HashSLHDSASHAKE128fSHAKE128, HashSLHDSASHAKE192fSHAKE256, HashSLHDSASHA2192fSHA512} {
		p, _ := prehashParamsOf(a)
		k, err := GenerateSLHDSAKey(p.pure, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("tbs")
		m, err := slhPreHashMessage(p.ph, msg)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := slhdsa.SignRandomized(&k.sk, rand.Reader, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		ph, err := ParsePreHashPublicKey(a, k.pub.raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := ph.Verify(msg, sig); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if err := VerifyPreHash(a, k.Public(), msg, nil, sig); err != nil {
			t.Fatalf("%s with the pure key: %v", a, err)
		}
		if err := ph.Verify([]byte("tbS"), sig); !errors.Is(err, ErrVerify) {
			t.Fatalf("%s: changed message: %v", a, err)
		}
		// A pure verification of the same signature fails: the domain
		// byte separates the two.
		if err := k.pub.Verify(msg, sig); err == nil {
			t.Fatalf("%s: pre-hash signature verified as pure", a)
		}
	}
}

// qpki never makes pre-hash keys or signers, and says why.
func TestPreHashNotForSigning(t *testing.T) {
	if _, err := GenerateKey(HashMLDSA65SHA512, rand.Reader); !errors.Is(err, ErrPreHashSigning) {
		t.Fatalf("GenerateKey: %v", err)
	}
	k, _ := GenerateMLDSAKey(MLDSA65, rand.Reader)
	ph, _ := ParsePreHashPublicKey(HashMLDSA65SHA512, k.pub.raw)
	if err := CheckKey(ph, HashMLDSA65SHA512); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSigner(k, HashMLDSA65SHA512); err == nil {
		t.Fatal("NewSigner accepted a pre-hash algorithm")
	}
	if !HashMLDSA65SHA512.VerifyOnly() || MLDSA65.VerifyOnly() {
		t.Fatal("VerifyOnly")
	}
	var _ crypto.PublicKey = ph
}

// The Bouncy Castle pre-hash trust anchors' keys decode, and re-encode to
// the same SubjectPublicKeyInfo.
func TestPreHashInteropKeys(t *testing.T) {
	for _, c := range []struct {
		pattern string
		a       Algorithm
	}{
		{"bc/ml-dsa-65-with-sha512-*_ta.der", HashMLDSA65SHA512},
		{"bc/slh-dsa-sha2-128s-with-sha256-*_ta.der", HashSLHDSASHA2128sSHA256},
	} {
		_, der := readInterop(t, c.pattern)
		pub := certKey(t, der)
		if got, err := Of(pub); err != nil || got != c.a {
			t.Fatalf("%s: key is %s (%v)", c.pattern, got, err)
		}
	}
}
