package cose

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/qpki/qpki/pkg/algo"
)

func TestRoundTripClassical(t *testing.T) {
	pki := newPKI(t, "RoundTrip")
	tests := []struct {
		key   algo.Algorithm
		alg   string // override; empty for the default
		fully bool
		want  Algorithm
	}{
		{key: algo.ECDSAP256, want: AlgES256},
		{key: algo.ECDSAP384, want: AlgES384},
		{key: algo.ECDSAP521, want: AlgES512},
		{key: algo.Ed25519, want: AlgEdDSA},
		{key: algo.RSA2048, want: AlgPS256},
		{key: algo.RSA2048, alg: "PS384", want: AlgPS384},
		{key: algo.RSA2048, alg: "ps512", want: AlgPS512},
		{key: algo.ECDSAP256, fully: true, want: AlgESP256},
		{key: algo.ECDSAP384, fully: true, want: AlgESP384},
		{key: algo.ECDSAP521, fully: true, want: AlgESP512},
		{key: algo.Ed25519, fully: true, want: AlgEd25519},
		{key: algo.ECDSAP256, alg: "-9", want: AlgESP256},
	}
	for _, tc := range tests {
		s := testSigner(t, tc.key)
		chain := pki.leafFor(t, s, "leaf "+string(tc.key), nil)
		for _, typ := range []Type{TypeSign1, TypeCWT, TypeSign} {
			t.Run(string(tc.key)+"/"+tc.want.String()+"/"+string(typ), func(t *testing.T) {
				req := SignRequest{Type: typ, FullySpecified: tc.fully, KID: []byte("k1")}
				if tc.alg != "" {
					req.Algorithms = []string{tc.alg}
				}
				if typ == TypeCWT {
					req.Claims = &Claims{Issuer: "qpki", Subject: "device-7", Expiry: time.Now().Add(time.Hour)}
				} else {
					req.Payload = []byte("hello, " + string(typ))
					req.ContentType = "text/plain"
				}
				msg, err := Sign(rand.Reader, req, []Signer{s}, [][]*x509.Certificate{chain})
				if err != nil {
					t.Fatal(err)
				}
				m, err := Verify(msg, VerifyOptions{Roots: []*x509.Certificate{pki.root}})
				if err != nil {
					t.Fatal(err)
				}
				if m.Type != typ {
					t.Errorf("type %s, want %s", m.Type, typ)
				}
				sig := m.Signatures[0]
				if sig.Alg() != tc.want {
					t.Errorf("alg %s (%d), want %s (%d)", sig.Alg(), sig.Alg(), tc.want, tc.want)
				}
				if !bytes.Equal(sig.KID(), []byte("k1")) {
					t.Errorf("kid %q", sig.KID())
				}
				if len(sig.Chain) != 3 || !sig.Chain[2].Equal(pki.root) {
					t.Errorf("verified chain has %d certificates, want leaf, intermediate, root", len(sig.Chain))
				}
				if typ == TypeCWT {
					if m.Claims.Issuer != "qpki" || m.Claims.Subject != "device-7" {
						t.Errorf("claims %+v", m.Claims)
					}
				} else {
					if string(m.Payload) != "hello, "+string(typ) || m.ContentType() != "text/plain" {
						t.Errorf("payload %q content type %v", m.Payload, m.ContentType())
					}
				}

				// One flipped bit in the signature must fail.
				bad := bytes.Clone(msg)
				i := bytes.Index(bad, sig.Value)
				bad[i+len(sig.Value)/2] ^= 0x01
				if _, err := Verify(bad, VerifyOptions{Roots: []*x509.Certificate{pki.root}}); !errors.Is(err, ErrSignature) {
					t.Errorf("tampered signature: got %v, want ErrSignature", err)
				}
			})
		}
	}
}

func TestAlgorithmFor(t *testing.T) {
	for _, tc := range []struct {
		key   algo.Algorithm
		fully bool
		want  Algorithm
	}{
		{algo.ECDSAP256, false, -7}, {algo.ECDSAP384, false, -35}, {algo.ECDSAP521, false, -36},
		{algo.ECDSAP256, true, -9}, {algo.ECDSAP384, true, -51}, {algo.ECDSAP521, true, -52},
		{algo.Ed25519, false, -8}, {algo.Ed25519, true, -19},
		{algo.RSA2048, false, -37}, {algo.RSA3072, true, -37}, {algo.RSA4096, false, -38},
		{"ml-dsa-44", false, -48}, {"ml-dsa-65", false, -49}, {"ml-dsa-87", true, -50},
		{"slh-dsa-sha2-128s", false, AlgSLHDSASHA2128s}, {"slh-dsa-shake-128s", false, AlgSLHDSASHAKE128s},
	} {
		got, err := AlgorithmFor(tc.key, tc.fully)
		if err != nil || got != tc.want {
			t.Errorf("AlgorithmFor(%s, %v) = %d, %v; want %d", tc.key, tc.fully, got, err, tc.want)
		}
	}
	for _, k := range []algo.Algorithm{"slh-dsa-sha2-256f", "ml-kem-768", "x"} {
		if _, err := AlgorithmFor(k, false); !errors.Is(err, ErrUnsupported) {
			t.Errorf("AlgorithmFor(%s): %v, want ErrUnsupported", k, err)
		}
	}
	if a, err := ParseAlgorithm("ml-dsa-65"); err != nil || a != AlgMLDSA65 {
		t.Errorf("ParseAlgorithm(ml-dsa-65) = %d, %v", a, err)
	}
	for _, s := range []string{"ES257", "-999", ""} {
		if _, err := ParseAlgorithm(s); !errors.Is(err, ErrUnsupported) {
			t.Errorf("ParseAlgorithm(%q): %v", s, err)
		}
	}
	// The provisional SLH-DSA values must stay clear of the registry.
	if AlgSLHDSASHA2128s >= -65536 || AlgSLHDSASHAKE128s >= -65536 {
		t.Error("SLH-DSA identifiers must be private-use until IANA assigns them")
	}
}

