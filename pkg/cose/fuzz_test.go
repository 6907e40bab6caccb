package cose

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"io"
	"testing"
	"time"

	gocose "github.com/veraison/go-cose"

	"github.com/qpki/qpki/pkg/algo"
)

// FuzzParse feeds arbitrary bytes to the parser, Info and Verify: they may
// refuse the input, never panic.
func FuzzParse(f *testing.F) {
	pki := newPKI(f, "Fuzz")
	s := testSigner(f, algo.ECDSAP256)
	ed := testSigner(f, algo.Ed25519)
	chain := pki.leafFor(f, s, "fuzz", nil)
	chains := [][]*x509.Certificate{chain}
	seed := func(req SignRequest, signers []Signer, chains [][]*x509.Certificate) {
		msg, err := Sign(rand.Reader, req, signers, chains)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
		f.Add(msg[:len(msg)/2])
	}
	seed(SignRequest{Payload: []byte("hello"), ContentType: "text/plain", KID: []byte("k")}, []Signer{s}, chains)
	seed(SignRequest{Type: TypeCWT, Claims: &Claims{Issuer: "i", Audience: []string{"a", "b"}, Expiry: time.Now().Add(time.Hour), Extra: map[string]any{"7000": "x"}}}, []Signer{s}, chains)
	seed(SignRequest{Type: TypeCWT, Claims: &Claims{Subject: "hybrid"}}, []Signer{s, ed}, nil)
	seed(SignRequest{Type: TypeSign, Payload: []byte("p"), Detached: true}, []Signer{ed}, nil)

	gs, _ := gocose.NewSigner(gocose.AlgorithmES256, s)
	gmsg, err := gocose.Sign1(rand.Reader, gs, gocose.Headers{Protected: gocose.ProtectedHeader{gocose.HeaderLabelAlgorithm: gocose.AlgorithmES256}}, []byte("g"), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(gmsg)
	for _, b := range [][]byte{
		{}, {0xd2}, {0xd2, 0x84}, {0xd8, 0x3d, 0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40},
		{0xd8, 0x62, 0x84, 0x40, 0xa0, 0x40, 0x81, 0x83, 0x43, 0xa1, 0x01, 0x26, 0xa0, 0x40},
		{0xd2, 0x84, 0x43, 0xa1, 0x02, 0x80, 0xa0, 0x40, 0x40},
		{0xd9, 0xd9, 0xf7, 0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40},
	} {
		f.Add(b)
	}

	opts := VerifyOptions{Roots: []*x509.Certificate{pki.root}, PublicKeys: []crypto.PublicKey{s.Public(), ed.Public()}}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err == nil && len(m.Signatures) == 0 {
			t.Fatal("parsed a message without signatures")
		}
		Info(io.Discard, data)
		if m, err := Verify(data, opts); err == nil && m == nil {
			t.Fatal("verified without a message")
		}
		cwt := opts
		cwt.Type = TypeCWT
		Verify(data, cwt)
	})
}
