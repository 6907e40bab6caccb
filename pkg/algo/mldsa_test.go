package algo

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/asn1"
	"strings"
	"testing"
)

func TestMLDSASignVerify(t *testing.T) {
	for _, a := range []Algorithm{MLDSA44, MLDSA65, MLDSA87} {
		priv, err := GenerateKey(a, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		checkSigner(t, a, priv)
		roundTrip(t, a, priv)
		// Hedged: two signatures of one message differ.
		k := priv.(*MLDSAPrivateKey)
		s1, _ := k.Sign(nil, []byte("m"), crypto.Hash(0))
		s2, _ := k.Sign(nil, []byte("m"), crypto.Hash(0))
		if bytes.Equal(s1, s2) {
			t.Errorf("%s: signing is deterministic, want hedged", a)
		}
	}
}

func TestMLDSAWritesSeedForm(t *testing.T) {
	k, err := GenerateMLDSAKey(MLDSA65, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := MarshalPKCS8(k)
	if err != nil {
		t.Fatal(err)
	}
	// 30 34 02 01 00 30 0b 06 09 <oid> 04 22 80 20 <seed>
	if len(der) != 54 || !bytes.Equal(der[18:22], []byte{0x04, 0x22, 0x80, 0x20}) || !bytes.Equal(der[22:], k.Seed()) {
		t.Fatalf("unexpected encoding % x", der)
	}
	// A key known only in expanded form is written expanded.
	exp, err := NewMLDSAKeyFromExpanded(MLDSA65, k.Expanded())
	if err != nil {
		t.Fatal(err)
	}
	if exp.Seed() != nil || !exp.Equal(k) || !exp.Public().(*MLDSAPublicKey).Equal(k.Public()) {
		t.Fatal("expanded key differs from the seeded one")
	}
	der, err = MarshalPKCS8(exp)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePKCS8(der)
	if err != nil || !back.(*MLDSAPrivateKey).Equal(k) {
		t.Fatalf("expanded round trip: %v", err)
	}
}

func TestMLDSAInterop(t *testing.T) {
	for _, a := range []Algorithm{MLDSA44, MLDSA65, MLDSA87} {
		_, ta := readInterop(t, "ossl35/"+string(a)+"-*_ta.der")
		taKey := certKey(t, ta)
		if got, _ := Of(taKey); got != a {
			t.Fatalf("TA key is %s, want %s", got, a)
		}
		var keys []*MLDSAPrivateKey
		for _, form := range []string{"seed", "expandedkey", "both"} {
			_, der := readInterop(t, "ossl35/"+string(a)+"-*_"+form+"_priv.der")
			priv, err := ParsePKCS8(der)
			if err != nil {
				t.Fatalf("%s %s: %v", a, form, err)
			}
			k := priv.(*MLDSAPrivateKey)
			if !k.Public().(*MLDSAPublicKey).Equal(taKey) {
				t.Errorf("%s %s: public key does not match the trust anchor", a, form)
			}
			if form == "seed" {
				// Writing the key back gives OpenSSL's bytes exactly.
				out, err := MarshalPKCS8(k)
				if err != nil || !bytes.Equal(out, der) {
					t.Errorf("%s: re-encoded seed form differs from OpenSSL's", a)
				}
			}
			keys = append(keys, k)
		}
		if !keys[0].Equal(keys[1]) || !keys[0].Equal(keys[2]) {
			t.Errorf("%s: the three private key forms disagree", a)
		}
		checkSigner(t, a, keys[1])
	}
}

func TestMLDSABadInput(t *testing.T) {
	k, _ := GenerateMLDSAKey(MLDSA44, rand.Reader)
	oid := MLDSA44.Info().OID
	pkcs8 := func(inner []byte) []byte {
		der, err := marshalPKCS8(oid, inner)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	seq := func(parts ...[]byte) []byte {
		b, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: bytes.Join(parts, nil)})
		return b
	}
	octets := func(b []byte) []byte { o, _ := asn1.Marshal(b); return o }
	other, _ := GenerateMLDSAKey(MLDSA44, rand.Reader)
	badExpanded := k.Expanded()
	badExpanded[100] ^= 1 // inside tr
	spki, _ := MarshalPKIX(k.Public())
	withNull := bytes.Replace(spki, append([]byte{0x30, 0x0b}, mustOID(t, oid)...), append([]byte{0x30, 0x0d}, append(mustOID(t, oid), 0x05, 0x00)...), 1)
	withNull[3] += 2 // outer SEQUENCE length (82 xx xx form)
	cases := []struct {
		name string
		der  []byte
		spki bool
		want string
	}{
		{"short seed", pkcs8(append([]byte{0x80, 31}, make([]byte, 31)...)), false, "seed is 31 bytes"},
		{"short expanded", pkcs8(octets(k.Expanded()[:100])), false, "expanded private key is 100 bytes"},
		{"corrupt expanded", pkcs8(octets(badExpanded)), false, "inconsistent"},
		{"both mismatch", pkcs8(seq(octets(k.Seed()), octets(other.Expanded()))), false, "does not match the seed"},
		{"unknown form", pkcs8([]byte{0x02, 0x01, 0x00}), false, "unknown privateKey form"},
		{"trailing", pkcs8(append([]byte{0x80, 32}, make([]byte, 33)...)), false, "malformed privateKey"},
		{"spki params", withNull, true, "parameters must be absent"},
		{"spki truncated", spkiWith(t, oid, k.pub.raw[:1311]), true, "1311 bytes, want 1312"},
		{"spki oversized", spkiWith(t, oid, append(k.pub.raw, 0)), true, "1313 bytes, want 1312"},
	}
	for _, c := range cases {
		var err error
		if c.spki {
			_, err = ParsePKIX(c.der)
		} else {
			_, err = ParsePKCS8(c.der)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want error containing %q", c.name, err, c.want)
		}
	}
}

func mustOID(t *testing.T, oid asn1.ObjectIdentifier) []byte {
	b, err := asn1.Marshal(oid)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func spkiWith(t *testing.T, oid asn1.ObjectIdentifier, key []byte) []byte {
	der, err := marshalSPKI(oid, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