func TestCWT(t *testing.T) {
	pki := newPKI(t, "CWT")
	s := testSigner(t, algo.ECDSAP256)
	chain := pki.leafFor(t, s, "token signer", nil)
	now := time.Now().Truncate(time.Second)
	claims := &Claims{
		Issuer:    "https://ca.example",
		Subject:   "device-42",
		Audience:  []string{"svc-a", "svc-b"},
		Expiry:    now.Add(24 * time.Hour),
		NotBefore: now.Add(-time.Minute),
		Extra:     map[string]any{"role": "sensor", "100": int64(7), "scope": []any{"read", "write"}},
	}
	req := SignRequest{Type: TypeCWT, Claims: claims}
	// The request crosses the queue as JSON.
	js, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var queued SignRequest
	if err := json.Unmarshal(js, &queued); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Second)
	tok, err := Sign(rand.Reader, queued, []Signer{s}, [][]*x509.Certificate{chain})
	if err != nil {
		t.Fatal(err)
	}
	// RFC 8392 §6: the CWT tag 61 wraps the COSE_Sign1 tag 18.
	if !bytes.HasPrefix(tok, []byte{0xd8, 0x3d, 0xd2}) {
		t.Fatalf("token starts % x, want d8 3d d2 (61(18(...)))", tok[:3])
	}
	m, err := Verify(tok, VerifyOptions{Roots: []*x509.Certificate{pki.root}, Audience: "svc-b", Type: TypeCWT})
	if err != nil {
		t.Fatal(err)
	}
	c := m.Claims
	if c.Issuer != claims.Issuer || c.Subject != claims.Subject || strings.Join(c.Audience, ",") != "svc-a,svc-b" ||
		!c.Expiry.Equal(claims.Expiry) || !c.NotBefore.Equal(claims.NotBefore) {
		t.Errorf("claims %+v, want %+v", c, claims)
	}
	if c.IssuedAt.Before(before) || c.IssuedAt.After(time.Now()) {
		t.Errorf("iat %v not set to the signing time", c.IssuedAt)
	}
	if len(c.CTI) != 16 {
		t.Errorf("cti %x, want 16 random bytes", c.CTI)
	}
	if c.Extra["role"] != "sensor" || c.Extra["100"] != int64(7) {
		t.Errorf("extra claims %#v", c.Extra)
	}
	// JSON turned 7 into a float; the token must carry the integer 7 under
	// the integer key 100.
	var raw map[any]any
	if err := decMode.Unmarshal(m.Payload, &raw); err != nil {
		t.Fatal(err)
	}
	if raw[int64(100)] != int64(7) || raw[ClaimAud] == nil {
		t.Errorf("claims map %#v", raw)
	}
	if _, err := Verify(tok, VerifyOptions{Roots: []*x509.Certificate{pki.root}, Audience: "svc-c"}); !errors.Is(err, ErrClaims) {
		t.Errorf("wrong audience: %v, want ErrClaims", err)
	}
	if _, err := Verify(tok, VerifyOptions{Roots: []*x509.Certificate{pki.root}, Type: TypeSign1}); !errors.Is(err, ErrMalformed) {
		t.Errorf("type sign1 required: %v", err)
	}

	// A queued job with fixed iat and cti re-signs to the same identity.
	fixed := SignRequest{Type: TypeCWT, Claims: &Claims{Subject: "x", IssuedAt: now, CTI: []byte{1, 2, 3}}}
	t1, _ := Sign(rand.Reader, fixed, []Signer{s}, nil)
	t2, _ := Sign(rand.Reader, fixed, []Signer{s}, nil)
	m1, err1 := Verify(t1, VerifyOptions{PublicKeys: []crypto.PublicKey{s.Public()}})
	m2, err2 := Verify(t2, VerifyOptions{PublicKeys: []crypto.PublicKey{s.Public()}})
	if err1 != nil || err2 != nil || !bytes.Equal(m1.Payload, m2.Payload) {
		t.Errorf("fixed iat/cti: %v %v, payloads equal %v", err1, err2, m1 != nil && m2 != nil && bytes.Equal(m1.Payload, m2.Payload))
	}
}

