package algo

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// interopDir holds the IETF hackathon artifacts (see shared/interop/README.md).
const interopDir = "../../../shared/interop/pqc-certificates-r5"

func readInterop(t *testing.T, pattern string) (string, []byte) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(interopDir, pattern))
	if err != nil || len(matches) != 1 {
		t.Fatalf("interop file %s: found %d (%v)", pattern, len(matches), err)
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	return matches[0], b
}

// certKey parses a certificate and decodes its subject key through the
// registry.
func certKey(t *testing.T, der []byte) crypto.PublicKey {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePKIX(c.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

type verifier interface {
	Verify(msg, sig []byte) error
	VerifyWithContext(msg, ctx, sig []byte) error
}

// checkSigner signs through the registry's crypto.Signer and verifies.
func checkSigner(t *testing.T, a Algorithm, priv crypto.PrivateKey) {
	t.Helper()
	s, err := NewSigner(priv, a)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("to be signed")
	sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	pub := s.Public().(verifier)
	if err := pub.Verify(msg, sig); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := VerifyDigest(s.Public(), a, msg, sig, false); err != nil {
		t.Fatalf("%s VerifyDigest: %v", a, err)
	}
	if err := pub.Verify([]byte("other message"), sig); !errors.Is(err, ErrVerify) {
		t.Fatalf("%s: wrong message: got %v, want ErrVerify", a, err)
	}
	if _, err := s.Sign(rand.Reader, msg, crypto.SHA256); err == nil {
		t.Fatalf("%s: signing a digest should fail", a)
	}
	ctx := []byte("ctx")
	sig, err = s.Sign(rand.Reader, msg, &ContextOpts{Context: ctx})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.VerifyWithContext(msg, ctx, sig); err != nil {
		t.Fatalf("%s with context: %v", a, err)
	}
	if err := pub.Verify(msg, sig); !errors.Is(err, ErrVerify) {
		t.Fatalf("%s: signature under a context verified without it", a)
	}
	if _, err := s.Sign(rand.Reader, msg, &ContextOpts{Context: make([]byte, 256)}); err == nil {
		t.Fatalf("%s: a 256-byte context should be refused", a)
	}
}

// roundTrip checks PKCS#8 and PKIX encodings through the registry.
func roundTrip(t *testing.T, a Algorithm, priv crypto.PrivateKey) {
	t.Helper()
	der, err := MarshalPKCS8(priv)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePKCS8(der)
	if err != nil {
		t.Fatal(err)
	}
	if !back.(interface{ Equal(crypto.PrivateKey) bool }).Equal(priv) {
		t.Fatalf("%s: PKCS#8 round trip changed the key", a)
	}
	pub, _ := PublicKey(priv)
	spki, err := MarshalPKIX(pub)
	if err != nil {
		t.Fatal(err)
	}
	pub2, err := ParsePKIX(spki)
	if err != nil {
		t.Fatal(err)
	}
	if !pub2.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Fatalf("%s: PKIX round trip changed the key", a)
	}
	if got, err := Of(pub2); err != nil || got != a {
		t.Fatalf("Of = %s, %v; want %s", got, err, a)
	}
}

func TestContextOptsRejectsDigest(t *testing.T) {
	if _, err := contextOf(MLDSA44, crypto.SHA256); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("got %v", err)
	}
	ctx, err := contextOf(MLDSA44, &ContextOpts{Context: []byte("x")})
	if err != nil || !bytes.Equal(ctx, []byte("x")) {
		t.Fatalf("got %q, %v", ctx, err)
	}
}
