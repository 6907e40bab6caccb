package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"testing"
)

func TestDecodeECPublic(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, _ := ecdsa.GenerateKey(c, rand.Reader)
		raw, _ := k.PublicKey.Bytes()
		params, _ := asn1.Marshal(map[elliptic.Curve]asn1.ObjectIdentifier{
			elliptic.P256(): oidP256, elliptic.P384(): oidP384, elliptic.P521(): oidP521}[c])
		wrapped, _ := asn1.Marshal(raw)
		for name, point := range map[string][]byte{"DER": wrapped, "bare": raw} {
			pub, err := decodeECPublic(params, point)
			if err != nil {
				t.Fatalf("%s %s: %v", c.Params().Name, name, err)
			}
			if !pub.Equal(&k.PublicKey) {
				t.Errorf("%s %s: wrong key", c.Params().Name, name)
			}
		}
		if _, err := decodeECPublic(params, wrapped[:len(wrapped)-1]); err == nil {
			t.Errorf("%s: truncated point accepted", c.Params().Name)
		}
		bad := bytes.Clone(raw)
		bad[len(bad)-1] ^= 1
		if _, err := decodeECPublic(params, bad); err == nil {
			t.Errorf("%s: point off the curve accepted", c.Params().Name)
		}
	}
	secp256k1, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 132, 0, 10})
	if _, err := decodeECPublic(secp256k1, make([]byte, 65)); err == nil {
		t.Error("unsupported curve accepted")
	}
	if _, err := decodeECPublic([]byte{0x30, 0x00}, make([]byte, 65)); err == nil {
		t.Error("explicit parameters accepted")
	}
}

func TestDecodeEdwardsPublic(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	oidParams, _ := asn1.Marshal(oidEd25519)
	nameParams, _ := asn1.MarshalWithParams("edwards25519", "printable")
	wrapped, _ := asn1.Marshal([]byte(pub))
	for _, params := range [][]byte{oidParams, nameParams} {
		for _, point := range [][]byte{wrapped, pub} {
			got, err := decodeEdwardsPublic(params, point)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(pub) {
				t.Error("wrong key")
			}
		}
	}
	ed448, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 101, 113})
	if _, err := decodeEdwardsPublic(ed448, wrapped); err == nil {
		t.Error("Ed448 accepted")
	}
	if _, err := decodeEdwardsPublic(oidParams, wrapped[:20]); err == nil {
		t.Error("short point accepted")
	}
}

func TestDecodeRSAPublic(t *testing.T) {
	k, _ := rsa.GenerateKey(rand.Reader, 1024)
	pub, err := decodeRSAPublic(k.N.Bytes(), big.NewInt(int64(k.E)).Bytes())
	if err != nil || !pub.Equal(&k.PublicKey) {
		t.Fatalf("decodeRSAPublic: %v", err)
	}
	for _, e := range [][]byte{{}, {1}, {2}, {1, 0, 0}, bytes.Repeat([]byte{0xff}, 9)} {
		if _, err := decodeRSAPublic(k.N.Bytes(), e); err == nil {
			t.Errorf("exponent %x accepted", e)
		}
	}
	if _, err := decodeRSAPublic(nil, []byte{1, 0, 1}); err == nil {
		t.Error("empty modulus accepted")
	}
}

func TestECDSADER(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte("m"))
	r, s, _ := ecdsa.Sign(rand.Reader, k, d[:])
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	s.FillBytes(raw[32:])
	der, err := ecdsaDER(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&k.PublicKey, d[:], der) {
		t.Error("converted signature does not verify")
	}
	if _, err := ecdsaDER(raw[:63]); err == nil {
		t.Error("odd-length r||s accepted")
	}
	if _, err := ecdsaDER(nil); err == nil {
		t.Error("empty r||s accepted")
	}
	// Against encoding/asn1, for integers with leading zeros, the top bit
	// set, zero, and P-521 sizes (long-form sequence length).
	type sigValue struct{ R, S *big.Int }
	for _, size := range []int{32, 48, 66} {
		for _, c := range []struct{ r, s []byte }{
			{bytes.Repeat([]byte{0xff}, size), bytes.Repeat([]byte{0x01}, size)},
			{append(make([]byte, size-1), 7), append([]byte{0x80}, make([]byte, size-1)...)},
			{make([]byte, size), append([]byte{0, 0, 0x7f}, bytes.Repeat([]byte{0xaa}, size-3)...)},
		} {
			der, err := ecdsaDER(append(bytes.Clone(c.r), c.s...))
			if err != nil {
				t.Fatal(err)
			}
			want, _ := asn1.Marshal(sigValue{new(big.Int).SetBytes(c.r), new(big.Int).SetBytes(c.s)})
			if !bytes.Equal(der, want) {
				t.Errorf("size %d: ecdsaDER = %x, encoding/asn1 gives %x", size, der, want)
			}
		}
	}
}

// The DigestInfo prefixes must be the RFC 8017 §9.2 encodings.
func TestDigestInfoPrefix(t *testing.T) {
	want := map[crypto.Hash]string{
		crypto.SHA224: "302d300d06096086480165030402040500041c",
		crypto.SHA256: "3031300d060960864801650304020105000420",
		crypto.SHA384: "3041300d060960864801650304020205000430",
		crypto.SHA512: "3051300d060960864801650304020305000440",
	}
	for h, w := range want {
		if got := hex.EncodeToString(digestInfoPrefix[h]); got != w {
			t.Errorf("%v: prefix %s, want %s", h, got, w)
		}
	}
}

func TestKeyIDIsSubjectKeyID(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, err := keyIDFor(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := k.PublicKey.Bytes()
	if sum := sha256.Sum256(raw); !bytes.Equal(id, sum[:20]) {
		t.Errorf("key id %x, want the truncated SHA-256 of the point %x", id, sum[:20])
	}
	// crypto/x509 derives a CA's SubjectKeyId the same way.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if !bytes.Equal(cert.SubjectKeyId, id) {
		t.Errorf("SubjectKeyId %x, key id %x", cert.SubjectKeyId, id)
	}
}

func TestParseKeyID(t *testing.T) {
	for in, want := range map[string]string{"0001": "0001", "0xAbCd": "abcd", "": "", " 01 ": "01"} {
		id, err := ParseKeyID(in)
		if err != nil || hex.EncodeToString(id) != want {
			t.Errorf("ParseKeyID(%q) = %x, %v", in, id, err)
		}
	}
	for _, in := range []string{"xyz", "123", string(bytes.Repeat([]byte("00"), maxKeyIDLen+1))} {
		if _, err := ParseKeyID(in); err == nil {
			t.Errorf("ParseKeyID(%q) accepted", in)
		}
	}
}

func FuzzECPoint(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	raw, _ := k.PublicKey.Bytes()
	wrapped, _ := asn1.Marshal(raw)
	f.Add(wrapped)
	f.Add(raw)
	f.Add([]byte{0x04, 0x41})
	params, _ := asn1.Marshal(oidP256)
	f.Fuzz(func(t *testing.T, point []byte) {
		pub, err := decodeECPublic(params, point)
		if err != nil {
			return
		}
		b, err := pub.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ecdh.P256().NewPublicKey(b); err != nil {
			t.Fatalf("accepted a point crypto/ecdh refuses: %v", err)
		}
	})
}
