package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qpki/qpki/est"
	"github.com/qpki/qpki/pkg/cms"
)

func runStdin(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(qpkiBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
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

func TestESTUsers(t *testing.T) {
	data := t.TempDir()
	r := runStdin(t, "s3cret\n", "est", "user", "add", "fleet-1", "--data-dir", data)
	if r.code != 0 || !strings.Contains(r.stdout, "added EST user fleet-1") {
		t.Fatalf("add: %+v", r)
	}
	r = runStdin(t, "n3w\r\n", "est", "user", "add", "fleet-1", "--data-dir", data)
	if r.code != 0 || !strings.Contains(r.stdout, "changed the password") {
		t.Fatalf("re-add: %+v", r)
	}
	users, err := est.ListUsers(data)
	if err != nil || len(users) != 1 {
		t.Fatal(users, err)
	}
	if ok, _ := est.VerifyPassword(users[0].Hash, []byte("n3w")); !ok {
		t.Fatal("the password read from stdin does not verify")
	}
	if fi, _ := os.Stat(est.UsersPath(data)); fi.Mode().Perm() != 0o600 {
		t.Errorf("est-users.json mode %v", fi.Mode())
	}
	if out := ok(t, "", "est", "user", "list", "--data-dir", data); !strings.Contains(out, "fleet-1") {
		t.Fatalf("list: %s", out)
	}
	if r := runStdin(t, "", "est", "user", "add", "fleet-2", "--data-dir", data); r.code == 0 || !strings.Contains(r.stderr, "no password on standard input") {
		t.Fatalf("empty stdin: %+v", r)
	}
	if r := runStdin(t, "x\n", "est", "user", "add", "bad:name", "--data-dir", data); r.code == 0 {
		t.Fatalf("bad name accepted: %+v", r)
	}
	// Grants are checked when given and stored with the user.
	if r := runStdin(t, "x\n", "est", "user", "add", "fleet-3", "--data-dir", data, "--allow-dns", "a.*.example.com"); r.code == 0 || !strings.Contains(r.stderr, "a.*.example.com") {
		t.Fatalf("a bad DNS pattern: %+v", r)
	}
	if r := runStdin(t, "x\n", "est", "user", "add", "fleet-3", "--data-dir", data, "--allow-dns", "*.gw.example.com",
		"--allow-ip", "10.30.0.0/16", "--allow-subject", "O=Example Corp"); r.code != 0 {
		t.Fatalf("add with grants: %+v", r)
	}
	if out := ok(t, "", "est", "user", "list", "--data-dir", data); !strings.Contains(out, "dns:*.gw.example.com ip:10.30.0.0/16 subject:O=Example Corp") {
		t.Fatalf("list: %s", out)
	}
	ok(t, "", "est", "user", "remove", "fleet-1", "--data-dir", data)
	fails(t, "", `no EST user "fleet-1"`, "est", "user", "remove", "fleet-1", "--data-dir", data)
}

// TestServeEST runs `qpki serve` with the EST flags and enrolls over
// HTTPS with a password, under a label from --est-config.
func TestServeEST(t *testing.T) {
	dir := t.TempDir()
	root, issuing, data := filepath.Join(dir, "root"), filepath.Join(dir, "issuing"), filepath.Join(dir, "data")
	ok(t, dir, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=Serve EST Root", "--ca-dir", root)
	ok(t, dir, "ca", "init", "--profile", "ec/issuing-ca", "--parent", root, "--var", "cn=Serve EST Issuing", "--ca-dir", issuing)
	// The user is granted its names; the label only what users were
	// granted ("names: {}"); the unlabelled endpoints (no default:) none.
	if r := runStdin(t, "pw\n", "est", "user", "add", "dev", "--data-dir", data, "--allow-dns", "*.devices.example.com"); r.code != 0 {
		t.Fatal(r)
	}
	if out := ok(t, "", "est", "user", "list", "--data-dir", data); !strings.Contains(out, "dns:*.devices.example.com") {
		t.Fatalf("list: %s", out)
	}
	cfg := filepath.Join(dir, "est.yaml")
	os.WriteFile(cfg, []byte("labels:\n  clients:\n    profile: ec/tls-client\n    auth: [basic]\n    names: {}\nwait: 20s\nretry_after: 5s\n"), 0o644)
	cmd := exec.Command(qpkiBin, "serve", "--ca-dir", issuing, "--data-dir", data, "--listen", "127.0.0.1:0", "--workers", "1",
		"--est-config", cfg, "--est-profile", "ec/tls-server", "--est-auth-cache-ttl", "1m", "--est-auth-cache-size", "100")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`HTTPS\s+https://([0-9.:]+)/`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var host string
	select {
	case host = <-addr:
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start:\n%s", stderr.String())
	}
	rootPEM, _ := os.ReadFile(filepath.Join(root, "ca.crt"))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("no root certificate in ca.crt")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	enroll := func(path, cn string) (int, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
		req, _ := http.NewRequest("POST", "https://"+host+"/.well-known/est/"+path, strings.NewReader(base64.StdEncoding.EncodeToString(csr)))
		req.SetBasicAuth("dev", "pw")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, body
	}
	code, body := enroll("clients/simpleenroll", "dev-1.devices.example.com")
	if code != 200 {
		t.Fatalf("simpleenroll: %d %s", code, body)
	}
	der, _ := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(body), "\n", ""))
	certs, err := cms.ParseCertsOnly(der)
	if err != nil || certs[0].Subject.CommonName != "dev-1.devices.example.com" || certs[0].ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("issued %v %v", certs, err)
	}
	if code, body := enroll("clients/simpleenroll", "www.victim.com"); code != 403 || !strings.Contains(string(body), "www.victim.com is not granted") {
		t.Errorf("a name not granted: %d %s", code, body)
	}
	if code, body := enroll("simpleenroll", "dev-2.devices.example.com"); code != 403 || !strings.Contains(string(body), "default.names is not set") {
		t.Errorf("the unlabelled endpoint without a name policy: %d %s", code, body)
	}
}
