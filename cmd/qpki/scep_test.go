package main

import (
	"crypto/sha256"
	"encoding/hex"
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

// TestServeSCEPClient enrolls with Debian's scepclient (micromdm 2.1)
// against qpki serve on an ECDSA CA: a one-time challenge bound to the
// host name scepclient puts only in the CN, a static challenge, a renewal,
// and a replayed one-time challenge that is refused. scepclient encrypts
// with single DES and signs with SHA-1, hence legacy_des labels, and
// handles RSA only, hence -ca-fingerprint of the RA certificate.
func TestServeSCEPClient(t *testing.T) {
	need(t, "scepclient")
	need(t, "openssl")
	dir := t.TempDir()
	ok(t, dir, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=SCEP Client Test Root", "--ca-dir", "ca")
	config := `default:
  legacy_des: true
  names: {}
labels:
  jamf:
    legacy_des: true
    challenge: {type: static, password_env: SCEP_JAMF_PASSWORD}
    names: {dns: [".printers.example.com"]}
`
	if err := os.WriteFile(filepath.Join(dir, "scep.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(testport.Free(t))
	base := "http://127.0.0.1:" + port + "/scep"
	serve := exec.Command(qpkiBin, "serve", "--ca-dir", "ca", "--data-dir", "data", "--listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:"+port, "--workers", "1", "--scep-config", "scep.yaml")
	serve.Dir = dir
	serve.Env = append(os.Environ(), "SCEP_JAMF_PASSWORD=static-printer-secret")
	logf, _ := os.Create(filepath.Join(dir, "serve.log"))
	serve.Stdout, serve.Stderr = logf, logf
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Signal(syscall.SIGTERM); serve.Wait(); logf.Close() })
	raPath := filepath.Join(dir, "ca", "scep", "ra.crt")
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "ca", "qpki.sock")); err == nil {
			if _, err := os.Stat(raPath); err == nil {
				break
			}
		}
		if i == 240 {
			log, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			t.Fatalf("serve did not start:\n%s", log)
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the RA is written before SCEP is mounted
	ra := readCert(t, raPath)
	sum := sha256.Sum256(ra.Raw)
	fp := hex.EncodeToString(sum[:])
	scepclient := func(wd, url, challenge, cn string, wantOK bool) string {
		t.Helper()
		os.MkdirAll(filepath.Join(dir, wd), 0o700)
		args := []string{"-server-url", url, "-cn", cn, "-private-key", "key.pem", "-certificate", "cert.pem", "-ca-fingerprint", fp}
		if challenge != "" {
			args = append(args, "-challenge", challenge)
		}
		cmd := exec.Command("scepclient", args...)
		cmd.Dir = filepath.Join(dir, wd)
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			log, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			t.Fatalf("scepclient %s (want success %v): %v\n%s\nserve log:\n%s", strings.Join(args, " "), wantOK, err, out, log)
		}
		return string(out)
	}
	verify := func(wd string) string {
		t.Helper()
		p := filepath.Join(wd, "cert.pem")
		if out := tool(t, dir, "openssl", "verify", "-CAfile", "ca/ca.crt", p); !strings.Contains(out, ": OK") {
			t.Fatalf("openssl verify: %s", out)
		}
		return tool(t, dir, "openssl", "x509", "-in", p, "-noout", "-serial", "-subject")
	}

	// One-time challenge, granting the host that scepclient names in the CN.
	pw := strings.TrimSpace(ok(t, dir, "scep", "challenge", "add", "--data-dir", "data", "--ttl", "1d", "--allow-dns", "laptop-7.example.com"))
	if len(pw) < 20 || strings.ContainsAny(pw, " \n") {
		t.Fatalf("challenge add printed %q, want the password alone", pw)
	}
	scepclient("laptop", base, pw, "laptop-7.example.com", true)
	first := verify("laptop")
	if !strings.Contains(first, "CN=laptop-7.example.com") && !strings.Contains(first, "CN = laptop-7.example.com") {
		t.Errorf("subject: %s", first)
	}
	// The same challenge from another device (another key, another
	// transaction) is a replay.
	scepclient("intruder", base, pw, "laptop-7.example.com", false)
	if _, err := os.Stat(filepath.Join(dir, "intruder", "cert.pem")); err == nil {
		t.Error("the replayed challenge got a certificate")
	}
	// Renewal: scepclient signs a RenewalReq with the certificate it has.
	os.Remove(filepath.Join(dir, "laptop", "csr.pem"))
	scepclient("laptop", base, "", "laptop-7.example.com", true)
	if renewed := verify("laptop"); renewed == first {
		t.Errorf("the renewal returned the same certificate: %s", renewed)
	}
	// The static (Jamf-style) label, Cisco-style path.
	scepclient("printer", base+"/jamf/pkiclient.exe", "static-printer-secret", "p1.printers.example.com", true)
	verify("printer")
	scepclient("printer2", base+"/jamf", "wrong-printer-secret", "p2.printers.example.com", false)
	scepclient("printer3", base+"/jamf", "static-printer-secret", "p3.elsewhere.example.com", false)
}
