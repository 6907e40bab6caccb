package algo

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"
)

// RSA key generation dominates the composite tests; make one key per size.
var (
	rsaOnce sync.Once
	rsaKeys = map[Algorithm]*rsa.PrivateKey{}
)

func testTradKey(t *testing.T, a Algorithm) crypto.Signer {
	t.Helper()
	if a.Family() == FamilyRSA {
		rsaOnce.Do(func() {
			for _, r := range []Algorithm{RSA2048, RSA3072, RSA4096} {
				k, err := GenerateKey(r, rand.Reader)
				if err != nil {
					panic(err)
				}
				rsaKeys[r] = k.(*rsa.PrivateKey)
			}
		})
		return rsaKeys[a]
	}
	k, err := GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

func testCompositeKey(t *testing.T, a Algorithm) *CompositePrivateKey {
	t.Helper()
	pq, trad, err := CompositeComponents(a)
	if err != nil {
		t.Fatal(err)
	}
	m, err := GenerateMLDSAKey(pq, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewCompositePrivateKey(a, m, testTradKey(t, trad))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCompositeSignVerify(t *testing.T) {
	if len(compositeSets) != 18 {
		t.Fatalf("%d composite algorithms, want the draft's 18", len(compositeSets))
	}
	for _, p := range compositeSets {
		if p.name.VerifyOnly() {
			// Brainpool: no constant-time signer, so no key either.
			if _, err := GenerateKey(p.name, rand.Reader); !errors.Is(err, ErrNoConstantTime) {
				t.Fatalf("%s: GenerateKey: %v", p.name, err)
			}
			continue
		}
		k := testCompositeKey(t, p.name)
		checkSigner(t, p.name, k)
		roundTrip(t, p.name, k)
	}
}

func TestCompositeGenerate(t *testing.T) {
	priv, err := GenerateKey(CompositeMLDSA65ECDSAP256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	checkSigner(t, CompositeMLDSA65ECDSAP256, priv)
	if len(All()) < 3+12+3+15+7 {
		t.Fatalf("only %d algorithms registered", len(All()))
	}
}

// The message representative, built by hand from the draft's definition.
func TestCompositeMessageRepresentative(t *testing.T) {
	p, _ := compositeParamsOf(CompositeMLDSA65ECDSAP256)
	msg := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	ctx := []byte{8, 13, 6, 18, 5, 22, 38, 35}
	got, err := p.messageRepresentative(msg, ctx)
	if err != nil {
		t.Fatal(err)
	}
	ph := sha512.Sum512(msg)
	want := []byte("CompositeAlgorithmSignatures2025COMPSIG-MLDSA65-ECDSA-P256-SHA512")
	want = append(want, 8)
	want = append(want, ctx...)
	want = append(want, ph[:]...)
	if !bytes.Equal(got, want) {
		t.Fatalf("M' = %x\nwant %x", got, want)
	}
}

// The Bouncy Castle trust anchors are self-signed composite certificates:
// their signatures are a known-answer test for the whole construction.
func TestCompositeInteropBC(t *testing.T) {
	for _, c := range []struct {
		file string
		alg  Algorithm
	}{
		{"bc/MLDSA65-ECDSA-P256-SHA512-*_ta.der", CompositeMLDSA65ECDSAP256},
		{"bc/MLDSA65-ECDSA-P384-SHA512-*_ta.der", CompositeMLDSA65ECDSAP384},
		{"bc/MLDSA87-Ed448-SHAKE256-*_ta.der", CompositeMLDSA87Ed448},
	} {
		_, der := readInterop(t, c.file)
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ParsePKIX(cert.RawSubjectPublicKeyInfo)
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		k := pub.(*CompositePublicKey)
		if k.Algorithm() != c.alg {
			t.Fatalf("got %s, want %s", k.Algorithm(), c.alg)
		}
		if err := k.Verify(cert.RawTBSCertificate, cert.Signature); err != nil {
			t.Errorf("%s: BC self-signature: %v", c.alg, err)
		}
	}
}

func TestCompositeOneHalfWrong(t *testing.T) {
	k := testCompositeKey(t, CompositeMLDSA65ECDSAP256)
	msg := []byte("message")
	sig, err := k.Sign(rand.Reader, msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*CompositePublicKey)
	n := 3309
	badPQ := bytes.Clone(sig)
	badPQ[10] ^= 1
	badTrad := bytes.Clone(sig)
	badTrad[len(badTrad)-3] ^= 1
	for _, c := range []struct {
		sig  []byte
		want string
	}{
		{badPQ, "ML-DSA component (ml-dsa-65)"},
		{badTrad, "traditional component (ecdsa-p256)"},
		{sig[:n], "too short"},
	} {
		err := pub.Verify(msg, c.sig)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	if err := pub.Verify(msg, badTrad); !errors.Is(err, ErrVerify) {
		t.Errorf("bad traditional half should wrap ErrVerify: %v", err)
	}
	// A signature from another composite key with the same ML-DSA half
	// must not verify: the traditional half differs.
	other, _ := NewCompositePrivateKey(CompositeMLDSA65ECDSAP256, k.MLDSA(), testTradKey(t, ECDSAP256))
	sig2, _ := other.Sign(rand.Reader, msg, nil)
	if err := pub.Verify(msg, sig2); err == nil || !strings.Contains(err.Error(), "traditional") {
		t.Errorf("mixed key: %v", err)
	}
}

// Two separate signers (as two HSM keys would be) make the same kind of
// signature as the one software key.
func TestNewCompositeSigner(t *testing.T) {
	for _, a := range []Algorithm{CompositeMLDSA65ECDSAP256, CompositeMLDSA44RSA2048PSS, CompositeMLDSA65Ed25519} {
		k := testCompositeKey(t, a)
		pq, _ := NewSigner(k.MLDSA(), k.MLDSA().Algorithm())
		_, tradAlg, _ := CompositeComponents(a)
		trad, err := NewSigner(k.Traditional(), tradAlg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewCompositeSigner(a, pq, trad)
		if err != nil {
			t.Fatal(err)
		}
		if s.Algorithm() != a || !s.Public().(*CompositePublicKey).Equal(k.Public()) {
			t.Fatalf("%s: assembled signer has another key", a)
		}
		sig, err := s.Sign(rand.Reader, []byte("m"), crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Public().(*CompositePublicKey).Verify([]byte("m"), sig); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if _, err := NewCompositeSigner(a, trad, pq); err == nil {
			t.Fatalf("%s: swapped components accepted", a)
		}
	}
	pq, _ := NewSigner(testCompositeKey(t, CompositeMLDSA44ECDSAP256).MLDSA(), MLDSA44)
	ec, _ := NewSigner(testTradKey(t, ECDSAP256), ECDSAP256)
	if _, err := NewCompositeSigner(CompositeMLDSA65ECDSAP256, pq, ec); err == nil || !strings.Contains(err.Error(), "ml-dsa-44, want ml-dsa-65") {
		t.Fatalf("wrong ML-DSA set: %v", err)
	}
}

func TestCompositeBadKeys(t *testing.T) {
	k := testCompositeKey(t, CompositeMLDSA65ECDSAP384)
	raw := k.pub.raw
	oid := CompositeMLDSA65ECDSAP384.Info().OID
	for _, c := range []struct {
		key  []byte
		want string
	}{
		{raw[:1952], "too short"},
		{raw[:len(raw)-1], "traditional component"},
		{append(bytes.Clone(raw), 0), "traditional component"},
	} {
		_, err := ParsePKIX(spkiWith(t, oid, c.key))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	// The private key stores the ML-DSA seed; an HSM-style key without one
	// cannot be written.
	exp, _ := NewMLDSAKeyFromExpanded(MLDSA65, k.MLDSA().Expanded())
	noSeed, err := NewCompositePrivateKey(CompositeMLDSA65ECDSAP384, exp, k.Traditional())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MarshalPKCS8(noSeed); err == nil || !strings.Contains(err.Error(), "no seed") {
		t.Errorf("got %v", err)
	}
	// ECPrivateKey is written without its publicKey field, with parameters.
	der, _ := marshalTradPrivate(ECDSAP384, k.Traditional())
	if back, err := x509.ParseECPrivateKey(der); err != nil || !back.Equal(k.Traditional().(*ecdsa.PrivateKey)) {
		t.Fatalf("ECPrivateKey: %v", err)
	}
	// SEQUENCE { INTEGER 1, OCTET STRING (48), [0] { OID } } and nothing else.
	if len(der) != 2+3+2+48+2+7 {
		t.Errorf("ECPrivateKey is %d bytes; has it a publicKey field? % x", len(der), der)
	}
}