func TestValidityPeriod(t *testing.T) {
	s := testSigner(t, algo.Ed25519)
	keys := []crypto.PublicKey{s.Public()}
	now := time.Now().Truncate(time.Second)
	mint := func(c Claims) []byte {
		tok, err := Sign(rand.Reader, SignRequest{Type: TypeCWT, Claims: &c}, []Signer{s}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	expired := mint(Claims{Expiry: now.Add(-2 * time.Minute)})
	if _, err := Verify(expired, VerifyOptions{PublicKeys: keys, Now: now}); !errors.Is(err, ErrExpired) {
		t.Errorf("expired token: %v, want ErrExpired", err)
	}
	if _, err := Verify(expired, VerifyOptions{PublicKeys: keys, Now: now, ClockSkew: 5 * time.Minute}); err != nil {
		t.Errorf("expired within the skew: %v", err)
	}
	justExpired := mint(Claims{Expiry: now.Add(-30 * time.Second)})
	if _, err := Verify(justExpired, VerifyOptions{PublicKeys: keys, Now: now}); err != nil {
		t.Errorf("within the default 60s skew: %v", err)
	}
	if _, err := Verify(justExpired, VerifyOptions{PublicKeys: keys, Now: now, ClockSkew: -1}); !errors.Is(err, ErrExpired) {
		t.Errorf("no skew: %v, want ErrExpired", err)
	}
	future := mint(Claims{NotBefore: now.Add(10 * time.Minute), Expiry: now.Add(time.Hour)})
	if _, err := Verify(future, VerifyOptions{PublicKeys: keys, Now: now}); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("nbf in the future: %v, want ErrNotYetValid", err)
	}
	if _, err := Verify(future, VerifyOptions{PublicKeys: keys, Now: now.Add(10 * time.Minute)}); err != nil {
		t.Errorf("at nbf: %v", err)
	}
}

func TestCOSESignTwoSigners(t *testing.T) {
	pki := newPKI(t, "Hybrid")
	s1 := testSigner(t, algo.ECDSAP256)
	s2 := testSigner(t, algo.Ed25519)
	chains := [][]*x509.Certificate{pki.leafFor(t, s1, "classical", nil), pki.leafFor(t, s2, "second", nil)}
	roots := []*x509.Certificate{pki.root}
	for _, typ := range []Type{TypeSign, TypeCWT} {
		t.Run(string(typ), func(t *testing.T) {
			req := SignRequest{Type: typ, KIDs: [][]byte{[]byte("p256"), []byte("ed")}, ContentType: "application/cbor"}
			if typ == TypeCWT {
				req.Claims = &Claims{Subject: "hybrid"}
				req.ContentType = ""
			} else {
				req.Payload = []byte("two keys")
			}
			msg, err := Sign(rand.Reader, req, []Signer{s1, s2}, chains)
			if err != nil {
				t.Fatal(err)
			}
			wantPrefix := []byte{0xd8, 0x62}
			if typ == TypeCWT {
				wantPrefix = []byte{0xd8, 0x3d, 0xd8, 0x62}
			}
			if !bytes.HasPrefix(msg, wantPrefix) {
				t.Fatalf("message starts % x, want % x", msg[:4], wantPrefix)
			}
			m, err := Verify(msg, VerifyOptions{Roots: roots, MinSignatures: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Signatures) != 2 || m.Signatures[0].Alg() != AlgES256 || m.Signatures[1].Alg() != AlgEdDSA {
				t.Fatalf("signatures %d: %s %s", len(m.Signatures), m.Signatures[0].Alg(), m.Signatures[1].Alg())
			}
			if string(m.Signatures[1].KID()) != "ed" || m.Signatures[1].Chain[0].Subject.CommonName != "second" {
				t.Errorf("signer 2: kid %q chain %v", m.Signatures[1].KID(), m.Signatures[1].Chain)
			}
			// Tampering with either signature fails the whole message, and
			// the error says which one.
			for i, sig := range m.Signatures {
				bad := bytes.Clone(msg)
				j := bytes.Index(bad, sig.Value)
				bad[j+3] ^= 0x80
				_, err := Verify(bad, VerifyOptions{Roots: roots})
				if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "signer "+string(rune('1'+i))) {
					t.Errorf("tampered signature %d: %v", i+1, err)
				}
			}
			// A tampered payload fails too.
			if typ == TypeSign {
				bad := bytes.Replace(msg, []byte("two keys"), []byte("two kexs"), 1)
				if _, err := Verify(bad, VerifyOptions{Roots: roots}); !errors.Is(err, ErrSignature) {
					t.Errorf("tampered payload: %v", err)
				}
			}
		})
	}

	// A hybrid message stripped of one signature still verifies on its own,
	// so MinSignatures must refuse it.
	one, err := Sign(rand.Reader, SignRequest{Type: TypeSign, Payload: []byte("x")}, []Signer{s1}, chains[:1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(one, VerifyOptions{Roots: roots}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(one, VerifyOptions{Roots: roots, MinSignatures: 2}); !errors.Is(err, ErrSignature) {
		t.Errorf("one signature with MinSignatures 2: %v", err)
	}
}

func TestChainVerification(t *testing.T) {
	pki := newPKI(t, "Chain")
	other := newPKI(t, "Other")
	s := testSigner(t, algo.ECDSAP384)
	chain := pki.leafFor(t, s, "leaf", nil)
	sign := func(chain []*x509.Certificate, omit bool) []byte {
		msg, err := Sign(rand.Reader, SignRequest{Payload: []byte("p"), OmitX5Chain: omit}, []Signer{s}, [][]*x509.Certificate{chain})
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	full := sign(chain, false)
	leafOnly := sign(chain[:1], false)
	noChain := sign(chain, true)
	roots := []*x509.Certificate{pki.root}

	ok := []struct {
		name string
		msg  []byte
		opts VerifyOptions
	}{
		{"full chain", full, VerifyOptions{Roots: roots}},
		{"leaf with intermediates given", leafOnly, VerifyOptions{Roots: roots, Intermediates: []*x509.Certificate{pki.inter}}},
		{"intermediate as root", leafOnly, VerifyOptions{Roots: []*x509.Certificate{pki.inter}}},
		{"several roots", full, VerifyOptions{Roots: []*x509.Certificate{other.root, pki.root}}},
		{"pinned key", noChain, VerifyOptions{PublicKeys: []crypto.PublicKey{testSigner(t, algo.Ed25519).Public(), s.Public()}}},
	}
	for _, tc := range ok {
		if _, err := Verify(tc.msg, tc.opts); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}

	expiredLeaf := pki.leafFor(t, s, "old", func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-48 * time.Hour)
		c.NotAfter = time.Now().Add(-24 * time.Hour)
	})
	noDigSig := pki.leafFor(t, s, "no digitalSignature", func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment })
	bad := []struct {
		name string
		msg  []byte
		opts VerifyOptions
		want error
	}{
		{"untrusted root", full, VerifyOptions{Roots: []*x509.Certificate{other.root}}, ErrUntrusted},
		{"missing intermediate", leafOnly, VerifyOptions{Roots: roots}, ErrUntrusted},
		{"no trust anchor", full, VerifyOptions{}, ErrUntrusted},
		{"no chain, no key", noChain, VerifyOptions{Roots: roots}, ErrUntrusted},
		{"key of another type", noChain, VerifyOptions{PublicKeys: []crypto.PublicKey{testSigner(t, algo.Ed25519).Public()}}, ErrUntrusted},
		{"expired certificate", sign(expiredLeaf, false), VerifyOptions{Roots: roots}, ErrUntrusted},
		{"no digitalSignature", sign(noDigSig, false), VerifyOptions{Roots: roots}, ErrUntrusted},
		{"leaf valid later", full, VerifyOptions{Roots: roots, Now: time.Now().Add(48 * time.Hour)}, ErrUntrusted},
	}
	for _, tc := range bad {
		if _, err := Verify(tc.msg, tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := Verify(noChain, VerifyOptions{PublicKeys: []crypto.PublicKey{newSigner(t, algo.ECDSAP384).Public()}}); !errors.Is(err, ErrSignature) {
		t.Errorf("wrong key of the right type: %v, want ErrSignature", err)
	}
}

func TestPostQuantumPathBuilder(t *testing.T) {
	// The link-by-link path builder used for post-quantum chains, run on a
	// classical chain so that it is exercised before pkg/x509x verifies
	// ML-DSA signatures.
	pki := newPKI(t, "Builder")
	s := testSigner(t, algo.ECDSAP256)
	chain := pki.leafFor(t, s, "leaf", nil)
	now := time.Now()
	path, err := buildPath(chain[:1], chain[1:], []*x509.Certificate{pki.root}, now)
	if err != nil || len(path) != 3 {
		t.Fatalf("path %d certificates, %v", len(path), err)
	}
	other := newPKI(t, "Elsewhere")
	if _, err := buildPath(chain[:1], chain[1:], []*x509.Certificate{other.root}, now); err == nil {
		t.Error("path to an unrelated root")
	}
	if _, err := buildPath(chain[:1], nil, []*x509.Certificate{pki.root}, now); err == nil {
		t.Error("path without the intermediate")
	}
	if _, err := buildPath(chain[:1], chain[1:], []*x509.Certificate{pki.root}, now.Add(72*time.Hour)); err == nil {
		t.Error("path with expired certificates")
	}
	// A leaf that is itself a trust anchor.
	if p, err := buildPath(chain[:1], nil, chain[:1], now); err != nil || len(p) != 1 {
		t.Errorf("leaf as anchor: %v", err)
	}
	// An end-entity certificate cannot issue.
	if err := checkIssuer(chain[0], 0); err == nil {
		t.Error("end-entity accepted as issuer")
	}
}

func TestDetachedAndAAD(t *testing.T) {
	s := testSigner(t, algo.ECDSAP256)
	keys := []crypto.PublicKey{s.Public()}
	msg, err := Sign(rand.Reader, SignRequest{Payload: []byte("big file"), Detached: true, ExternalAAD: []byte("ctx")}, []Signer{s}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(msg)
	if err != nil || !m.Detached || m.Payload != nil {
		t.Fatalf("parse detached: %v %+v", err, m)
	}
	if _, err := Verify(msg, VerifyOptions{PublicKeys: keys, ExternalAAD: []byte("ctx")}); !errors.Is(err, ErrMalformed) {
		t.Errorf("no detached payload given: %v", err)
	}
	if _, err := Verify(msg, VerifyOptions{PublicKeys: keys, Detached: []byte("big file"), ExternalAAD: []byte("ctx")}); err != nil {
		t.Errorf("detached: %v", err)
	}
	if _, err := Verify(msg, VerifyOptions{PublicKeys: keys, Detached: []byte("big filE"), ExternalAAD: []byte("ctx")}); !errors.Is(err, ErrSignature) {
		t.Errorf("wrong detached payload: %v", err)
	}
	if _, err := Verify(msg, VerifyOptions{PublicKeys: keys, Detached: []byte("big file")}); !errors.Is(err, ErrSignature) {
		t.Errorf("missing external AAD: %v", err)
	}
	attached, _ := Sign(rand.Reader, SignRequest{Payload: []byte("x")}, []Signer{s}, nil)
	if _, err := Verify(attached, VerifyOptions{PublicKeys: keys, Detached: []byte("x")}); !errors.Is(err, ErrMalformed) {
		t.Errorf("detached payload for an attached message: %v", err)
	}
	// An empty payload is a zero-length byte string, not a detached one.
	empty, _ := Sign(rand.Reader, SignRequest{}, []Signer{s}, nil)
	if m, err := Verify(empty, VerifyOptions{PublicKeys: keys}); err != nil || m.Detached || len(m.Payload) != 0 {
		t.Errorf("empty payload: %v", err)
	}
}

func TestSignRequestErrors(t *testing.T) {
	pki := newPKI(t, "Req")
	p256 := testSigner(t, algo.ECDSAP256)
	ed := testSigner(t, algo.Ed25519)
	edChain := pki.leafFor(t, ed, "ed", nil)
	tests := []struct {
		name    string
		req     SignRequest
		signers []Signer
		chains  [][]*x509.Certificate
	}{
		{"no signer", SignRequest{}, nil, nil},
		{"sign1 with two signers", SignRequest{Type: TypeSign1}, []Signer{p256, ed}, nil},
		{"unknown type", SignRequest{Type: "mac"}, []Signer{p256}, nil},
		{"claims on sign1", SignRequest{Type: TypeSign1, Claims: &Claims{}}, []Signer{p256}, nil},
		{"payload on cwt", SignRequest{Type: TypeCWT, Payload: []byte("x")}, []Signer{p256}, nil},
		{"detached cwt", SignRequest{Type: TypeCWT, Detached: true}, []Signer{p256}, nil},
		{"certificate of another key", SignRequest{}, []Signer{p256}, [][]*x509.Certificate{edChain}},
		{"alg for another key", SignRequest{Algorithms: []string{"ES384"}}, []Signer{p256}, nil},
		{"PS256 on EC key", SignRequest{Algorithms: []string{"PS256"}}, []Signer{p256}, nil},
		{"unknown alg", SignRequest{Algorithms: []string{"HS256"}}, []Signer{p256}, nil},
		{"bad content type", SignRequest{ContentType: "text"}, []Signer{p256}, nil},
		{"kid and kids", SignRequest{KID: []byte("a"), KIDs: [][]byte{[]byte("b")}}, []Signer{p256}, nil},
		{"one kid, two signers", SignRequest{KID: []byte("a")}, []Signer{p256, ed}, nil},
		{"registered claim in extra", SignRequest{Type: TypeCWT, Claims: &Claims{Extra: map[string]any{"exp": 1}}}, []Signer{p256}, nil},
		{"registered claim number in extra", SignRequest{Type: TypeCWT, Claims: &Claims{Extra: map[string]any{"4": 1}}}, []Signer{p256}, nil},
		{"too many chains", SignRequest{}, []Signer{p256}, [][]*x509.Certificate{nil, nil}},
	}
	for _, tc := range tests {
		if _, err := Sign(rand.Reader, tc.req, tc.signers, tc.chains); err == nil {
			t.Errorf("%s: signed", tc.name)
		} else if !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: %v, want ErrInvalidRequest", tc.name, err)
		}
	}
	// A CoAP content format is written as an unsigned integer.
	msg, err := Sign(rand.Reader, SignRequest{ContentType: "60", Payload: []byte{0xa0}}, []Signer{p256}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(msg)
	if err != nil || m.ContentType() != int64(60) {
		t.Errorf("content format: %v %#v", err, m.ContentType())
	}
}

func TestBadInput(t *testing.T) {
	pki := newPKI(t, "Bad")
	s := testSigner(t, algo.ECDSAP256)
	chain := pki.leafFor(t, s, "leaf", nil)
	roots := []*x509.Certificate{pki.root}
	keys := []crypto.PublicKey{s.Public()}
	good, err := Sign(rand.Reader, SignRequest{Type: TypeCWT, Claims: &Claims{Subject: "s", Expiry: time.Now().Add(time.Hour)}}, []Signer{s}, [][]*x509.Certificate{chain})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(good, VerifyOptions{Roots: roots}); err != nil {
		t.Fatal(err)
	}

	// Every truncation of a valid token is refused as malformed.
	for n := 0; n < len(good); n++ {
		if _, err := Verify(good[:n], VerifyOptions{Roots: roots}); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}

	es256 := map[any]any{HeaderAlg: int64(AlgES256)}
	payload := []byte("payload")
	deep := []byte{}
	for range 40 {
		deep = append(deep, 0x81) // array of one element
	}
	deep = append(deep, 0x00)

	tests := []struct {
		name string
		data []byte
		opts VerifyOptions
		want error
		msg  string
	}{
		{"empty", nil, VerifyOptions{PublicKeys: keys}, ErrMalformed, "empty"},
		{"trailing bytes", append(bytes.Clone(good), 0x00), VerifyOptions{Roots: roots}, ErrMalformed, "well-formed"},
		{"oversize", good, VerifyOptions{Roots: roots, MaxSize: 100}, ErrMalformed, "limit"},
		{"COSE_Mac0 tag", rawMessage(t, 17, []byte{}, map[any]any{}, payload, []byte{1}), VerifyOptions{PublicKeys: keys}, ErrUnsupported, "MAC"},
		{"COSE_Encrypt0 tag", rawMessage(t, 16, []byte{}, map[any]any{}, payload), VerifyOptions{PublicKeys: keys}, ErrUnsupported, "encryption"},
		{"unknown tag", rawMessage(t, 99, []byte{}, map[any]any{}, payload, []byte{1}), VerifyOptions{PublicKeys: keys}, ErrMalformed, "tag 99"},
		{"CWT tag inside", mustCBOR(t, cbor.Tag{Number: 18, Content: cbor.Tag{Number: 61, Content: []any{1}}}), VerifyOptions{PublicKeys: keys}, ErrMalformed, "tag"},
		{"map, not array", mustCBOR(t, cbor.Tag{Number: 18, Content: map[int]int{1: 1}}), VerifyOptions{PublicKeys: keys}, ErrMalformed, "not an array"},
		{"three elements", rawMessage(t, 18, []byte{}, map[any]any{}, payload), VerifyOptions{PublicKeys: keys}, ErrMalformed, "3 elements"},
		{"protected not bstr", rawMessage(t, 18, map[any]any{1: -7}, map[any]any{}, payload, []byte{1}), VerifyOptions{PublicKeys: keys}, ErrMalformed, "protected"},
		{"protected bstr not a map", rawMessage(t, 18, []byte{0x01}, map[any]any{}, payload, []byte{1}), VerifyOptions{PublicKeys: keys}, ErrMalformed, "not a map"},
		{"payload text", rawMessage(t, 18, mustCBOR(t, es256), map[any]any{}, "payload", []byte{1}), VerifyOptions{PublicKeys: keys}, ErrMalformed, "payload"},
		{"signature text", rawMessage(t, 18, mustCBOR(t, es256), map[any]any{}, payload, "sig"), VerifyOptions{PublicKeys: keys}, ErrMalformed, "signature"},
		{"unknown alg", signRaw(t, s, map[any]any{HeaderAlg: -999}, nil, payload), VerifyOptions{PublicKeys: keys}, ErrUnsupported, "-999"},
		{"text alg", signRaw(t, s, map[any]any{HeaderAlg: "ES256"}, nil, payload), VerifyOptions{PublicKeys: keys}, ErrUnsupported, "text"},
		{"alg unprotected", rawMessage(t, 18, []byte{}, map[any]any{HeaderAlg: -7}, payload, make([]byte, 64)), VerifyOptions{PublicKeys: keys}, ErrUnsupported, "unprotected"},
		{"no alg", rawMessage(t, 18, []byte{}, map[any]any{}, payload, make([]byte, 64)), VerifyOptions{PublicKeys: keys}, ErrMalformed, "no alg"},
		{"alg 0", rawMessage(t, 18, mustCBOR(t, map[any]any{1: 0}), map[any]any{}, payload, make([]byte, 64)), VerifyOptions{PublicKeys: keys}, ErrMalformed, "reserved"},
		{"label in both buckets", signRaw(t, s, es256, map[any]any{HeaderAlg: -7}, payload), VerifyOptions{PublicKeys: keys}, ErrMalformed, "both"},
		{"unknown critical", signRaw(t, s, map[any]any{HeaderAlg: -7, HeaderCrit: []any{99}, 99: "x"}, nil, payload), VerifyOptions{PublicKeys: keys}, ErrCritical, "99"},
		{"critical label absent", signRaw(t, s, map[any]any{HeaderAlg: -7, HeaderCrit: []any{99}}, nil, payload), VerifyOptions{PublicKeys: keys}, ErrMalformed, "lacks"},
		{"crit unprotected", signRaw(t, s, es256, map[any]any{HeaderCrit: []any{1}}, payload), VerifyOptions{PublicKeys: keys}, ErrMalformed, "crit"},
		{"crit empty", signRaw(t, s, map[any]any{HeaderAlg: -7, HeaderCrit: []any{}}, nil, payload), VerifyOptions{PublicKeys: keys}, ErrMalformed, "empty"},
		{"kid not bstr", signRaw(t, s, es256, map[any]any{HeaderKID: "k"}, payload), VerifyOptions{PublicKeys: keys}, ErrMalformed, "kid"},
		{"x5chain garbage", signRaw(t, s, map[any]any{HeaderAlg: -7, HeaderX5Chain: []byte{1, 2, 3}}, nil, payload), VerifyOptions{Roots: roots}, ErrMalformed, "x5chain"},
		{"x5chain empty array", signRaw(t, s, map[any]any{HeaderAlg: -7, HeaderX5Chain: []any{}}, nil, payload), VerifyOptions{Roots: roots}, ErrMalformed, "x5chain"},
		{"duplicate label", append(append([]byte{0xd2, 0x84, 0x45, 0xa2, 0x01, 0x26, 0x01, 0x26}, 0xa0, 0x41, 'p'), append([]byte{0x58, 64}, make([]byte, 64)...)...), VerifyOptions{PublicKeys: keys}, ErrMalformed, "duplicate"},
		{"float label", signRaw(t, s, map[any]any{HeaderAlg: -7, 1.5: 1}, nil, payload), VerifyOptions{PublicKeys: keys}, ErrMalformed, "label"},
		{"deep nesting", deep, VerifyOptions{PublicKeys: keys}, ErrMalformed, "well-formed"},
		{"indefinite length", []byte{0xd2, 0x9f, 0x40, 0xa0, 0x40, 0x40, 0xff}, VerifyOptions{PublicKeys: keys}, ErrMalformed, ""},
		{"short ES256 signature", rawMessage(t, 18, mustCBOR(t, es256), map[any]any{}, payload, make([]byte, 63)), VerifyOptions{PublicKeys: keys}, ErrSignature, "63 bytes"},
		{"zero ES256 signature", rawMessage(t, 18, mustCBOR(t, es256), map[any]any{}, payload, make([]byte, 64)), VerifyOptions{PublicKeys: keys}, ErrSignature, ""},
		{"COSE_Sign without signatures", rawMessage(t, 98, []byte{}, map[any]any{}, payload, []any{}), VerifyOptions{PublicKeys: keys}, ErrMalformed, "no signatures"},
		{"COSE_Sign signature short", rawMessage(t, 98, []byte{}, map[any]any{}, payload, []any{[]any{[]byte{}, map[any]any{}}}), VerifyOptions{PublicKeys: keys}, ErrMalformed, "2 elements"},
		{"COSE_Sign too many signatures", rawMessage(t, 98, []byte{}, map[any]any{}, payload, make([]any, 9)), VerifyOptions{PublicKeys: keys}, ErrMalformed, "limit"},
		{"CWT claims not a map", signRawCWT(t, s, []byte{0x83, 1, 2, 3}), VerifyOptions{PublicKeys: keys}, ErrMalformed, "claims"},
		{"CWT exp text", signRawCWT(t, s, mustCBOR(t, map[any]any{ClaimExp: "tomorrow"})), VerifyOptions{PublicKeys: keys}, ErrMalformed, "exp"},
		{"CWT exp null", signRawCWT(t, s, mustCBOR(t, map[any]any{ClaimExp: nil})), VerifyOptions{PublicKeys: keys}, ErrMalformed, "exp"},
		{"CWT iss bytes", signRawCWT(t, s, mustCBOR(t, map[any]any{ClaimIss: []byte("x")})), VerifyOptions{PublicKeys: keys}, ErrMalformed, "iss"},
		{"CWT expired", signRawCWT(t, s, mustCBOR(t, map[any]any{ClaimExp: time.Now().Add(-time.Hour).Unix()})), VerifyOptions{PublicKeys: keys}, ErrExpired, "expired"},
		{"CWT float exp", signRawCWT(t, s, mustCBOR(t, map[any]any{ClaimExp: float64(time.Now().Add(-time.Hour).Unix()) + 0.5})), VerifyOptions{PublicKeys: keys}, ErrExpired, ""},
	}
	for _, tc := range tests {
		_, err := Verify(tc.data, tc.opts)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v; want %v mentioning %q", tc.name, err, tc.want, tc.msg)
		}
		// Parse and Info must not panic either.
		Parse(tc.data)
		Info(&bytes.Buffer{}, tc.data)
	}

	// A tampered payload: the claims still decode, the signature fails.
	m, _ := Parse(good)
	bad := bytes.Replace(good, m.Payload, bytes.Replace(m.Payload, []byte{0x61, 's'}, []byte{0x61, 't'}, 1), 1)
	if bytes.Equal(bad, good) {
		t.Fatal("payload not tampered")
	}
	if _, err := Verify(bad, VerifyOptions{Roots: roots}); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered payload: %v, want ErrSignature", err)
	}
	// Tampering that breaks the claims' CBOR is still reported as a bad
	// signature first.
	bad = bytes.Replace(good, m.Payload, append([]byte{0xff}, m.Payload[1:]...), 1)
	if _, err := Verify(bad, VerifyOptions{Roots: roots}); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered claims encoding: %v, want ErrSignature", err)
	}
}

// signRawCWT signs an arbitrary payload as a tagged CWT.
func signRawCWT(t *testing.T, s algo.Signer, claims []byte) []byte {
	t.Helper()
	msg := signRaw(t, s, map[any]any{HeaderAlg: int64(AlgES256)}, nil, claims)
	return append([]byte{0xd8, 0x3d}, msg...)
}

func TestKnownCritical(t *testing.T) {
	s := testSigner(t, algo.ECDSAP256)
	msg := signRaw(t, s, map[any]any{HeaderAlg: -7, HeaderCrit: []any{"app-flag", int64(HeaderKID)}, "app-flag": true, HeaderKID: []byte("k")}, nil, []byte("p"))
	keys := []crypto.PublicKey{s.Public()}
	if _, err := Verify(msg, VerifyOptions{PublicKeys: keys}); !errors.Is(err, ErrCritical) {
		t.Errorf("app-flag not known: %v", err)
	}
	if _, err := Verify(msg, VerifyOptions{PublicKeys: keys, KnownCritical: []any{"app-flag"}}); err != nil {
		t.Errorf("app-flag known: %v", err)
	}
}

func TestInfo(t *testing.T) {
	pki := newPKI(t, "Info")
	s1 := testSigner(t, algo.ECDSAP256)
	s2 := testSigner(t, algo.Ed25519)
	chains := [][]*x509.Certificate{pki.leafFor(t, s1, "info leaf", nil), pki.leafFor(t, s2, "info ed", nil)}
	tok, err := Sign(rand.Reader, SignRequest{
		Type:   TypeCWT,
		Claims: &Claims{Issuer: "qpki-ca", Subject: "dev-1", Expiry: time.Now().Add(time.Hour), Extra: map[string]any{"role": "admin"}},
		KIDs:   [][]byte{[]byte("key-1"), {0x00, 0xff}},
	}, []Signer{s1, s2}, chains)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Info(&out, tok); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CWT (COSE_Sign in tag 61)", `iss`, `"qpki-ca"`, `"dev-1"`, "exp", "iat", "cti", `"admin"`,
		"Signatures:", "2 (not verified", "ES256 (-7)", "EdDSA (-8)", `6b65792d31 ("key-1")`, "00ff",
		"CN=info leaf", "CN=Info Intermediate", "ecdsa-p256", "ed25519", "x5chain=2 cert(s)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("info lacks %q:\n%s", want, out.String())
		}
	}
	if err := Info(&out, []byte{0xd2, 0x80}); !errors.Is(err, ErrMalformed) {
		t.Errorf("info on bad input: %v", err)
	}
}

