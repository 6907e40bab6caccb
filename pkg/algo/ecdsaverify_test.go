package algo

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"math/big"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The table verifier agrees with crypto/ecdsa on good signatures and on
// every kind of bad one, digests longer than the order included.
func TestVerifyIssuerECDSAAgreesWithCryptoECDSA(t *testing.T) {
	for _, c := range []struct {
		curve  elliptic.Curve
		hashes []crypto.Hash
	}{
		{elliptic.P256(), []crypto.Hash{crypto.SHA256, crypto.SHA384}},
		{elliptic.P384(), []crypto.Hash{crypto.SHA384, crypto.SHA512, crypto.SHA256}},
		{elliptic.P521(), []crypto.Hash{crypto.SHA512, crypto.SHA256}},
	} {
		priv, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		other, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		if issuerVerifier(&priv.PublicKey) == nil {
			t.Fatalf("%s: no table verifier", c.curve.Params().Name)
		}
		n := c.curve.Params().N
		for i := 0; i < 150; i++ {
			h := c.hashes[i%len(c.hashes)]
			digest := make([]byte, h.Size())
			rand.Read(digest)
			if i%10 == 0 {
				digest[0] = 0xff // a digest above n once truncated
			}
			sig, err := ecdsa.SignASN1(rand.Reader, priv, digest)
			if err != nil {
				t.Fatal(err)
			}
			otherSig, _ := ecdsa.SignASN1(rand.Reader, other, digest)
			flipped := append([]byte(nil), sig...)
			flipped[len(flipped)-1-i%8] ^= 1 << (i % 8)
			wrongDigest := append([]byte(nil), digest...)
			wrongDigest[i%len(wrongDigest)] ^= 0x80
			r, s := sigInts(t, sig)
			for name, tc := range map[string]struct{ d, s []byte }{
				"good": {digest, sig}, "s negated": {digest, encodeSig(r, new(big.Int).Sub(n, s))},
				"another key's": {digest, otherSig}, "flipped bit": {digest, flipped},
				"other digest": {wrongDigest, sig}, "truncated": {digest, sig[:len(sig)-1]}, "empty": {digest, nil},
				"r+n": {digest, encodeSig(new(big.Int).Add(r, n), s)}, "s+n": {digest, encodeSig(r, new(big.Int).Add(s, n))},
				"r=0": {digest, encodeSig(big.NewInt(0), s)}, "s=0": {digest, encodeSig(r, big.NewInt(0))},
				"r=s": {digest, encodeSig(r, r)}, "empty digest": {nil, sig},
			} {
				want := ecdsa.VerifyASN1(&priv.PublicKey, tc.d, tc.s)
				if got := VerifyIssuerECDSA(&priv.PublicKey, tc.d, tc.s); got != want {
					t.Fatalf("%s %s %s (round %d): table %v, crypto/ecdsa %v", c.curve.Params().Name, h, name, i, got, want)
				}
				if name == "good" && !want {
					t.Fatalf("%s: crypto/ecdsa refused a good signature", c.curve.Params().Name)
				}
			}
		}
	}
}

// A key whose point is not on the curve gets no table, and keys past the
// bound are still verified (by crypto/ecdsa).
func TestVerifyIssuerECDSABounds(t *testing.T) {
	//lint:ignore SA1019 only the raw coordinates can make a point off the curve
	bad := &ecdsa.PublicKey{Curve: elliptic.P384(), X: big.NewInt(1), Y: big.NewInt(2)}
	if issuerVerifier(bad) != nil {
		t.Error("a point off the curve got a table")
	}
	if VerifyIssuerECDSA(bad, make([]byte, 48), encodeSig(big.NewInt(1), big.NewInt(1))) {
		t.Error("a point off the curve verified a signature")
	}
	for i := 0; i <= maxIssuerKeys; i++ {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		d := make([]byte, 32)
		sig, _ := ecdsa.SignASN1(rand.Reader, priv, d)
		if !VerifyIssuerECDSA(&priv.PublicKey, d, sig) {
			t.Fatalf("key %d: good signature refused", i)
		}
	}
	issuerKeys.mu.Lock()
	n := len(issuerKeys.keys)
	issuerKeys.mu.Unlock()
	if n > maxIssuerKeys {
		t.Errorf("%d keys kept, bound %d", n, maxIssuerKeys)
	}
}

func sigInts(t *testing.T, sig []byte) (r, s *big.Int) {
	r, s, ok := parseECDSASig(sig)
	if !ok {
		t.Fatal("unparsable signature")
	}
	return r, s
}

func encodeSig(r, s *big.Int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.BytesOrPanic()
}

func BenchmarkVerifyIssuerECDSA(b *testing.B) {
	for _, c := range []struct {
		curve elliptic.Curve
		hash  crypto.Hash
	}{{elliptic.P256(), crypto.SHA256}, {elliptic.P384(), crypto.SHA384}, {elliptic.P521(), crypto.SHA512}} {
		priv, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		digest := make([]byte, c.hash.Size())
		rand.Read(digest)
		sig, _ := ecdsa.SignASN1(rand.Reader, priv, digest)
		b.Run(c.curve.Params().Name+"/tables", func(b *testing.B) {
			VerifyIssuerECDSA(&priv.PublicKey, digest, sig) // builds the tables
			for b.Loop() {
				if !VerifyIssuerECDSA(&priv.PublicKey, digest, sig) {
					b.Fatal("verify")
				}
			}
		})
		b.Run(c.curve.Params().Name+"/crypto-ecdsa", func(b *testing.B) {
			for b.Loop() {
				if !ecdsa.VerifyASN1(&priv.PublicKey, digest, sig) {
					b.Fatal("verify")
				}
			}
		})
	}
}
