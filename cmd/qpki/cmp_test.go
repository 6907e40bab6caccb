package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qpki/qpki/internal/testport"
)

// TestServeCMP runs `qpki serve --cmp-config` and enrolls with openssl
// cmp on the plain-HTTP listener, with a secret from `qpki cmp secret
// add` (printed alone, once), under a label: the wiring of the flags, the
// data dir's secrets and the label's name policy and CA name.
func TestServeCMP(t *testing.T) {
	need(t, "openssl")
	dir := t.TempDir()
	ok(t, dir, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=CMP CLI Root", "--ca-dir", "ca")
	os.WriteFile(filepath.Join(dir, "cmp.yaml"), []byte("labels:\n  ran:\n    ca: ca\n    names: {dns: [\".ran.example.com\"]}\n    implicit_confirm: true\n"), 0o644)
	port := strconv.Itoa(testport.Free(t))
	serve := exec.Command(qpkiBin, "serve", "--ca-dir", "ca", "--data-dir", "data", "--listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:"+port, "--workers", "1", "--cmp-config", "cmp.yaml", "--cmp-wait", "10s")
	serve.Dir = dir
	logf, _ := os.Create(filepath.Join(dir, "serve.log"))
	serve.Stdout, serve.Stderr = logf, logf
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Signal(syscall.SIGTERM); serve.Wait(); logf.Close() })
	r := run(t, dir, nil, "cmp", "secret", "add", "--data-dir", "data", "--ref", "gnb-1", "--label", "ran", "--ttl", "1d")
	secret := strings.TrimSpace(r.stdout)
	if r.code != 0 || len(secret) < 20 || strings.ContainsAny(secret, " \n") {
		t.Fatalf("secret add: %q %s", r.stdout, r.stderr)
	}
	tool(t, dir, "openssl", "ecparam", "-genkey", "-name", "prime256v1", "-out", "k.pem")
	var out []byte
	var err error
	for i := 0; i < 120; i++ {
		cmd := exec.Command("openssl", "cmp", "-cmd", "ir", "-server", "http://127.0.0.1:"+port+"/.well-known/cmp/p/ran",
			"-recipient", "/CN=CMP CLI Root", "-ref", "gnb-1", "-secret", "pass:"+secret, "-newkey", "k.pem",
			"-subject", "/CN=gnb-1.ran.example.com", "-implicit_confirm", "-certout", "c.pem")
		cmd.Dir = dir
		if out, err = cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "connect") && !strings.Contains(string(out), "code=503") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
		t.Fatalf("openssl cmp: %v\n%s\n%s", err, out, log)
	}
	if c := readCert(t, filepath.Join(dir, "c.pem")); c.Subject.CommonName != "gnb-1.ran.example.com" {
		t.Fatal(c.Subject)
	}
}
