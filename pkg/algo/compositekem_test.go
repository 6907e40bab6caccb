package algo

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

// Bouncy Castle's composite ML-KEM private keys decapsulate their
// ciphertexts to the given shared secrets, and the keys match the
// certificates' public keys.
func TestCompositeKEMInteropBC(t *testing.T) {
	for _, c := range []struct {
		stem string
		alg  Algorithm
	}{
		{"bc/MLKEM768-X25519-SHA3-256-*", CompositeMLKEM768X25519},
		{"bc/MLKEM1024-ECDH-P384-SHA3-256-*", CompositeMLKEM1024P384},
	} {
		_, privDER := readInterop(t, c.stem+"_priv.der")
		_, ct := readInterop(t, c.stem+"_ciphertext.bin")
		_, ss := readInterop(t, c.stem+"_ss.bin")
		_, ee := readInterop(t, c.stem+"_ee.der")
		priv, err := ParsePKCS8(privDER)
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		k := priv.(*CompositeKEMPrivateKey)
		if k.Algorithm() != c.alg {
			t.Fatalf("key is %s, want %s", k.Algorithm(), c.alg)
		}
		pub := certKey(t, ee)
		if !k.Public().(*CompositeKEMPublicKey).Equal(pub) {
			t.Fatalf("%s: private key does not match the certificate", c.alg)
		}
		got, err := k.Decapsulate(ct)
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		if !bytes.Equal(got, ss) {
			t.Fatalf("%s: shared secret %x, want %x", c.alg, got, ss)
		}
		// Our encoding of the key is byte-for-byte Bouncy Castle's.
		again, err := MarshalPKCS8(k)
		if err != nil || !bytes.Equal(again, privDER) {
			t.Fatalf("%s: PKCS#8 does not round-trip (%v)", c.alg, err)
		}
		// A flipped traditional ciphertext bit changes the secret.
		bad := bytes.Clone(ct)
		bad[len(bad)-1] ^= 1
		if got, err := k.Decapsulate(bad); err == nil && bytes.Equal(got, ss) {
			t.Fatalf("%s: tampered ciphertext gave the same secret", c.alg)
		}
		if _, err := k.Decapsulate(ct[:len(ct)-1]); err == nil {
			t.Fatalf("%s: truncated ciphertext accepted", c.alg)
		}
	}
}

// Every combination: generate (or, brainpool, refuse to), encode, parse,
// encapsulate and decapsulate.
func TestCompositeKEMRoundTrip(t *testing.T) {
	if len(compositeKEMSets) != 12 {
		t.Fatalf("%d composite ML-KEM algorithms, want 12", len(compositeKEMSets))
	}
	for _, p := range compositeKEMSets {
		if p.kind == tradBrainpool {
			if _, err := GenerateKey(p.name, rand.Reader); !errors.Is(err, ErrNoConstantTime) {
				t.Fatalf("%s: GenerateKey: %v", p.name, err)
			}
			continue
		}
		priv, err := GenerateKey(p.name, rand.Reader)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		der, err := MarshalPKCS8(priv)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePKCS8(der)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		if !back.(*CompositeKEMPrivateKey).Equal(priv) {
			t.Fatalf("%s: PKCS#8 round trip changed the key", p.name)
		}
		spki, err := MarshalPKIX(back.(*CompositeKEMPrivateKey).Public())
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ParsePKIX(spki)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		ct, ss, err := pub.(KEMPublicKey).Encapsulate(rand.Reader)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		got, err := priv.(KEMPrivateKey).Decapsulate(ct)
		if err != nil || !bytes.Equal(got, ss) || len(ss) != 32 {
			t.Fatalf("%s: decapsulated %x (%v), want %x", p.name, got, err, ss)
		}
	}
}

// A brainpool composite key parses and encapsulates; its private key is
// refused with the reason.
func TestCompositeKEMBrainpool(t *testing.T) {
	for _, a := range []Algorithm{CompositeMLKEM768BP256, CompositeMLKEM1024BP384} {
		p, _ := compositeKEMParamsOf(a)
		c := brainpoolCurve(p.trad)
		d, eph, err := c.generateEphemeral(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		mk, _ := GenerateMLKEMKey(p.mlkem, rand.Reader)
		info, _ := Lookup(a)
		spki, _ := marshalSPKI(info.OID, append(mk.pub.Bytes(), eph.Bytes()...))
		pub, err := ParsePKIX(spki)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		again, _ := MarshalPKIX(pub)
		if !bytes.Equal(again, spki) {
			t.Fatalf("%s: SPKI does not round-trip", a)
		}
		ct, ss, err := pub.(KEMPublicKey).Encapsulate(rand.Reader)
		if err != nil || len(ss) != 32 || len(ct) != mk.p.scheme.CiphertextSize()+1+2*c.byteLen {
			t.Fatalf("%s: encapsulate: %d-byte ct, %v", a, len(ct), err)
		}
		// The ML-KEM half decapsulates; the combination is checked with
		// the brainpool ECDH done from the other side (d_eph·Q = d·Q_eph).
		n := mk.p.scheme.CiphertextSize()
		mlkemSS, err := mk.Decapsulate(ct[:n])
		if err != nil {
			t.Fatal(err)
		}
		sender, err := parseBrainpoolPublic(c, ct[n:])
		if err != nil {
			t.Fatal(err)
		}
		tradSS, _ := c.ecdh(d, sender)
		if want := p.combine(mlkemSS, tradSS, ct[n:], eph.Bytes()); !bytes.Equal(ss, want) {
			t.Fatalf("%s: encapsulated secret does not match the recipient's side", a)
		}
		pk8, _ := marshalPKCS8(info.OID, make([]byte, 64+40))
		if _, err := ParsePKCS8(pk8); !errors.Is(err, ErrNoConstantTime) {
			t.Fatalf("%s private key: %v", a, err)
		}
	}
}
