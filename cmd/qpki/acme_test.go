package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"
)

// TestServeACME runs `qpki serve` with the ACME flags and an external
// account binding required; the key is added with `qpki acme eab add`
// while serve runs, and used up by an account.
func TestServeACME(t *testing.T) {
	dir := t.TempDir()
	root, issuing, data := filepath.Join(dir, "root"), filepath.Join(dir, "issuing"), filepath.Join(dir, "data")
	ok(t, dir, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=Serve ACME Root", "--ca-dir", root)
	ok(t, dir, "ca", "init", "--profile", "ec/issuing-ca", "--parent", root, "--var", "cn=Serve ACME Issuing", "--ca-dir", issuing)
	fails(t, dir, "--acme-rate-ip", "serve", "--ca-dir", issuing, "--data-dir", data, "--acme-rate-ip", "fast")

	cmd := exec.Command(qpkiBin, "serve", "--ca-dir", issuing, "--data-dir", data, "--listen", "127.0.0.1:0", "--workers", "1",
		"--acme-eab-required", "--acme-terms-of-service", "https://ca.test/tos", "--acme-profiles", "ec/tls-server,ec/tls-client",
		"--acme-http-port", "1", "--acme-resolve-to", "127.0.0.1", "--acme-rate-ip", "50/s:100")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	dirURL := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`(https://[0-9.:]+/acme/directory)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				dirURL <- m[1]
			}
		}
	}()
	var url string
	select {
	case url = <-dirURL:
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not print the ACME directory:\n%s", stderr.String())
	}

	var k struct{ KID, HMAC string }
	if err := json.Unmarshal([]byte(ok(t, dir, "acme", "eab", "add", "--data-dir", data, "--note", "web", "--json")), &k); err != nil || k.KID == "" {
		t.Fatalf("eab add: %+v %v", k, err)
	}
	mac, err := base64.RawURLEncoding.DecodeString(k.HMAC)
	if err != nil || len(mac) != 32 {
		t.Fatalf("eab add printed HMAC %q", k.HMAC)
	}
	if out := ok(t, dir, "acme", "eab", "list", "--data-dir", data); !strings.Contains(out, k.KID) || strings.Contains(out, k.HMAC) {
		t.Fatalf("eab list (must name the key, never print its HMAC):\n%s", out)
	}

	// The trust anchor as the README tells clients to get it.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(ok(t, dir, "ca", "export", "--bundle", "root", "--ca-dir", issuing))) {
		t.Fatal("qpki ca export --bundle root gave no certificate")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := &xacme.Client{Key: key, DirectoryURL: url, HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	ctx := context.Background()
	d, err := c.Discover(ctx)
	if err != nil || !d.ExternalAccountRequired || d.Terms != "https://ca.test/tos" || len(d.Profiles) != 2 {
		t.Fatalf("directory %+v %v", d, err)
	}
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err == nil {
		t.Fatal("registered without the required binding")
	}
	a, err := c.Register(ctx, &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: k.KID, Key: mac}}, xacme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	var keys []struct{ KID, Account string }
	if err := json.Unmarshal([]byte(ok(t, dir, "acme", "eab", "list", "--data-dir", data, "--json")), &keys); err != nil ||
		len(keys) != 1 || keys[0].Account == "" || !strings.HasSuffix(a.URI, "/"+keys[0].Account) {
		t.Fatalf("eab list after use: %+v %v (account %s)", keys, err, a.URI)
	}
	ok(t, dir, "acme", "eab", "remove", k.KID, "--data-dir", data)
	fails(t, dir, "unknown external account key", "acme", "eab", "remove", k.KID, "--data-dir", data)
}
