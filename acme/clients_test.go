package acme_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

// tool finds a client binary; a missing one fails the test under CI and
// skips it elsewhere.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (scripts/deps.sh installs it): %v", name, err)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// run runs a command with extra environment variables and fails the test
// with its output when it fails.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(string(out), 4000))
	}
	return string(out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// opensslVerify checks a leaf against the test root with openssl, the
// chain file giving the intermediates.
func (e *env) opensslVerify(t *testing.T, leaf, chain string) {
	t.Helper()
	openssl := tool(t, "openssl")
	out := run(t, nil, openssl, "verify", "-CAfile", e.rootFile, "-untrusted", chain, leaf)
	if !strings.Contains(out, ": OK") {
		t.Fatalf("openssl verify: %s", out)
	}
}

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// revocation returns the CA store's record of a certificate.
func (e *env) record(t *testing.T, c *x509.Certificate) *store.Cert {
	t.Helper()
	st, err := e.srv.Core.CA.Store()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := st.Cert(c.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestCertbot(t *testing.T) {
	certbot := tool(t, "certbot")
	e := newEnv(t, nil)
	d := t.TempDir()
	env := []string{"REQUESTS_CA_BUNDLE=" + e.rootFile}
	dirs := []string{"--config-dir", filepath.Join(d, "config"), "--work-dir", filepath.Join(d, "work"), "--logs-dir", filepath.Join(d, "logs")}
	const name = "certbot.example.com"
	args := append([]string{"certonly", "--standalone", "--non-interactive", "--agree-tos", "-m", "ops@example.com",
		"--server", e.dirURL, "--http-01-port", strconv.Itoa(e.httpPort), "--http-01-address", "127.0.0.1",
		"-d", name, "-d", "www." + name}, dirs...)
	run(t, env, certbot, args...)
	live := filepath.Join(d, "config", "live", name)
	e.opensslVerify(t, filepath.Join(live, "cert.pem"), filepath.Join(live, "chain.pem"))
	first := readLeaf(t, filepath.Join(live, "cert.pem"))
	if !contains(first.DNSNames, name) || !contains(first.DNSNames, "www."+name) {
		t.Errorf("certificate names %v", first.DNSNames)
	}
	// The store records who obtained it: ACME, and the account.
	if o := e.record(t, first).Origin; o == nil || o.Frontend != "acme" || o.Account == "" || o.Label != "" {
		t.Errorf("certificate origin %+v, want the ACME account", o)
	}

	// Renew: a new certificate, same names.
	run(t, env, certbot, append([]string{"renew", "--force-renewal", "--no-random-sleep-on-renew", "--non-interactive"}, dirs...)...)
	e.opensslVerify(t, filepath.Join(live, "cert.pem"), filepath.Join(live, "chain.pem"))
	second := readLeaf(t, filepath.Join(live, "cert.pem"))
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("renew kept the same certificate")
	}

	// Revoke with the account key, for keyCompromise.
	run(t, env, certbot, append([]string{"revoke", "--non-interactive", "--server", e.dirURL, "--cert-path", filepath.Join(live, "cert.pem"),
		"--reason", "keycompromise", "--no-delete-after-revoke"}, dirs...)...)
	rec := e.record(t, second)
	if rec.Revocation == nil || rec.Revocation.Reason != 1 {
		t.Fatalf("after certbot revoke: revocation %+v, want keyCompromise (1)", rec.Revocation)
	}
	if e.record(t, first).Revocation != nil {
		t.Fatal("the first certificate was revoked too")
	}
}

func TestLego(t *testing.T) {
	lego := tool(t, "lego")
	e := newEnv(t, nil)
	path := t.TempDir()
	env := []string{"LEGO_CA_CERTIFICATES=" + e.rootFile}
	common := []string{"--server", e.dirURL, "--accept-tos", "--email", "ops@example.com", "--path", path, "--key-type", "ec256"}
	certFile := func(domain string) (leaf, issuer string) {
		base := filepath.Join(path, "certificates", strings.ReplaceAll(domain, "*", "_"))
		return base + ".crt", base + ".issuer.crt"
	}

	// obtain, renew and revoke for one challenge type; every chain
	// verified with openssl.
	cycle := func(t *testing.T, env, args []string, domain string, reason int) *x509.Certificate {
		t.Helper()
		run(t, env, lego, append(slices.Clone(args), "run")...)
		leaf, issuer := certFile(domain)
		e.opensslVerify(t, leaf, issuer)
		first := readLeaf(t, leaf)

		run(t, env, lego, append(slices.Clone(args), "renew", "--days", "400", "--no-random-sleep")...)
		e.opensslVerify(t, leaf, issuer)
		second := readLeaf(t, leaf)
		if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
			t.Fatal("renew kept the same certificate")
		}

		run(t, env, lego, append(slices.Clone(args), "revoke", "--reason", strconv.Itoa(reason), "--keep")...)
		if rec := e.record(t, second); rec.Revocation == nil || rec.Revocation.Reason != reason {
			t.Fatalf("after lego revoke: revocation %+v, want reason %d", rec.Revocation, reason)
		}
		if e.record(t, first).Revocation != nil {
			t.Fatal("the first certificate was revoked too")
		}
		return second
	}

	t.Run("http-01", func(t *testing.T) {
		const name = "lego-http.example.com"
		cycle(t, env, append(slices.Clone(common), "--domains", name, "--http", "--http.port", "127.0.0.1:"+strconv.Itoa(e.httpPort)), name, 4)
	})

	t.Run("tls-alpn-01", func(t *testing.T) {
		const name = "lego-tls.example.com"
		cycle(t, env, append(slices.Clone(common), "--domains", name, "--tls", "--tls.port", "127.0.0.1:"+strconv.Itoa(e.tlsPort)), name, 1)
	})

	t.Run("dns-01", func(t *testing.T) {
		// lego's httpreq provider puts the TXT records into the test DNS
		// server, which lego and the server both ask.
		dnsEnv := append(slices.Clone(env), "HTTPREQ_ENDPOINT="+e.dns.httpURL, "HTTPREQ_PROPAGATION_TIMEOUT=20", "HTTPREQ_POLLING_INTERVAL=1")
		args := append(slices.Clone(common), "--domains", "*.lego-dns.example.com", "--domains", "lego-dns.example.com",
			"--dns", "httpreq", "--dns.resolvers", e.dns.addr, "--dns.disable-cp")
		c := cycle(t, dnsEnv, args, "*.lego-dns.example.com", 5)
		if len(c.DNSNames) != 2 || !contains(c.DNSNames, "*.lego-dns.example.com") {
			t.Fatalf("certificate names %v", c.DNSNames)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
