package cmp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cmpArgs are the openssl cmp options of every exchange with e.
func (e *env) cmpArgs(path string, extra ...string) []string {
	return append([]string{"cmp", "-server", e.url + path, "-recipient", "/CN=CMP Test Issuing CA", "-unprotected_errors"}, extra...)
}

// TestOpenSSLIRWithMAC enrolls with openssl cmp -ref/-secret
// (PasswordBasedMac), implicitly confirmed, and checks the certificate
// chains to the root and carries the names asked for; the same secret
// cannot enroll twice.
func TestOpenSSLIRWithMAC(t *testing.T) {
	e := newEnv(t, envConfig{})
	secret := e.secret("dev-1", "", nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	newKeyFile(t, key)
	out := filepath.Join(dir, "c.pem")
	chain := filepath.Join(dir, "chain.pem")
	caPubs := filepath.Join(dir, "capubs.pem")
	if o, err := openssl(t, e.cmpArgs(Path, "-cmd", "ir", "-ref", "dev-1", "-secret", "pass:"+secret, "-newkey", key,
		"-subject", "/CN=dev1.example.com", "-sans", "dev1.example.com", "-implicit_confirm",
		"-certout", out, "-extracertsout", chain, "-cacertsout", caPubs)...); err != nil {
		t.Fatalf("openssl cmp ir: %v\n%s", err, o)
	}
	cert := readCert(t, out)
	if cert.Subject.CommonName != "dev1.example.com" || len(cert.DNSNames) != 1 || cert.DNSNames[0] != "dev1.example.com" {
		t.Fatalf("issued %v %v", cert.Subject, cert.DNSNames)
	}
	if o, err := openssl(t, "verify", "-CAfile", caPubs, "-untrusted", chain, out); err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, o)
	}
	if n := len(e.certs()); n != 1 {
		t.Fatalf("%d certificates issued, want 1", n)
	}
	// The secret is spent: a second ir with it is refused, nothing issued.
	o, err := openssl(t, e.cmpArgs(Path, "-cmd", "ir", "-ref", "dev-1", "-secret", "pass:"+secret, "-newkey", key,
		"-subject", "/CN=dev2.example.com", "-certout", filepath.Join(dir, "c2.pem"))...)
	if err == nil || !strings.Contains(o, "notAuthorized") {
		t.Fatalf("reused secret: %v\n%s", err, o)
	}
	if n := len(e.certs()); n != 1 {
		t.Fatalf("%d certificates after a reused secret, want 1", n)
	}
}

// TestOpenSSLExplicitConfirm: without implicitConfirm openssl sends
// certConf and the server answers pkiConf; the transaction is confirmed
// and the certificate stays valid.
func TestOpenSSLExplicitConfirm(t *testing.T) {
	e := newEnv(t, envConfig{})
	secret := e.secret("dev-2", "", nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	newKeyFile(t, key)
	out := filepath.Join(dir, "c.pem")
	if o, err := openssl(t, e.cmpArgs(Path, "-cmd", "cr", "-ref", "dev-2", "-secret", "pass:"+secret, "-newkey", key,
		"-subject", "/CN=dev2.example.com", "-certout", out)...); err != nil {
		t.Fatalf("openssl cmp cr: %v\n%s", err, o)
	}
	readCert(t, out)
	var confirmed int
	e.fe.txs.List(func(name string, v []byte) error {
		if strings.Contains(string(v), `"phase":"confirmed"`) {
			confirmed++
		}
		return nil
	})
	if confirmed != 1 {
		t.Fatalf("%d confirmed transactions, want 1", confirmed)
	}
}

// TestOpenSSLP10CR enrolls an OpenSSL CSR.
func TestOpenSSLP10CR(t *testing.T) {
	e := newEnv(t, envConfig{})
	secret := e.secret("dev-3", "", nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	newKeyFile(t, key)
	csr := filepath.Join(dir, "r.csr")
	if o, err := openssl(t, "req", "-new", "-key", key, "-subj", "/CN=dev3.example.com", "-addext", "subjectAltName=DNS:dev3.example.com", "-out", csr); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	out := filepath.Join(dir, "c.pem")
	if o, err := openssl(t, e.cmpArgs(Path, "-cmd", "p10cr", "-ref", "dev-3", "-secret", "pass:"+secret, "-csr", csr, "-certout", out)...); err != nil {
		t.Fatalf("openssl cmp p10cr: %v\n%s", err, o)
	}
	if c := readCert(t, out); c.DNSNames[0] != "dev3.example.com" {
		t.Fatalf("issued %v", c.DNSNames)
	}
}

// TestOpenSSLRefusals: a wrong secret, names the secret and label do
// not grant: CMP errors with their failure info, nothing issued.
func TestOpenSSLRefusals(t *testing.T) {
	e := newEnv(t, envConfig{})
	secret := e.secret("dev-4", "", nil)
	strict := e.secret("dev-5", "strict", nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	newKeyFile(t, key)
	for _, c := range []struct {
		name, path, ref, secret, subject, want string
	}{
		{"wrong MAC", Path, "dev-4", secret + "x", "/CN=a.example.com", "badMessageCheck"},
		{"name not granted", Path, "dev-4", secret, "/CN=a.example.org", "notAuthorized"},
		{"label grants nothing", Path + "/p/strict", "dev-5", strict, "/CN=a.example.com", "notAuthorized"},
	} {
		o, err := openssl(t, e.cmpArgs(c.path, "-cmd", "ir", "-ref", c.ref, "-secret", "pass:"+c.secret, "-newkey", key,
			"-subject", c.subject, "-certout", filepath.Join(dir, "c.pem"))...)
		if err == nil || !strings.Contains(o, c.want) {
			t.Errorf("%s: %v\n%s", c.name, err, o)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "c.pem")); err == nil {
		t.Fatal("a certificate was written")
	}
	if n := len(e.certs()); n != 0 {
		t.Fatalf("%d certificates issued, want 0", n)
	}
}
