package algo

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is required")
		}
		t.Skip("openssl not installed")
	}
	return p
}

// brainpoolFromOpenSSL makes a brainpool key and an ECDSA signature with
// OpenSSL and returns the point, the message and the signature.
func brainpoolFromOpenSSL(t *testing.T, curve, digest string, msg []byte) (point, sig []byte) {
	ossl := needOpenSSL(t)
	dir := t.TempDir()
	key, msgF, sigF, pubF := filepath.Join(dir, "k.pem"), filepath.Join(dir, "m"), filepath.Join(dir, "s"), filepath.Join(dir, "p.der")
	os.WriteFile(msgF, msg, 0o600)
	for _, args := range [][]string{
		{"ecparam", "-name", curve, "-genkey", "-noout", "-out", key},
		{"dgst", "-" + digest, "-sign", key, "-out", sigF, msgF},
		{"ec", "-in", key, "-pubout", "-outform", "DER", "-out", pubF},
	} {
		if out, err := exec.Command(ossl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	sig, _ = os.ReadFile(sigF)
	der, _ := os.ReadFile(pubF)
	var spki struct {
		Algo struct {
			OID, Curve asn1.ObjectIdentifier
		}
		Key asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		t.Fatal(err)
	}
	return spki.Key.Bytes, sig
}

// The big-integer brainpool ECDSA verifier accepts OpenSSL's signatures
// and refuses altered ones.
func TestBrainpoolVerifyOpenSSL(t *testing.T) {
	for _, c := range []struct {
		curve, digest string
		bp            *bpCurve
	}{{"brainpoolP256r1", "sha256", bpP256}, {"brainpoolP384r1", "sha384", bpP384}} {
		msg := []byte("brainpool test message")
		point, sig := brainpoolFromOpenSSL(t, c.curve, c.digest, msg)
		pub, err := parseBrainpoolPublic(c.bp, point)
		if err != nil {
			t.Fatal(err)
		}
		var d []byte
		if c.digest == "sha256" {
			h := sha256.Sum256(msg)
			d = h[:]
		} else {
			h := sha512.Sum384(msg)
			d = h[:]
		}
		if !pub.VerifyASN1(d, sig) {
			t.Fatalf("%s: OpenSSL signature refused", c.curve)
		}
		d[0] ^= 1
		if pub.VerifyASN1(d, sig) {
			t.Fatalf("%s: wrong digest accepted", c.curve)
		}
		if !bytes.Equal(pub.Bytes(), point) {
			t.Fatal("point does not round-trip")
		}
		bad := bytes.Clone(point)
		bad[len(bad)-1] ^= 1
		if _, err := parseBrainpoolPublic(c.bp, bad); err == nil {
			t.Fatal("off-curve point accepted")
		}
	}
}

// A composite brainpool public key parses and re-encodes, and a signature
// whose halves are an ML-DSA signature and an OpenSSL brainpool signature
// over M' verifies; composite brainpool keys cannot be generated.
func TestCompositeBrainpoolVerify(t *testing.T) {
	p, _ := compositeParamsOf(CompositeMLDSA65ECDSABP256)
	msg := []byte("composite message")
	mPrime, err := p.messageRepresentative(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	point, tradSig := brainpoolFromOpenSSL(t, "brainpoolP256r1", "sha256", mPrime)
	m, _ := GenerateMLDSAKey(MLDSA65, rand.Reader)
	pqSig, err := m.Sign(rand.Reader, mPrime, &ContextOpts{Context: []byte(p.label)})
	if err != nil {
		t.Fatal(err)
	}
	raw := append(m.pub.Bytes(), point...)
	info, _ := Lookup(p.name)
	spki, _ := marshalSPKI(info.OID, raw)
	pub, err := ParsePKIX(spki)
	if err != nil {
		t.Fatal(err)
	}
	sig := append(pqSig, tradSig...)
	if err := pub.(*CompositePublicKey).Verify(msg, sig); err != nil {
		t.Fatalf("composite brainpool signature: %v", err)
	}
	sig[len(sig)-2] ^= 1
	if err := pub.(*CompositePublicKey).Verify(msg, sig); !errors.Is(err, ErrVerify) {
		t.Fatalf("tampered brainpool half: %v", err)
	}
	again, _ := MarshalPKIX(pub)
	if !bytes.Equal(again, spki) {
		t.Fatal("composite brainpool SPKI does not round-trip")
	}
	if _, err := NewSigner(m, p.name); err == nil {
		t.Fatal("NewSigner accepted a brainpool composite")
	}
	if _, err := GenerateKey(ECDSABrainpoolP384, rand.Reader); !errors.Is(err, ErrNoConstantTime) {
		t.Fatalf("brainpool key generation: %v", err)
	}
}

// bpSignForTest makes an ECDSA signature over SHA-256(msg) with math/big:
// test and benchmark use only (variable time).
func bpSignForTest(c *bpCurve, d *big.Int, msg []byte) []byte {
	h := sha256.Sum256(msg)
	e := new(big.Int).SetBytes(h[:])
	for {
		k, _ := rand.Int(rand.Reader, c.n)
		if k.Sign() == 0 {
			continue
		}
		pt := c.mul(bpPoint{x: c.gx, y: c.gy}, k)
		r := new(big.Int).Mod(pt.x, c.n)
		if r.Sign() == 0 {
			continue
		}
		s := new(big.Int).Mul(r, d)
		s.Add(s, e)
		s.Mul(s, new(big.Int).ModInverse(k, c.n))
		s.Mod(s, c.n)
		if s.Sign() == 0 {
			continue
		}
		sig, _ := asn1.Marshal(struct{ R, S *big.Int }{r, s})
		return sig
	}
}
