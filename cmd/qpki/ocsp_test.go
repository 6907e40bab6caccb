package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/qpki/qpki/internal/testport"
	"github.com/qpki/qpki/pkg/ocspx"
)

// need finds an external tool; missing, the test fails under CI and is
// skipped elsewhere.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (scripts/deps.sh installs it)", tool)
		}
		t.Skipf("%s not found", tool)
	}
	return p
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tool(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func post(t *testing.T, url string, body []byte) []byte {
	t.Helper()
	resp, err := http.Post(url, "application/ocsp-request", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d", url, resp.StatusCode)
	}
	return out
}

// TestServeOCSP runs `qpki serve` with its OCSP responder on the
// plain-HTTP listener and asks it with real clients: openssl ocsp (POST,
// and -respin on what curl GETs), GnuTLS ocsptool and
// golang.org/x/crypto/ocsp, for a good certificate, the same after
// `qpki cert revoke`, a serial never issued, another CA's certificate,
// bad requests, and a delegated responder.
func TestServeOCSP(t *testing.T) {
	need(t, "openssl")
	need(t, "curl")
	need(t, "ocsptool")
	dir := t.TempDir()
	ok(t, dir, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=OCSP Test Root", "--ca-dir", "ca")
	ok(t, dir, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=Another Root", "--ca-dir", "other")
	port := strconv.Itoa(testport.Free(t))
	base := "http://127.0.0.1:" + port
	url := base + "/ocsp"
	serve := exec.Command(qpkiBin, "serve", "--ca-dir", "ca", "--data-dir", "data", "--listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:"+port, "--workers", "1", "--ocsp-url", url)
	serve.Dir = dir
	logf, _ := os.Create(filepath.Join(dir, "serve.log"))
	serve.Stdout, serve.Stderr = logf, logf
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Signal(syscall.SIGTERM); serve.Wait(); logf.Close() })

	issuerPath := filepath.Join(dir, "ca", "ca.crt")
	issuer := readCert(t, issuerPath)
	tool(t, dir, "openssl", "ecparam", "-genkey", "-name", "prime256v1", "-out", "leaf.key")
	tool(t, dir, "openssl", "req", "-new", "-key", "leaf.key", "-subj", "/CN=leaf.ocsp.test", "-out", "leaf.csr")
	// The CLI reaches serve through its local socket, once serve is up.
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "ca", "qpki.sock")); err == nil {
			break
		}
		if i == 240 {
			log, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			t.Fatalf("serve did not start:\n%s", log)
		}
		time.Sleep(250 * time.Millisecond)
	}
	var leafPEM string
	for i := 0; ; i++ {
		r := run(t, dir, nil, "cert", "issue", "--ca-dir", "ca", "--profile", "ec/tls-server", "--csr", "leaf.csr")
		if r.code == 0 && strings.Contains(r.stdout, "BEGIN CERTIFICATE") {
			leafPEM = r.stdout
			break
		}
		if i == 120 {
			t.Fatalf("cert issue: %s%s", r.stdout, r.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	os.WriteFile(filepath.Join(dir, "leaf.pem"), []byte(leafPEM), 0o600)
	leaf := readCert(t, filepath.Join(dir, "leaf.pem"))
	if len(leaf.OCSPServer) != 1 || leaf.OCSPServer[0] != url {
		t.Fatalf("--ocsp-url: the leaf's AIA OCSP is %v, want %s", leaf.OCSPServer, url)
	}

	ocspCmd := func(args ...string) string {
		cmd := exec.Command("openssl", append([]string{"ocsp", "-issuer", issuerPath, "-CAfile", issuerPath}, args...)...)
		cmd.Dir = dir
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	// POST, openssl's own client.
	for i := 0; ; i++ {
		out := ocspCmd("-cert", "leaf.pem", "-url", url)
		if strings.Contains(out, "leaf.pem: good") && strings.Contains(out, "Response verify OK") {
			break
		}
		if i == 60 {
			t.Fatalf("openssl ocsp (good):\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// GET (RFC 5019), twice: the same bytes and caching headers.
	req, err := xocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	getURL := url + "/" + base64.StdEncoding.EncodeToString(req)
	curl := func(u string) ([]byte, http.Header) {
		hdr := filepath.Join(dir, "headers")
		body := tool(t, dir, "curl", "-sS", "-f", "-D", hdr, u)
		raw, _ := os.ReadFile(hdr)
		h := http.Header{}
		for _, line := range strings.Split(string(raw), "\r\n") {
			if k, v, ok := strings.Cut(line, ": "); ok {
				h.Add(k, v)
			}
		}
		return []byte(body), h
	}
	first, h := curl(getURL)
	second, h2 := curl(getURL)
	if !bytes.Equal(first, second) || h.Get("ETag") == "" || h.Get("ETag") != h2.Get("ETag") {
		t.Fatalf("two GETs differ (ETag %q, %q)", h.Get("ETag"), h2.Get("ETag"))
	}
	if cc := h.Get("Cache-Control"); !strings.Contains(cc, "max-age=") || !strings.Contains(cc, "public") ||
		h.Get("Last-Modified") == "" || h.Get("Expires") == "" || h.Get("Content-Type") != "application/ocsp-response" {
		t.Fatalf("GET headers: %v", h)
	}
	os.WriteFile(filepath.Join(dir, "good.der"), first, 0o600)
	if out := ocspCmd("-respin", "good.der", "-cert", "leaf.pem"); !strings.Contains(out, "leaf.pem: good") || !strings.Contains(out, "Response verify OK") {
		t.Fatalf("openssl ocsp -respin:\n%s", out)
	}
	if out := tool(t, dir, "ocsptool", "--verify-response", "--load-signer", issuerPath, "--infile", "good.der"); !strings.Contains(out, "Success") || !strings.Contains(out, "Certificate Status: good") {
		t.Fatalf("ocsptool:\n%s", out)
	}
	if r, err := xocsp.ParseResponseForCert(first, leaf, issuer); err != nil || r.Status != xocsp.Good {
		t.Fatalf("x/crypto/ocsp: %+v %v", r, err)
	}
	// A SHA-256 CertID, signed on request and answered as well.
	req256, _ := xocsp.CreateRequest(leaf, issuer, &xocsp.RequestOptions{Hash: 5 /* crypto.SHA256 */})
	if r, err := xocsp.ParseResponseForCert(post(t, url, req256), leaf, issuer); err != nil || r.Status != xocsp.Good {
		t.Fatalf("SHA-256 CertID: %+v %v", r, err)
	}

	// The same answer on the HTTPS listener.
	logData, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
	m := regexp.MustCompile(`HTTPS +(https://[0-9.:]+)/`).FindSubmatch(logData)
	if m == nil {
		t.Fatalf("no HTTPS address in the serve log:\n%s", logData)
	}
	pool := x509.NewCertPool()
	pool.AddCert(issuer)
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := tlsClient.Post(string(m[1])+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	overTLS, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if r, err := xocsp.ParseResponseForCert(overTLS, leaf, issuer); err != nil || r.Status != xocsp.Good {
		t.Fatalf("OCSP over HTTPS: %+v %v", r, err)
	}

	// Revoked, with its reason, right after `qpki cert revoke`.
	ok(t, dir, "cert", "revoke", "--ca-dir", "ca", "--reason", "keyCompromise", leaf.SerialNumber.Text(16))
	for i := 0; ; i++ {
		out := ocspCmd("-cert", "leaf.pem", "-url", url)
		if strings.Contains(out, "leaf.pem: revoked") && strings.Contains(out, "Reason: keyCompromise") {
			break
		}
		if i == 60 {
			t.Fatalf("openssl ocsp after revoke:\n%s", out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	revoked, _ := curl(getURL)
	if r, err := xocsp.ParseResponseForCert(revoked, leaf, issuer); err != nil || r.Status != xocsp.Revoked || r.RevocationReason != xocsp.KeyCompromise {
		t.Fatalf("x/crypto/ocsp after revoke: %+v %v", r, err)
	}
	os.WriteFile(filepath.Join(dir, "revoked.der"), revoked, 0o600)
	if out := tool(t, dir, "ocsptool", "--verify-response", "--load-signer", issuerPath, "--infile", "revoked.der"); !strings.Contains(out, "Certificate Status: revoked") {
		t.Fatalf("ocsptool after revoke:\n%s", out)
	}

	// A serial never issued: the RFC 6960 §2.2 form. Its GET request is
	// one whose base64 holds "//", which ServeMux would have redirected.
	var unknown *big.Int
	var unknownReq []byte
	for n := int64(1); ; n++ {
		unknownReq, _ = ocspx.CreateRequest(issuer, []*big.Int{big.NewInt(n)}, ocspx.SHA1, nil)
		if strings.Contains(base64.StdEncoding.EncodeToString(unknownReq), "//") {
			unknown = big.NewInt(n)
			break
		}
	}
	body, _ := curl(url + "/" + base64.StdEncoding.EncodeToString(unknownReq))
	r, err := xocsp.ParseResponseForCert(body, &x509.Certificate{SerialNumber: unknown}, issuer)
	if err != nil || r.Status != xocsp.Revoked || r.RevocationReason != xocsp.CertificateHold || !r.RevokedAt.Equal(time.Unix(0, 0)) {
		t.Fatalf("never-issued serial: %+v %v", r, err)
	}
	if p, err := ocspx.ParseResponse(body); err != nil || !p.ExtendedRevoke {
		t.Fatalf("never-issued serial: no extended revoked definition (%v)", err)
	}
	if out := ocspCmd("-serial", "0x"+unknown.Text(16), "-url", url); !strings.Contains(out, ": revoked") || !strings.Contains(out, "certificateHold") {
		t.Fatalf("openssl ocsp, unknown serial:\n%s", out)
	}

	// Another CA's certificate: unauthorized.
	otherPath := filepath.Join(dir, "other", "ca.crt")
	cmd := exec.Command("openssl", "ocsp", "-issuer", otherPath, "-serial", "0x1234", "-url", url)
	cmd.Dir = dir
	if out, _ := cmd.CombinedOutput(); !strings.Contains(string(out), "unauthorized (6)") {
		t.Fatalf("openssl ocsp, another CA:\n%s", out)
	}

	// Bad requests: the OCSP error, never a crash.
	md5 := bytes.Replace(req, []byte{0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a}, []byte{0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1b}, 1)
	malformed := ocspx.ErrorResponse(ocspx.MalformedRequest)
	for name, b := range map[string][]byte{"garbage": []byte("hello"), "truncated": req[:len(req)-4],
		"oversized": make([]byte, ocspx.MaxRequest+1), "unknown hash": md5} {
		if got := post(t, url, b); !bytes.Equal(got, malformed) {
			t.Errorf("%s: answered % x, want malformedRequest", name, got)
		}
	}
	if got, _ := curl(url + "/AAAA!!!"); !bytes.Equal(got, malformed) {
		t.Errorf("bad GET: answered % x", got)
	}
	if !strings.Contains(ok(t, dir, "cert", "list", "--ca-dir", "ca"), leaf.SerialNumber.Text(16)) {
		t.Fatal("serve stopped answering after the bad requests")
	}

	// A delegated responder signs from now on; openssl checks it with
	// -VAfile, x/crypto through the certificate in the response.
	ok(t, dir, "ocsp", "responder", "issue", "--ca-dir", "ca", "--days", "2")
	respCert := readCert(t, filepath.Join(dir, "ca", "ocsp", "responder.crt"))
	if len(respCert.ExtKeyUsage) != 1 || respCert.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning {
		t.Fatalf("responder EKU %v", respCert.ExtKeyUsage)
	}
	nocheck := false
	for _, e := range respCert.Extensions {
		nocheck = nocheck || e.Id.Equal(ocspx.OIDNoCheck)
	}
	if !nocheck || respCert.NotAfter.Sub(respCert.NotBefore) > 49*time.Hour {
		t.Fatalf("responder certificate: nocheck %v, valid %s", nocheck, respCert.NotAfter.Sub(respCert.NotBefore))
	}
	var delegated []byte
	for i := 0; ; i++ {
		// Serials never issued are signed on request: by the new signer.
		fresh, _ := ocspx.CreateRequest(issuer, []*big.Int{big.NewInt(int64(1000 + i))}, ocspx.SHA1, nil)
		delegated = post(t, url, fresh)
		if p, err := ocspx.ParseResponse(delegated); err == nil && len(p.Certs) == 1 && p.Certs[0].Equal(respCert) {
			break
		}
		if i == 60 {
			t.Fatal("responses are not signed by the delegated responder")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := xocsp.ParseResponse(delegated, issuer); err != nil {
		t.Fatalf("x/crypto/ocsp, delegated: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "responder.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: respCert.Raw}), 0o600)
	os.WriteFile(filepath.Join(dir, "delegated.der"), delegated, 0o600)
	if out := ocspCmd("-respin", "delegated.der", "-VAfile", "responder.pem", "-serial", "0x3e8"); !strings.Contains(out, "Response verify OK") {
		t.Fatalf("openssl ocsp -VAfile:\n%s", out)
	}
}
