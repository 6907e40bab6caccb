package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/keyfile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// Every refused request leaves the CA dir as it was and nothing in the
// store.
func TestBadRequestsChangeNothing(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Root")
	sub := newSub(t, filepath.Join(dir, "sub"), "ec/issuing-ca", "Sub", root)

	good := newCSR(t, algo.ECDSAP256, "ok.example.com", "ok.example.com")
	cases := []struct {
		name string
		req  IssueRequest
		want string
	}{
		{"unknown profile", IssueRequest{Profile: "ec/nope", CSR: good}, "ec/nope"},
		{"CA profile for a leaf", IssueRequest{Profile: "ec/issuing-ca", CSR: good}, "CA profile"},
		{"key the profile forbids", IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.RSA2048, "r.example.com", "r.example.com")}, "rsa-2048"},
		{"invalid DNS name", IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "bad", "bad..example.com")}, "bad..example.com"},
		{"undeclared variable", IssueRequest{Profile: "ec/tls-server", CSR: good, Vars: map[string]any{"color": "blue"}}, "color"},
		{"CSR name outside the vars", IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "a.example.com", "a.example.com", "evil.example.org"), Vars: map[string]any{"dns_names": "a.example.com"}}, "evil.example.org"},
		{"no key", IssueRequest{Profile: "ec/tls-server"}, "public key"},
	}
	before := snapshot(t, sub.Dir)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sub.Issue(context.Background(), tc.req, KeyOptions{})
			if err == nil {
				t.Fatal("issued")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	if snapshot(t, sub.Dir) != before {
		t.Error("refused requests changed the CA dir")
	}
	st, _ := sub.Store()
	if certs, _ := st.List(store.Filter{}); len(certs) != 0 {
		t.Errorf("store holds %d certificates after refused requests", len(certs))
	}
}

func TestMalformedAndForgedCSRs(t *testing.T) {
	if _, err := x509x.DecodeCSR([]byte("hello")); err == nil {
		t.Error("garbage accepted as a CSR")
	}
	if _, err := x509x.ParseCertificateRequest([]byte{0x30, 0x03, 0x02, 0x01, 0x00}); err == nil {
		t.Error("truncated DER accepted")
	}
	// A CSR whose signature does not verify: flip a bit of the signature.
	csr := newCSR(t, algo.ECDSAP256, "x.example.com", "x.example.com")
	der := append([]byte{}, csr.Raw...)
	der[len(der)-3] ^= 0x40
	if _, err := x509x.ParseCertificateRequest(der); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("forged CSR: %v", err)
	}
}

func TestWrongPassphraseChangesNothing(t *testing.T) {
	dir := t.TempDir()
	c, err := Init(InitOptions{Dir: filepath.Join(dir, "ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Enc"}, Key: KeySpec{Passphrase: []byte("right")}})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, c.Dir)
	wrong := KeyOptions{Passphrase: func() ([]byte, error) { return []byte("wrong"), nil }}
	_, err = c.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "a.example.com", "a.example.com")}, wrong)
	if !errors.Is(err, keyfile.ErrPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := c.GenerateCRL(CRLOptions{Keys: wrong}); !errors.Is(err, keyfile.ErrPassphrase) {
		t.Fatalf("CRL with wrong passphrase: %v", err)
	}
	if snapshot(t, c.Dir) != before {
		t.Error("wrong passphrase changed the CA dir")
	}
	right := KeyOptions{Passphrase: func() ([]byte, error) { return []byte("right"), nil }}
	if _, err := c.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "a.example.com", "a.example.com")}, right); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "a.example.com", "a.example.com")}, KeyOptions{}); !errors.Is(err, keyfile.ErrNeedPassphrase) {
		t.Fatalf("no passphrase: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a CA directory") {
		t.Errorf("empty dir: %v", err)
	}
	c := newRoot(t, filepath.Join(dir, "ca"), "ec/root-ca", "Root")
	meta := filepath.Join(c.Dir, MetaFile)
	for name, content := range map[string]string{
		"truncated":      `{"subject":{"common_name":"x"},"act`,
		"no versions":    `{"subject":{"common_name":"x"},"active":"v1","versions":{}}`,
		"bad status":     `{"active":"","versions":{"v1":{"status":"weird","keys":[{"id":"default","algorithm":"ecdsa-p384","storage":{"type":"software","path":"k"}}]}}}`,
		"active missing": `{"active":"v9","versions":{"v1":{"status":"active","keys":[{"id":"default","algorithm":"ecdsa-p384","storage":{"type":"software","path":"k"}}]}}}`,
	} {
		os.WriteFile(meta, []byte(content), 0o644)
		if _, err := Open(c.Dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("%s meta: %v", name, err)
		}
	}
	if _, err := Init(InitOptions{Dir: c.Dir, Profile: "ec/root-ca", Vars: map[string]any{"cn": "again"}}); err == nil {
		t.Error("init over an existing CA succeeded")
	}
}

func TestFailedInitLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "ca")
	if _, err := Init(InitOptions{Dir: target, Profile: "ec/root-ca", Vars: map[string]any{"nope": "x"}}); err == nil {
		t.Fatal("init with an undeclared variable succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("failed init left %v", entries)
	}
}

func TestSerialsAreRandomAndUnique(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Root")
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		rec, err := root.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "a.example.com", "a.example.com")}, KeyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(rec.DER)
		if cert.SerialNumber.BitLen() < 64 {
			t.Errorf("serial %s has only %d bits", rec.Serial, cert.SerialNumber.BitLen())
		}
		if seen[rec.Serial] {
			t.Fatalf("serial %s repeated", rec.Serial)
		}
		seen[rec.Serial] = true
	}
}
