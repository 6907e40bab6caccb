package algo

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func TestSLHDSAInterop(t *testing.T) {
	for _, p := range slhdsaSets {
		a := p.name
		_, ta := readInterop(t, "ossl35/"+string(a)+"-*_ta.der")
		taKey := certKey(t, ta)
		_, der := readInterop(t, "ossl35/"+string(a)+"-*_priv.der")
		priv, err := ParsePKCS8(der)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		k := priv.(*SLHDSAPrivateKey)
		if k.Algorithm() != a || !k.Public().(*SLHDSAPublicKey).Equal(taKey) {
			t.Errorf("%s: private key does not match the trust anchor", a)
		}
		out, err := MarshalPKCS8(k)
		if err != nil || !bytes.Equal(out, der) {
			t.Errorf("%s: re-encoded key differs from OpenSSL's (%v)", a, err)
		}
	}
}

func TestSLHDSASignVerify(t *testing.T) {
	// The fast sets; the small ones take seconds per signature.
	for _, a := range []Algorithm{SLHDSASHA2128f, SLHDSASHAKE128f} {
		priv, err := GenerateKey(a, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		checkSigner(t, a, priv)
		roundTrip(t, a, priv)
	}
}

func TestSLHDSABadInput(t *testing.T) {
	k, err := GenerateSLHDSAKey(SLHDSASHA2128f, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	oid := SLHDSASHA2128f.Info().OID
	short, _ := marshalPKCS8(oid, k.Bytes()[:63])
	if _, err := ParsePKCS8(short); err == nil || !strings.Contains(err.Error(), "63 bytes, want 64") {
		t.Errorf("short private key: %v", err)
	}
	if _, err := ParsePKIX(spkiWith(t, oid, k.pub.raw[:31])); err == nil || !strings.Contains(err.Error(), "31 bytes, want 32") {
		t.Errorf("short public key: %v", err)
	}
	// A key whose OID says 192f but whose bytes are 128f-sized.
	wrong, _ := marshalSPKI(SLHDSASHA2192f.Info().OID, k.pub.raw)
	if _, err := ParsePKIX(wrong); err == nil || !strings.Contains(err.Error(), "want 48") {
		t.Errorf("mismatched set: %v", err)
	}
}
