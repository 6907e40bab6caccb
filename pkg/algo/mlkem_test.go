package algo

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func TestMLKEMInterop(t *testing.T) {
	for _, p := range mlkemSets {
		a := p.name
		_, ee := readInterop(t, "ossl35/"+string(a)+"-*_ee.der")
		eeKey := certKey(t, ee)
		_, ct := readInterop(t, "ossl35/"+string(a)+"-*_ciphertext.bin")
		_, ss := readInterop(t, "ossl35/"+string(a)+"-*_ss.bin")
		var keys []*MLKEMPrivateKey
		for _, form := range []string{"seed", "expandedkey", "both"} {
			_, der := readInterop(t, "ossl35/"+string(a)+"-*_"+form+"_priv.der")
			priv, err := ParsePKCS8(der)
			if err != nil {
				t.Fatalf("%s %s: %v", a, form, err)
			}
			k := priv.(*MLKEMPrivateKey)
			if !k.Public().(*MLKEMPublicKey).Equal(eeKey) {
				t.Errorf("%s %s: public key does not match the EE certificate", a, form)
			}
			got, err := k.Decapsulate(ct)
			if err != nil || !bytes.Equal(got, ss) {
				t.Errorf("%s %s: decapsulated %x, want %x (%v)", a, form, got, ss, err)
			}
			if form == "seed" {
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
	}
}

func TestMLKEMRoundTrip(t *testing.T) {
	for _, p := range mlkemSets {
		priv, err := GenerateKey(p.name, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, p.name, priv)
		k := priv.(*MLKEMPrivateKey)
		ct, ss, err := k.Public().(*MLKEMPublicKey).Encapsulate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.Decapsulate(ct)
		if err != nil || !bytes.Equal(got, ss) {
			t.Fatalf("%s: shared secrets differ", p.name)
		}
		if _, err := k.Decapsulate(ct[1:]); err == nil {
			t.Fatalf("%s: short ciphertext accepted", p.name)
		}
		if p.name.CanSign() {
			t.Fatalf("%s claims to sign", p.name)
		}
		if _, err := NewSigner(priv, p.name); err == nil {
			t.Fatalf("%s: NewSigner accepted a KEM key", p.name)
		}
	}
}

func TestMLKEMBadPublicKey(t *testing.T) {
	k, _ := GenerateMLKEMKey(MLKEM768, rand.Reader)
	raw := k.pub.raw
	bad := bytes.Clone(raw)
	bad[0], bad[1] = 0xff, 0xff // coefficient 4095 >= q fails the FIPS 203 modulus check
	for _, c := range []struct {
		key  []byte
		want string
	}{
		{raw[:len(raw)-1], "1183 bytes, want 1184"},
		{bad, "ml-kem-768 public key"},
	} {
		_, err := ParsePKIX(spkiWith(t, MLKEM768.Info().OID, c.key))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
}