func TestClaimFlags(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c, err := ClaimFlags{
		Issuer: "ca", Subject: "me", Audience: []string{"a"},
		Expiry: "24h", NotBefore: "2026-05-01T11:00:00Z",
		Claims: []string{"role=admin", "n:=42", "tags:=[\"x\",\"y\"]", "100=v", "eq=a=b"},
	}.Build(now)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Expiry.Equal(now.Add(24*time.Hour)) || !c.NotBefore.Equal(now.Add(-time.Hour)) {
		t.Errorf("times %v %v", c.Expiry, c.NotBefore)
	}
	if c.Extra["role"] != "admin" || c.Extra["n"] != float64(42) || c.Extra["100"] != "v" || c.Extra["eq"] != "a=b" {
		t.Errorf("extra %#v", c.Extra)
	}
	for _, tc := range []struct{ in, want string }{
		{"30d", "2026-05-31T12:00:00Z"}, {"90m", "2026-05-01T13:30:00Z"}, {"1777777777", "2026-05-03T03:09:37Z"},
		{"2027-01-01T00:00:00+01:00", "2026-12-31T23:00:00Z"},
	} {
		got, err := ParseTime(tc.in, now)
		if err != nil || got.UTC().Format(time.RFC3339) != tc.want {
			t.Errorf("ParseTime(%q) = %v, %v; want %s", tc.in, got.UTC(), err, tc.want)
		}
	}
	for _, f := range []ClaimFlags{
		{Expiry: "tomorrow"}, {Expiry: "-1h"}, {Expiry: "1h", NotBefore: "2h"},
		{Claims: []string{"novalue"}}, {Claims: []string{"=x"}}, {Claims: []string{"iss=x"}}, {Claims: []string{"1=x"}},
		{Claims: []string{"n:=notjson"}}, {Claims: []string{"a=1", "a=2"}}, {Audience: []string{""}},
	} {
		if _, err := f.Build(now); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%+v: %v", f, err)
		}
	}
	if typ, err := ParseType("cwt"); err != nil || typ != TypeCWT {
		t.Errorf("ParseType: %v", err)
	}
	if _, err := ParseType("jwt"); err == nil {
		t.Error("ParseType(jwt) accepted")
	}
}
