package cmp

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitRA waits for serve to have made its RA certificate.
func (e *env) waitRA() {
	e.t.Helper()
	for i := 0; i < 600 && e.fe.currentRA() == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if e.fe.currentRA() == nil {
		e.t.Fatal("no RA certificate")
	}
}

// enrolled runs a MAC ir and returns the key and certificate files.
func (e *env) enrolled(t *testing.T, dir, ref, cn string) (key, cert string) {
	secret := e.secret(ref, "", nil)
	key, cert = filepath.Join(dir, ref+".key"), filepath.Join(dir, ref+".pem")
	newKeyFile(t, key)
	if o, err := openssl(t, e.cmpArgs(Path, "-cmd", "ir", "-ref", ref, "-secret", "pass:"+secret, "-newkey", key,
		"-subject", "/CN="+cn, "-implicit_confirm", "-certout", cert)...); err != nil {
		t.Fatalf("openssl cmp ir: %v\n%s", err, o)
	}
	return key, cert
}

// TestOpenSSLSignedKurCrRR: kur signed by the certificate being updated,
// cr signed by an existing certificate, genm, then rr revokes; answers
// are signed by the RA certificate, which openssl checks against the root;
// a kur signed by the revoked certificate is refused with certRevoked.
func TestOpenSSLSignedKurCrRR(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.waitRA()
	dir := t.TempDir()
	key, cert := e.enrolled(t, dir, "dev-10", "dev10.example.com")
	signed := func(extra ...string) (string, error) {
		return openssl(t, e.cmpArgs(Path, append([]string{"-cert", cert, "-key", key, "-trusted", e.rootPEM}, extra...)...)...)
	}
	key2 := filepath.Join(dir, "k2.pem")
	newKeyFile(t, key2)
	kurOut := filepath.Join(dir, "kur.pem")
	if o, err := signed("-cmd", "kur", "-newkey", key2, "-certout", kurOut); err != nil {
		t.Fatalf("kur: %v\n%s", err, o)
	}
	updated := readCert(t, kurOut)
	if updated.Subject.CommonName != "dev10.example.com" {
		t.Fatalf("kur subject %v", updated.Subject)
	}
	key3 := filepath.Join(dir, "k3.pem")
	newKeyFile(t, key3)
	crOut := filepath.Join(dir, "cr.pem")
	if o, err := signed("-cmd", "cr", "-newkey", key3, "-subject", "/CN=other.example.com", "-certout", crOut); err != nil {
		t.Fatalf("cr: %v\n%s", err, o)
	}
	if c := readCert(t, crOut); c.Subject.CommonName != "other.example.com" {
		t.Fatalf("cr subject %v", c.Subject)
	}
	if o, err := signed("-cmd", "genm", "-infotype", "signKeyPairTypes"); err != nil {
		t.Fatalf("genm: %v\n%s", err, o)
	}
	if o, err := signed("-cmd", "rr", "-oldcert", cert, "-revreason", "4"); err != nil {
		t.Fatalf("rr: %v\n%s", err, o)
	}
	st, _ := e.srv.Core.CA.Store()
	orig := readCert(t, cert)
	rec, err := st.Cert(orig.SerialNumber)
	if err != nil || rec.Revocation == nil || rec.Revocation.Reason != 4 {
		t.Fatalf("after rr: %+v %v", rec, err)
	}
	n := len(e.certs())
	o, err := signed("-cmd", "kur", "-newkey", key2, "-certout", filepath.Join(dir, "kur2.pem"))
	if err == nil || !strings.Contains(o, "certRevoked") {
		t.Fatalf("kur by a revoked certificate: %v\n%s", err, o)
	}
	if len(e.certs()) != n {
		t.Fatal("a certificate was issued to a revoked signer")
	}
}
