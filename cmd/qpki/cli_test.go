package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/hsm/hsmtest"
)

var qpkiBin string

// TestMain builds the qpki binary once; the tests drive it as an operator
// would, flags and exit codes included.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qpki-cli-")
	if err != nil {
		panic(err)
	}
	qpkiBin = filepath.Join(dir, "qpki")
	if out, err := exec.Command("go", "build", "-o", qpkiBin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	// hsmtest sets up SoftHSM2 tokens for the HSM tests (hsm_test.go) on
	// first use; the qpki processes inherit SOFTHSM2_CONF and the PIN.
	code := hsmtest.Run(m, "qpki-test", "cli-hsm", "cli-pin")
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(qpkiBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func ok(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := run(t, dir, nil, args...)
	if r.code != 0 {
		t.Fatalf("qpki %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails checks that a command fails with one clear line mentioning want.
func fails(t *testing.T, dir, want string, args ...string) {
	t.Helper()
	r := run(t, dir, nil, args...)
	if r.code == 0 {
		t.Fatalf("qpki %s succeeded, want failure", strings.Join(args, " "))
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "qpki: error: ") || !strings.Contains(lines[0], want) {
		t.Fatalf("qpki %s: stderr %q, want one error line mentioning %q", strings.Join(args, " "), r.stderr, want)
	}
}

// TestTour runs the README's tour.
func TestTour(t *testing.T) {
	d := t.TempDir()
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=My Root CA", "--ca-dir", "./ca")
	ok(t, d, "ca", "init", "--profile", "ec/issuing-ca", "--parent", "./ca", "--var", "cn=Issuing CA", "--ca-dir", "./sub")
	ok(t, d, "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "server.key", "--cn", "server.example.com",
		"--dns", "server.example.com", "--ip", "192.0.2.10", "--out", "server.csr")
	if fi, err := os.Stat(filepath.Join(d, "server.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi, err)
	}
	if out := ok(t, d, "csr", "show", "server.csr"); !strings.Contains(out, "server.example.com") || !strings.Contains(out, "192.0.2.10") {
		t.Errorf("csr show: %s", out)
	}
	ok(t, d, "cert", "issue", "--ca-dir", "./sub", "--profile", "ec/tls-server", "--csr", "server.csr", "--out", "server.crt")
	if out := ok(t, d, "cert", "verify", "server.crt", "--ca", "ca/ca.crt", "--untrusted", "sub/ca.crt"); !strings.Contains(out, "server.crt: OK") {
		t.Errorf("verify: %s", out)
	}
	// A full chain in one file works too.
	chain := ok(t, d, "ca", "export", "--ca-dir", "./sub", "--bundle", "chain")
	leaf, _ := os.ReadFile(filepath.Join(d, "server.crt"))
	os.WriteFile(filepath.Join(d, "full.pem"), append(leaf, chain...), 0o644)
	ok(t, d, "cert", "verify", "full.pem", "--ca", "ca/ca.crt")

	var list []struct{ Serial, Status string }
	if err := json.Unmarshal([]byte(ok(t, d, "cert", "list", "--ca-dir", "./sub", "--json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("cert list --json: %v %v", list, err)
	}
	serial := list[0].Serial
	// Serials are accepted in upper case with colons.
	colon := strings.ToUpper(serial)
	var parts []string
	for i := 0; i < len(colon); i += 2 {
		parts = append(parts, colon[i:min(i+2, len(colon))])
	}
	if out := ok(t, d, "cert", "show", strings.Join(parts, ":"), "--ca-dir", "./sub"); !strings.Contains(out, serial) {
		t.Errorf("cert show: %s", out)
	}
	ok(t, d, "cert", "revoke", serial, "--reason", "keyCompromise", "--ca-dir", "./sub")
	ok(t, d, "crl", "gen", "--ca-dir", "./sub", "--out", "sub.crl")
	for _, f := range []string{"sub/crl/ca.crl", "sub/crl/ca.crl.der", "sub.crl"} {
		if _, err := os.Stat(filepath.Join(d, f)); err != nil {
			t.Errorf("CRL file %s: %v", f, err)
		}
	}
	fails(t, d, "revoked", "cert", "verify", "server.crt", "--ca", "ca/ca.crt", "--untrusted", "sub/ca.crt", "--crl", "sub.crl")

	if out := ok(t, d, "ca", "info", "--ca-dir", "./sub"); !strings.Contains(out, "Issuing CA") || !strings.Contains(out, "ecdsa-p384") {
		t.Errorf("ca info: %s", out)
	}
	ok(t, d, "ca", "rotate", "--ca-dir", "./ca", "--cross-sign")
	out := ok(t, d, "ca", "versions", "--ca-dir", "./ca")
	if !strings.Contains(out, "v1") || !strings.Contains(out, "archived") || !strings.Contains(out, "active") {
		t.Errorf("ca versions: %s", out)
	}
	if out := ok(t, d, "ca", "export", "--ca-dir", "./ca", "--bundle", "root", "--version", "v1"); !strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Errorf("export v1: %s", out)
	}
	if out := ok(t, d, "key", "list", "--dir", "."); !strings.Contains(out, "server.key") || !strings.Contains(out, "ecdsa-p256") {
		t.Errorf("key list: %s", out)
	}
	if out := ok(t, d, "profile", "list"); !strings.Contains(out, "ec/tls-server") || !strings.Contains(out, "rsa/root-ca") {
		t.Errorf("profile list: %s", out)
	}
}

func TestKeyCommands(t *testing.T) {
	d := t.TempDir()
	algs := []string{"ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"}
	for _, a := range algs {
		ok(t, d, "key", "gen", "--algorithm", a, "--out", a+".key")
		if pub := ok(t, d, "key", "pub", "--key", a+".key"); !strings.Contains(pub, "BEGIN PUBLIC KEY") {
			t.Errorf("%s pub: %s", a, pub)
		}
	}
	list := ok(t, d, "key", "list", "--dir", d)
	for _, a := range algs {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(a) + `\.key\s+` + regexp.QuoteMeta(a) + `\b`).MatchString(list) {
			t.Errorf("key list does not show %s.key as %s:\n%s", a, a, list)
		}
	}
	env := []string{"KEYPASS=hunter2"}
	if r := run(t, d, env, "key", "gen", "--algorithm", "ecdsa-p256", "--out", "enc.key", "--passphrase-env", "KEYPASS"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := run(t, d, env, "key", "pub", "--key", "enc.key", "--passphrase-env", "KEYPASS"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := run(t, d, []string{"KEYPASS=wrong"}, "key", "pub", "--key", "enc.key", "--passphrase-env", "KEYPASS"); r.code == 0 || !strings.Contains(r.stderr, "wrong passphrase") || strings.Contains(r.stderr, "hunter2") {
		t.Errorf("wrong passphrase: %+v", r)
	}
	fails(t, d, "unknown algorithm", "key", "gen", "--algorithm", "dsa-1024", "--out", "x.key")
	fails(t, d, "exists", "key", "gen", "--algorithm", "ed25519", "--out", "ed25519.key")
}

func TestBadInputOneLine(t *testing.T) {
	d := t.TempDir()
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=Root", "--ca-dir", "ca")
	os.WriteFile(filepath.Join(d, "garbage.csr"), []byte("not a csr"), 0o644)
	ok(t, d, "csr", "gen", "--keyout", "k.key", "--cn", "a.example.org", "--dns", "a.example.org", "--out", "a.csr")
	fails(t, d, "not a CSR", "cert", "issue", "--ca-dir", "ca", "--profile", "ec/tls-server", "--csr", "garbage.csr")
	fails(t, d, "unknown profile", "cert", "issue", "--ca-dir", "ca", "--profile", "ec/none", "--csr", "a.csr")
	fails(t, d, "does not exist", "cert", "issue", "--ca-dir", "nowhere", "--profile", "ec/tls-server", "--csr", "a.csr")
	fails(t, d, "dns_names", "cert", "issue", "--ca-dir", "ca", "--profile", "ec/tls-server", "--csr", "a.csr", "--var", "dns_names=b.example.org")
	fails(t, d, "colour", "cert", "issue", "--ca-dir", "ca", "--profile", "ec/tls-server", "--csr", "a.csr", "--var", "colour=red")
	fails(t, d, "unknown revocation reason", "cert", "revoke", "abcd", "--reason", "bored", "--ca-dir", "ca")
	fails(t, d, "invalid serial", "cert", "show", "xyz", "--ca-dir", "ca")
	os.WriteFile(filepath.Join(d, "ca", "ca.meta.json"), []byte("{"), 0o644)
	fails(t, d, "corrupt", "ca", "info", "--ca-dir", "ca")
}
