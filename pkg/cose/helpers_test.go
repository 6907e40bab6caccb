package cose

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// testPKI is a root CA, an intermediate CA and leaves issued under it, all
// made with crypto/x509.
type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey algo.Signer
}

var (
	keyCacheMu sync.Mutex
	keyCache   = map[algo.Algorithm]algo.Signer{}
)

// testSigner returns a key of algorithm a, generated once per test binary
// (RSA generation is slow).
func testSigner(t testing.TB, a algo.Algorithm) algo.Signer {
	t.Helper()
	keyCacheMu.Lock()
	defer keyCacheMu.Unlock()
	if s, ok := keyCache[a]; ok {
		return s
	}
	s := newSigner(t, a)
	keyCache[a] = s
	return s
}

func newSigner(t testing.TB, a algo.Algorithm) algo.Signer {
	t.Helper()
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var serial int64

// issue signs a certificate through pkg/x509x, which hands classical
// certificates to crypto/x509 and makes the post-quantum ones itself.
func issue(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, parentKey algo.Signer) *x509.Certificate {
	t.Helper()
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	der, err := x509x.CreateCertificate(rand.Reader, tmpl, pub, nil, x509x.Issuer{Cert: parent, Signer: parentKey})
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

func newPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: newSigner(t, algo.ECDSAP256), interKey: newSigner(t, algo.ECDSAP256)}
	p.root = issue(t, caTemplate(name+" Root"), p.rootKey.Public(), nil, p.rootKey)
	p.inter = issue(t, caTemplate(name+" Intermediate"), p.interKey.Public(), p.root, p.rootKey)
	return p
}

// leafFor issues an end-entity certificate for s; chain is leaf first.
func (p *testPKI) leafFor(t testing.TB, s crypto.Signer, cn string, edit func(*x509.Certificate)) []*x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if edit != nil {
		edit(tmpl)
	}
	leaf := issue(t, tmpl, s.Public(), p.inter, p.interKey)
	return []*x509.Certificate{leaf, p.inter}
}

// rawMessage encodes a COSE structure by hand, for inputs Sign refuses to
// make.
func rawMessage(t testing.TB, tag uint64, parts ...any) []byte {
	t.Helper()
	var v any = parts
	if tag != 0 {
		v = cbor.Tag{Number: tag, Content: parts}
	}
	b, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustCBOR(t testing.TB, v any) []byte {
	t.Helper()
	b, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRaw signs a hand-made COSE_Sign1 with ES256 so that only the part a
// test breaks on purpose is wrong.
func signRaw(t testing.TB, s algo.Signer, protected map[any]any, unprotected map[any]any, payload []byte) []byte {
	t.Helper()
	prot := mustCBOR(t, protected)
	tbs, err := sigStructure1(prot, nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := lookupAlg(AlgES256)
	sig, err := info.sign(rand.Reader, s, tbs)
	if err != nil {
		t.Fatal(err)
	}
	if unprotected == nil {
		unprotected = map[any]any{}
	}
	return rawMessage(t, TagSign1, prot, unprotected, payload, sig)
}
