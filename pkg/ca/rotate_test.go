package ca

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/store"
)

func issueLeaf(t *testing.T, c *CA, dir, name string) string {
	t.Helper()
	csr := newCSR(t, algo.ECDSAP256, name, name)
	rec, err := c.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: csr}, KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, filepath.Join(dir, name+".crt"), rec.DER, "CERTIFICATE")
}

func TestRotateRoot(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Rotating Root")
	oldLeaf := issueLeaf(t, root, dir, "old.example.com")
	v1PEM := writeCertsFile(t, filepath.Join(dir, "v1.pem"), mustCert(t, root, "v1"))

	name, err := root.Rotate(RotateOptions{CrossSign: true})
	if err != nil {
		t.Fatal(err)
	}
	if name != "v2" {
		t.Fatalf("new version %s, want v2", name)
	}
	// Metadata on disk, not just in memory.
	re, err := Open(root.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if re.Meta.Active != "v2" || re.Meta.Versions["v1"].Status != StatusArchived || re.Meta.Versions["v2"].Status != StatusActive {
		t.Fatalf("statuses after rotate: active=%s v1=%s v2=%s", re.Meta.Active, re.Meta.Versions["v1"].Status, re.Meta.Versions["v2"].Status)
	}
	if re.Meta.Versions["v1"].Keys[0].Storage.Path == re.Meta.Versions["v2"].Keys[0].Storage.Path {
		t.Fatal("v2 reuses v1's key file")
	}
	v2PEM := writeCertsFile(t, filepath.Join(dir, "v2.pem"), mustCert(t, root, "v2"))
	top, _ := os.ReadFile(filepath.Join(root.Dir, CertFile))
	v2, _ := os.ReadFile(v2PEM)
	if string(top) != string(v2) {
		t.Fatal("ca.crt is not the v2 certificate")
	}

	newLeaf := issueLeaf(t, root, dir, "new.example.com")
	openssl(t, "verify", "-CAfile", v2PEM, newLeaf)
	opensslFails(t, "verify", "-CAfile", v1PEM, newLeaf)
	openssl(t, "verify", "-CAfile", v1PEM, oldLeaf)

	// Cross-signing: a client that trusts only v1 reaches the new leaf
	// through the v1-signs-v2 link, and one that trusts only v2 reaches
	// the old leaf through v2-signs-v1.
	links := re.Meta.Versions["v2"].Links
	if len(links) != 2 {
		t.Fatalf("links: %v", links)
	}
	oldSignsNew := filepath.Join(root.Dir, "versions/v2/links/v1-signs-v2.crt")
	newSignsOld := filepath.Join(root.Dir, "versions/v2/links/v2-signs-v1.crt")
	openssl(t, "verify", "-CAfile", v1PEM, "-untrusted", oldSignsNew, newLeaf)
	openssl(t, "verify", "-CAfile", v2PEM, "-untrusted", newSignsOld, oldLeaf)
}

func mustCert(t *testing.T, c *CA, version string) *x509.Certificate {
	t.Helper()
	cert, err := c.Certificate(version)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestRotatePendingThenActivate(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Root")
	if _, err := root.Rotate(RotateOptions{Pending: true}); err != nil {
		t.Fatal(err)
	}
	if root.Meta.Active != "v1" || root.Meta.Versions["v2"].Status != StatusPending {
		t.Fatalf("pending rotate changed the active version: %s / %s", root.Meta.Active, root.Meta.Versions["v2"].Status)
	}
	leaf := issueLeaf(t, root, dir, "a.example.com")
	openssl(t, "verify", "-CAfile", writeCertsFile(t, filepath.Join(dir, "v1.pem"), mustCert(t, root, "v1")), leaf)
	if err := root.Activate("v2"); err != nil {
		t.Fatal(err)
	}
	re, _ := Open(root.Dir)
	if re.Meta.Active != "v2" || re.Meta.Versions["v1"].Status != StatusArchived {
		t.Fatalf("after activate: %s %s", re.Meta.Active, re.Meta.Versions["v1"].Status)
	}
	if err := root.Activate("v2"); err == nil {
		t.Fatal("activating the active version again succeeded")
	}
}

// A subordinate's new version is signed by its parent, never self-signed.
func TestRotateSubordinateIsSignedByParent(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Root")
	sub := newSub(t, filepath.Join(dir, "sub"), "ec/issuing-ca", "Sub", root)
	oldLeaf := issueLeaf(t, sub, dir, "old.example.com")
	root.Close() // one handle on the parent's store at a time, as across processes
	if _, err := sub.Rotate(RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	v2 := mustCert(t, sub, "v2")
	if v2.Issuer.String() != "CN=Root" {
		t.Fatalf("v2 issuer %q, want the parent", v2.Issuer)
	}
	rootPEM := filepath.Join(root.Dir, CertFile)
	v2PEM := writeCertsFile(t, filepath.Join(dir, "subv2.pem"), v2)
	v1PEM := writeCertsFile(t, filepath.Join(dir, "subv1.pem"), mustCert(t, sub, "v1"))
	newLeaf := issueLeaf(t, sub, dir, "new.example.com")
	openssl(t, "verify", "-CAfile", rootPEM, "-untrusted", v2PEM, newLeaf)
	openssl(t, "verify", "-CAfile", rootPEM, "-untrusted", v1PEM, oldLeaf)
	opensslFails(t, "verify", "-CAfile", rootPEM, "-untrusted", v1PEM, newLeaf)
	// The parent recorded both subordinate certificates.
	st, _ := root.Store()
	certs, _ := st.List(storeFilterAll())
	if len(certs) != 2 {
		t.Fatalf("parent store holds %d certificates, want 2", len(certs))
	}
}

// External parent: qpki writes a CSR, openssl (the "external" CA) signs
// it, and import-cert checks and activates it.
func TestExternalParent(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Ext Root")
	sub, err := Init(InitOptions{Dir: filepath.Join(dir, "sub"), Profile: "ec/issuing-ca", Vars: map[string]any{"cn": "Ext Sub"}, ExternalParent: true})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Meta.Versions["v1"].Status != StatusPending || sub.Meta.Active != "" {
		t.Fatalf("external init left status %s", sub.Meta.Versions["v1"].Status)
	}
	if _, err := sub.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "x.example.com", "x.example.com")}, KeyOptions{}); err == nil {
		t.Fatal("a pending CA issued a certificate")
	}
	rootKey := filepath.Join(root.Dir, root.Meta.Versions["v1"].Keys[0].Storage.Path)
	ext := filepath.Join(dir, "ext.cnf")
	os.WriteFile(ext, []byte("basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"), 0o644)
	signed := filepath.Join(dir, "signed.crt")
	openssl(t, "x509", "-req", "-in", filepath.Join(sub.Dir, "versions/v1/ca.csr"), "-CA", filepath.Join(root.Dir, CertFile),
		"-CAkey", rootKey, "-CAcreateserial", "-days", "365", "-extfile", ext, "-out", signed)

	// A certificate for another key is refused and changes nothing.
	other := filepath.Join(dir, "other.crt")
	openssl(t, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", filepath.Join(dir, "o.key"), "-subj", "/CN=o", "-out", other)
	before := snapshot(t, sub.Dir)
	otherPEM, _ := os.ReadFile(other)
	rootPEMBytes, _ := os.ReadFile(filepath.Join(root.Dir, CertFile))
	if _, err := sub.ImportCert(otherPEM, rootPEMBytes); err == nil || !strings.Contains(err.Error(), "matches no pending") {
		t.Fatalf("import of a foreign certificate: %v", err)
	}
	if snapshot(t, sub.Dir) != before {
		t.Fatal("a refused import changed the CA dir")
	}

	signedPEM, _ := os.ReadFile(signed)
	if _, err := sub.ImportCert(signedPEM, rootPEMBytes); err != nil {
		t.Fatal(err)
	}
	sub.Close()
	re, _ := Open(sub.Dir)
	defer re.Close()
	if re.Meta.Active != "v1" {
		t.Fatal("import-cert did not activate v1")
	}
	leaf := issueLeaf(t, re, dir, "leaf.example.com")
	chain, err := re.Bundle("chain", "")
	if err != nil || len(chain) != 2 {
		t.Fatalf("chain bundle: %v %d", err, len(chain))
	}
	openssl(t, "verify", "-CAfile", filepath.Join(root.Dir, CertFile), "-untrusted", filepath.Join(re.Dir, CertFile), leaf)
}

func storeFilterAll() store.Filter { return store.Filter{} }
