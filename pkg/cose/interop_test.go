package cose

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	gocose "github.com/veraison/go-cose"

	"github.com/qpki/qpki/pkg/algo"
)

// Interop with github.com/veraison/go-cose, an independent implementation.

var goCOSEAlgs = []struct {
	key  algo.Algorithm
	alg  string
	gose gocose.Algorithm
}{
	{algo.ECDSAP256, "ES256", gocose.AlgorithmES256},
	{algo.ECDSAP384, "ES384", gocose.AlgorithmES384},
	{algo.ECDSAP521, "ES512", gocose.AlgorithmES512},
	{algo.Ed25519, "EdDSA", gocose.AlgorithmEdDSA},
	{algo.RSA2048, "PS256", gocose.AlgorithmPS256},
	{algo.RSA2048, "PS384", gocose.AlgorithmPS384},
	{algo.RSA2048, "PS512", gocose.AlgorithmPS512},
}

func TestInteropQPKIToGoCOSE(t *testing.T) {
	pki := newPKI(t, "Interop")
	for _, tc := range goCOSEAlgs {
		s := testSigner(t, tc.key)
		chain := pki.leafFor(t, s, "interop "+tc.alg, nil)
		verifier, err := gocose.NewVerifier(tc.gose, s.Public())
		if err != nil {
			t.Fatal(err)
		}
		t.Run(tc.alg+"/sign1", func(t *testing.T) {
			msg, err := Sign(rand.Reader, SignRequest{
				Payload: []byte("from qpki"), ContentType: "text/plain", KID: []byte("kid-1"), Algorithms: []string{tc.alg},
			}, []Signer{s}, [][]*x509.Certificate{chain})
			if err != nil {
				t.Fatal(err)
			}
			var m gocose.Sign1Message
			if err := m.UnmarshalCBOR(msg); err != nil {
				t.Fatalf("go-cose cannot decode: %v", err)
			}
			if err := m.Verify(nil, verifier); err != nil {
				t.Fatalf("go-cose does not verify: %v", err)
			}
			if string(m.Payload) != "from qpki" || !bytes.Equal(m.Headers.Unprotected[gocose.HeaderLabelKeyID].([]byte), []byte("kid-1")) {
				t.Errorf("go-cose read payload %q headers %v", m.Payload, m.Headers.Unprotected)
			}
			// The x5chain is an array of two certificates, leaf first.
			x5, ok := m.Headers.Protected[gocose.HeaderLabelX5Chain].([]any)
			if !ok || len(x5) != 2 || !bytes.Equal(x5[0].([]byte), chain[0].Raw) {
				t.Errorf("x5chain as go-cose sees it: %T", m.Headers.Protected[gocose.HeaderLabelX5Chain])
			}
			// go-cose must also refuse it once tampered.
			m.Payload = []byte("from qpkj")
			if err := m.Verify(nil, verifier); err == nil {
				t.Error("go-cose verified a tampered payload")
			}
		})
		t.Run(tc.alg+"/cwt", func(t *testing.T) {
			exp := time.Now().Add(time.Hour).Truncate(time.Second)
			tok, err := Sign(rand.Reader, SignRequest{
				Type: TypeCWT, Claims: &Claims{Issuer: "qpki", Subject: "s", Audience: []string{"a"}, Expiry: exp}, Algorithms: []string{tc.alg},
			}, []Signer{s}, [][]*x509.Certificate{chain[:1]})
			if err != nil {
				t.Fatal(err)
			}
			var outer cbor.RawTag
			if err := cbor.Unmarshal(tok, &outer); err != nil || outer.Number != TagCWT {
				t.Fatalf("outer tag %d, %v", outer.Number, err)
			}
			var m gocose.Sign1Message
			if err := m.UnmarshalCBOR(outer.Content); err != nil {
				t.Fatalf("go-cose cannot decode the COSE_Sign1 inside the CWT: %v", err)
			}
			if err := m.Verify(nil, verifier); err != nil {
				t.Fatalf("go-cose does not verify: %v", err)
			}
			var claims gocose.CWTClaims
			if err := cbor.Unmarshal(m.Payload, &claims); err != nil {
				t.Fatal(err)
			}
			if claims[uint64(gocose.CWTClaimIssuer)] != "qpki" || claims[uint64(gocose.CWTClaimExpirationTime)] != uint64(exp.Unix()) ||
				claims[uint64(gocose.CWTClaimAudience)] != "a" {
				t.Errorf("claims as go-cose's decoder sees them: %v", claims)
			}
			if _, ok := claims[uint64(gocose.CWTClaimIssuedAt)]; !ok {
				t.Error("no iat")
			}
			// One certificate: x5chain is a bare byte string (RFC 9360).
			if der, ok := m.Headers.Protected[gocose.HeaderLabelX5Chain].([]byte); !ok || !bytes.Equal(der, chain[0].Raw) {
				t.Errorf("single-certificate x5chain: %T", m.Headers.Protected[gocose.HeaderLabelX5Chain])
			}
		})
	}

	t.Run("COSE_Sign", func(t *testing.T) {
		s1 := testSigner(t, algo.ECDSAP256)
		s2 := testSigner(t, algo.Ed25519)
		msg, err := Sign(rand.Reader, SignRequest{Type: TypeSign, Payload: []byte("both"), ContentType: "text/plain"}, []Signer{s1, s2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		v1, _ := gocose.NewVerifier(gocose.AlgorithmES256, s1.Public())
		v2, _ := gocose.NewVerifier(gocose.AlgorithmEdDSA, s2.Public())
		var m gocose.SignMessage
		if err := m.UnmarshalCBOR(msg); err != nil {
			t.Fatal(err)
		}
		if err := m.Verify(nil, v1, v2); err != nil {
			t.Fatalf("go-cose does not verify qpki's COSE_Sign: %v", err)
		}
	})
}

func TestInteropGoCOSEToQPKI(t *testing.T) {
	pki := newPKI(t, "GoCOSE")
	roots := []*x509.Certificate{pki.root}
	for _, tc := range goCOSEAlgs {
		t.Run(tc.alg, func(t *testing.T) {
			s := testSigner(t, tc.key)
			chain := pki.leafFor(t, s, "go-cose "+tc.alg, nil)
			signer, err := gocose.NewSigner(tc.gose, s)
			if err != nil {
				t.Fatal(err)
			}
			headers := gocose.Headers{
				Protected: gocose.ProtectedHeader{
					gocose.HeaderLabelAlgorithm:   tc.gose,
					gocose.HeaderLabelContentType: "application/json",
					gocose.HeaderLabelX5Chain:     []any{chain[0].Raw, chain[1].Raw},
				},
				Unprotected: gocose.UnprotectedHeader{gocose.HeaderLabelKeyID: []byte("gk")},
			}
			msg, err := gocose.Sign1(rand.Reader, signer, headers, []byte(`{"from":"go-cose"}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Verify(msg, VerifyOptions{Roots: roots})
			if err != nil {
				t.Fatalf("qpki does not verify go-cose's message: %v", err)
			}
			if string(m.Payload) != `{"from":"go-cose"}` || string(m.Signatures[0].KID()) != "gk" || m.ContentType() != "application/json" {
				t.Errorf("qpki read %q kid %q ctype %v", m.Payload, m.Signatures[0].KID(), m.ContentType())
			}
			bad := bytes.Replace(msg, []byte("go-cose"), []byte("go-cosf"), 1)
			if _, err := Verify(bad, VerifyOptions{Roots: roots}); err == nil {
				t.Error("tampered go-cose message verified")
			}
		})
	}

	t.Run("CWT", func(t *testing.T) {
		s := testSigner(t, algo.ECDSAP256)
		signer, _ := gocose.NewSigner(gocose.AlgorithmES256, s)
		claims, _ := cbor.Marshal(gocose.CWTClaims{
			gocose.CWTClaimIssuer:         "go-cose",
			gocose.CWTClaimExpirationTime: time.Now().Add(time.Hour).Unix(),
			gocose.CWTClaimCWTID:          []byte{9, 9},
		})
		headers := gocose.Headers{Protected: gocose.ProtectedHeader{
			gocose.HeaderLabelAlgorithm: gocose.AlgorithmES256,
			gocose.HeaderLabelX5Chain:   pki.leafFor(t, s, "go-cose cwt", nil)[0].Raw,
		}}
		msg, err := gocose.Sign1(rand.Reader, signer, headers, claims, nil)
		if err != nil {
			t.Fatal(err)
		}
		// go-cose writes no tag 61; the caller says it expects a token.
		m, err := Verify(msg, VerifyOptions{Roots: roots, Intermediates: []*x509.Certificate{pki.inter}, Type: TypeCWT})
		if err != nil {
			t.Fatal(err)
		}
		if m.Claims.Issuer != "go-cose" || !bytes.Equal(m.Claims.CTI, []byte{9, 9}) {
			t.Errorf("claims %+v", m.Claims)
		}
	})

	t.Run("COSE_Sign", func(t *testing.T) {
		s1 := testSigner(t, algo.ECDSAP384)
		s2 := testSigner(t, algo.Ed25519)
		g1, _ := gocose.NewSigner(gocose.AlgorithmES384, s1)
		g2, _ := gocose.NewSigner(gocose.AlgorithmEdDSA, s2)
		m := gocose.NewSignMessage()
		m.Payload = []byte("hybrid from go-cose")
		for _, sg := range []struct {
			alg   gocose.Algorithm
			chain []*x509.Certificate
		}{{gocose.AlgorithmES384, pki.leafFor(t, s1, "g1", nil)}, {gocose.AlgorithmEdDSA, pki.leafFor(t, s2, "g2", nil)}} {
			sig := gocose.NewSignature()
			sig.Headers.Protected.SetAlgorithm(sg.alg)
			sig.Headers.Protected[gocose.HeaderLabelX5Chain] = []any{sg.chain[0].Raw, sg.chain[1].Raw}
			m.Signatures = append(m.Signatures, sig)
		}
		if err := m.Sign(rand.Reader, nil, g1, g2); err != nil {
			t.Fatal(err)
		}
		msg, err := m.MarshalCBOR()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Verify(msg, VerifyOptions{Roots: roots, MinSignatures: 2})
		if err != nil {
			t.Fatalf("qpki does not verify go-cose's COSE_Sign: %v", err)
		}
		if len(got.Signatures) != 2 || got.Signatures[1].Chain[0].Subject.CommonName != "g2" {
			t.Errorf("signatures %+v", got.Signatures)
		}
	})
}
