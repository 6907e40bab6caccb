package ocspx

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/qpki/qpki/internal/nobletest"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

type testCA struct {
	cert   *x509.Certificate
	signer algo.Signer
}

func newCA(t testing.TB, a algo.Algorithm) testCA {
	t.Helper()
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "OCSP test CA " + string(a)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	der, err := x509x.CreateCertificate(rand.Reader, tmpl, s.Public(), nil, x509x.Issuer{Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{c, s}
}

func sign(t testing.TB, ca testCA, tmpl *Template) []byte {
	t.Helper()
	kh, err := KeyHashSHA1(ca.cert)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ResponderKeyHash = kh
	out, err := SignMany(rand.Reader, []*Template{tmpl}, ca.signer, false)
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}

// A request made by golang.org/x/crypto/ocsp parses, under SHA-1 and
// SHA-256, and its CertID matches the issuer's hashes.
func TestParseRequestFromXCrypto(t *testing.T) {
	ca := newCA(t, algo.ECDSAP256)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(0x1234567890), Issuer: ca.cert.Subject}
	for _, h := range []struct {
		ours Hash
		std  crypto.Hash
	}{{SHA1, crypto.SHA1}, {SHA256, crypto.SHA256}, {SHA384, crypto.SHA384}, {SHA512, crypto.SHA512}} {
		der, err := xocsp.CreateRequest(leaf, ca.cert, &xocsp.RequestOptions{Hash: h.std})
		if err != nil {
			t.Fatal(err)
		}
		req, err := ParseRequest(der)
		if err != nil {
			t.Fatalf("%s: %v", h.ours, err)
		}
		want, _ := HashIssuer(ca.cert, h.ours)
		id := req.CertIDs[0]
		if len(req.CertIDs) != 1 || id.Hash != h.ours || !bytes.Equal(id.NameHash, want.NameHash) ||
			!bytes.Equal(id.KeyHash, want.KeyHash) || id.Serial.Cmp(leaf.SerialNumber) != 0 || req.Nonce != nil {
			t.Errorf("%s: parsed %+v, want hashes %+v", h.ours, req, want)
		}
	}
}

// Bad requests fail with the errors the responder maps to
// malformedRequest, never a panic.
func TestParseRequestRefuses(t *testing.T) {
	ca := newCA(t, algo.ECDSAP256)
	good, err := CreateRequest(ca.cert, []*big.Int{big.NewInt(5)}, SHA1, []byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ParseRequest(good); err != nil || NonceLen(r.Nonce) != 16 {
		t.Fatalf("own request: %v %+v", err, r)
	}
	// MD5 (1.2.840.113549.2.5) in place of SHA-1's OID, same length.
	md5 := bytes.Replace(good, []byte{0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a}, []byte{0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1b}, 1)
	many := make([]*big.Int, MaxCertIDs+1)
	for i := range many {
		many[i] = big.NewInt(int64(i + 1))
	}
	tooMany, _ := CreateRequest(ca.cert, many, SHA1, nil)
	for name, c := range map[string]struct {
		der  []byte
		want error
	}{
		"empty":     {nil, ErrMalformed},
		"garbage":   {[]byte("GET / HTTP/1.1\r\n"), ErrMalformed},
		"truncated": {good[:len(good)-3], ErrMalformed},
		"trailing":  {append(append([]byte(nil), good...), 0), ErrMalformed},
		"oversized": {make([]byte, MaxRequest+1), ErrTooLarge},
		"hash":      {md5, ErrUnknownHash},
		"too many":  {tooMany, ErrMalformed},
	} {
		if _, err := ParseRequest(c.der); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

// A P-256 response built here parses and verifies with
// golang.org/x/crypto/ocsp: good, revoked with its reason, and the
// never-issued form with the extended revoked definition.
func TestResponseVerifiesWithXCrypto(t *testing.T) {
	ca := newCA(t, algo.ECDSAP256)
	ih, _ := HashIssuer(ca.cert, SHA1)
	now := time.Now().UTC().Truncate(time.Second)
	next := now.Add(96 * time.Hour)
	revokedAt := now.Add(-time.Minute)
	for _, c := range []struct {
		s      Single
		status int
		reason int
		ext    bool
	}{
		{Single{ID: CertID{ih, big.NewInt(7)}, Status: Good, Reason: NoReason, ThisUpdate: now, NextUpdate: next}, xocsp.Good, 0, false},
		{Single{ID: CertID{ih, big.NewInt(8)}, Status: Revoked, RevokedAt: revokedAt, Reason: 1, ThisUpdate: now, NextUpdate: next}, xocsp.Revoked, 1, false},
		{NotIssued(CertID{ih, big.NewInt(9)}, now, next), xocsp.Revoked, ReasonCertificateHold, true},
	} {
		der := sign(t, ca, &Template{ProducedAt: now, Responses: []Single{c.s}, ExtendedRevoke: c.ext})
		r, err := xocsp.ParseResponseForCert(der, &x509.Certificate{SerialNumber: c.s.ID.Serial}, ca.cert)
		if err != nil {
			t.Fatalf("serial %s: x/crypto: %v", c.s.ID.Serial, err)
		}
		if r.Status != c.status || r.Status == xocsp.Revoked && (r.RevocationReason != c.reason || !r.RevokedAt.Equal(c.s.RevokedAt)) ||
			!r.ThisUpdate.Equal(now) || !r.NextUpdate.Equal(next) {
			t.Errorf("serial %s: x/crypto read %+v", c.s.ID.Serial, r)
		}
		ours, err := ParseResponse(der)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ours.Verify(ca.cert); err != nil {
			t.Errorf("own verify: %v", err)
		}
		if ours.ExtendedRevoke != c.ext {
			t.Errorf("serial %s: extended revoke %v", c.s.ID.Serial, ours.ExtendedRevoke)
		}
		// A flipped bit in ResponseData breaks the signature for both.
		bad := bytes.Clone(der)
		i := bytes.Index(bad, ours.TBS) + len(ours.TBS) - 1
		bad[i] ^= 1
		if _, err := xocsp.ParseResponse(bad, ca.cert); err == nil {
			t.Error("x/crypto accepted a changed response")
		}
		if p, err := ParseResponse(bad); err == nil {
			if _, err := p.Verify(ca.cert); err == nil {
				t.Error("own verify accepted a changed response")
			}
		}
	}
}

// The nonce goes back as it came; several CertIDs are answered in one
// response.
func TestResponseNonceAndSeveral(t *testing.T) {
	ca := newCA(t, algo.Ed25519)
	ih, _ := HashIssuer(ca.cert, SHA256)
	now := time.Now().UTC().Truncate(time.Second)
	reqDER, _ := CreateRequest(ca.cert, []*big.Int{big.NewInt(1), big.NewInt(2)}, SHA256, bytes.Repeat([]byte{7}, 32))
	req, err := ParseRequest(reqDER)
	if err != nil {
		t.Fatal(err)
	}
	var ss []Single
	for _, id := range req.CertIDs {
		ss = append(ss, Single{ID: CertID{ih, id.Serial}, Status: Good, Reason: NoReason, ThisUpdate: now})
	}
	der := sign(t, ca, &Template{ProducedAt: now, Responses: ss, Nonce: req.Nonce})
	r, err := ParseResponse(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verify(ca.cert); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Nonce, req.Nonce) || len(r.Responses) != 2 || r.Find(big.NewInt(2)) == nil {
		t.Errorf("got %+v", r)
	}
}

// ML-DSA responses verify with qpki and, for their signature, with the
// independent @noble/post-quantum.
func TestMLDSAResponseVerifiesWithNoble(t *testing.T) {
	node, script := nobletest.Script(t, "../../interop/noble")
	dir := t.TempDir()
	args := []string{script, "verify"}
	var want []string
	for _, a := range []algo.Algorithm{algo.MLDSA44, algo.MLDSA65, algo.MLDSA87} {
		ca := newCA(t, a)
		ih, _ := HashIssuer(ca.cert, SHA1)
		now := time.Now().UTC().Truncate(time.Second)
		der := sign(t, ca, &Template{ProducedAt: now, Responses: []Single{{ID: CertID{ih, big.NewInt(3)}, Status: Good, Reason: NoReason, ThisUpdate: now}}})
		r, err := ParseResponse(der)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Verify(ca.cert); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if name := x509x.SignatureAlgorithmName(r.SignatureAlg); name != string(a) {
			t.Errorf("%s: signature algorithm %s", a, name)
		}
		write := func(n string, b []byte) string {
			p := filepath.Join(dir, string(a)+n)
			os.WriteFile(p, b, 0o600)
			return p
		}
		pub := write(".pub", ca.signer.Public().(interface{ Bytes() []byte }).Bytes())
		sig := write(".sig", r.Signature)
		args = append(args, string(a), pub, write(".tbs", r.TBS), sig, string(a), pub, write(".bad", append([]byte{0}, r.TBS...)), sig)
		want = append(want, "OK", "INVALID")
	}
	out, _ := exec.Command(node, args...).CombinedOutput()
	if got := strings.Join(strings.Fields(string(out)), " "); got != strings.Join(want, " ") {
		t.Fatalf("noble says %q, want %q", got, strings.Join(want, " "))
	}
}

func FuzzParseRequest(f *testing.F) {
	ca := newCA(f, algo.ECDSAP256)
	for _, h := range Hashes {
		der, _ := CreateRequest(ca.cert, []*big.Int{big.NewInt(1), big.NewInt(1 << 40)}, h, []byte("nonce-nonce-nonce"))
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x03, 0x30, 0x01, 0x30})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRequest(data)
		if err != nil {
			return
		}
		if len(r.CertIDs) == 0 || len(r.CertIDs) > MaxCertIDs {
			t.Fatalf("%d CertIDs", len(r.CertIDs))
		}
		for _, id := range r.CertIDs {
			if !id.Hash.Valid() || id.Serial == nil || len(id.KeyHash) != id.Hash.Crypto().Size() {
				t.Fatalf("bad CertID %+v", id)
			}
		}
	})
}
