package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	xacme "golang.org/x/crypto/acme"

	"github.com/qpki/qpki/acme"
	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/ratelimit"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/server"
)

// serveTLSALPN answers tls-alpn-01 on the env's port with certificates
// made by mk for the SNI asked.
func (e *env) serveTLSALPN(t *testing.T, mk func(hello *tls.ClientHelloInfo) (*tls.Certificate, error)) {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:"+strconv.Itoa(e.tlsPort), &tls.Config{NextProtos: []string{"acme-tls/1"}, GetCertificate: mk})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
}

// alpnCert is the RFC 8737 §3 certificate for an IP identifier.
func alpnCertIP(t *testing.T, ip net.IP, keyAuth string) *tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sum := sha256.Sum256([]byte(keyAuth))
	val, _ := asn1.Marshal(sum[:])
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acme"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{ip},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}, Critical: true, Value: val}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestIPIdentifiers(t *testing.T) {
	// 127.0.0.1 is allowed as --acme-resolve-to; the documentation
	// network only because the test allows it.
	e := newEnv(t, func(c *acme.Config) { c.ValidationAllow = []string{"2001:db8::/32"} })
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.client()
	// http-01 for an IPv4 address.
	o := order(t, c, xacme.IPIDs("127.0.0.1"), func(t *testing.T, c *xacme.Client, z *xacme.Authorization) *xacme.Challenge {
		for _, ch := range z.Challenges {
			if ch.Type == "dns-01" {
				t.Fatal("dns-01 offered for an IP address")
			}
		}
		return http01(answers)(t, c, z)
	})
	e.issue(t, c, o, "", "127.0.0.1")

	// tls-alpn-01 for an IPv6 address: the SNI is its reverse name.
	const ip6 = "2001:db8::1"
	var sni sync.Map
	e.serveTLSALPN(t, func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		sni.Store("last", h.ServerName)
		v, _ := answers.Load("alpn")
		return alpnCertIP(t, net.ParseIP(ip6), v.(string)), nil
	})
	o = order(t, c, xacme.IPIDs(ip6), func(t *testing.T, c *xacme.Client, z *xacme.Authorization) *xacme.Challenge {
		ch := pick(t, z, "tls-alpn-01")
		ka, _ := c.HTTP01ChallengeResponse(ch.Token) // the key authorization
		answers.Store("alpn", ka)
		return ch
	})
	if v, _ := sni.Load("last"); v != "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa" {
		t.Fatalf("tls-alpn-01 SNI %v, want the reverse name", v)
	}
	e.issue(t, c, o, "", ip6)
}

// TestSpecialPurposeIPIdentifiers: newOrder refuses ip identifiers in
// the special-purpose networks with rejectedIdentifier, unless an allowed
// network holds them.
func TestSpecialPurposeIPIdentifiers(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.ValidationAllow = []string{"192.0.2.0/24", "fd00:1::/32"} })
	c := e.client()
	ctx := context.Background()
	for _, ip := range []string{"10.0.0.1", "169.254.169.254", "127.0.0.2", "100.64.0.1", "::1", "fe80::1", "fd00:2::1",
		"::ffff:192.168.0.1", "198.51.100.1", "224.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1"} {
		_, err := c.AuthorizeOrder(ctx, xacme.IPIDs(ip))
		acmeErr(t, err, http.StatusBadRequest, "rejectedIdentifier")
		if ae := err.(*xacme.Error); !strings.Contains(ae.Detail, "special-purpose") {
			t.Errorf("%s: %q", ip, ae.Detail)
		}
	}
	for _, ip := range []string{"192.0.2.1", "fd00:1::5", "127.0.0.1", "8.8.8.8"} {
		if _, err := c.AuthorizeOrder(ctx, xacme.IPIDs(ip)); err != nil {
			t.Errorf("%s: %v", ip, err)
		}
	}
}

func TestCAA(t *testing.T) {
	e := newEnv(t, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.client()
	acct, err := c.GetReg(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	caa := func(tag, value string) *dns.CAA { return &dns.CAA{Tag: tag, Value: value} }
	e.dns.setCAA("example.org", caa("issue", "other-ca.test"))
	e.dns.setCAA("ok.example.org", caa("issue", "qpki.test; validationmethods=http-01"), caa("iodef", "mailto:x@example.org"))
	e.dns.setCAA("acct.example.org", caa("issue", "qpki.test; accounturi="+acct.URI+"-not"))
	e.dns.setCAA("crit.example.org", caa("issue", "qpki.test"), &dns.CAA{Flag: 128, Tag: "tbs", Value: "x"})

	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"www.example.org", false},  // inherits example.org's set
		{"ok.example.org", true},    // the closest set wins
		{"a.ok.example.org", true},  // climbing to ok.example.org
		{"acct.example.org", false}, // accounturi names another account
		{"crit.example.org", false}, // unknown critical property
		{"free.example.net", true},  // no CAA at all
	} {
		z, err := c.AuthorizeOrder(context.Background(), xacme.DomainIDs(tc.name))
		if err != nil {
			t.Fatal(err)
		}
		az, _ := c.GetAuthorization(context.Background(), z.AuthzURLs[0])
		ch := http01(answers)(t, c, az)
		if _, err := c.Accept(context.Background(), ch); err != nil {
			t.Fatal(err)
		}
		_, err = c.WaitAuthorization(context.Background(), z.AuthzURLs[0])
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok {
			var ae *xacme.AuthorizationError
			if err == nil {
				t.Errorf("%s: validated despite CAA", tc.name)
			} else if !errors.As(err, &ae) || !strings.Contains(ae.Error(), "caa") {
				t.Errorf("%s: %v, want a caa problem", tc.name, err)
			}
		}
	}
}

func TestRateLimits(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) {
		c.IPLimit = mustLimit(t, "5/s:8")
	})
	hc := e.httpClient()
	limited := 0
	for i := 0; i < 20; i++ {
		resp, err := hc.Head(strings.Replace(e.dirURL, "directory", "new-nonce", 1))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Fatalf("rateLimited without a Retry-After: %q", resp.Header.Get("Retry-After"))
			}
		}
	}
	if limited < 10 {
		t.Fatalf("%d of 20 quick requests were limited, want at least 10", limited)
	}

	// Orders per account, and the exempt list.
	e2 := newEnv(t, func(c *acme.Config) { c.OrderLimit = mustLimit(t, "1/m:2") })
	c := e2.raw(t)
	c.register()
	for i := 0; i < 2; i++ {
		c.newOrder("rl" + strconv.Itoa(i) + ".example.com")
	}
	r2 := c.post(c.url("newOrder"), map[string]any{"identifiers": dnsIDs("rl3.example.com")})
	r2.wantProblem(t, http.StatusTooManyRequests, "rateLimited")
	if r2.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	e3 := newEnv(t, func(c *acme.Config) { c.OrderLimit = mustLimit(t, "1/m:1"); c.Exempt = []string{"127.0.0.0/8"} })
	c3 := e3.raw(t)
	c3.register()
	for i := 0; i < 3; i++ {
		c3.newOrder("exempt" + strconv.Itoa(i) + ".example.com") // fails the test if limited
	}
}

// TestRateLimitsBehindProxy: behind a trusted proxy each client has its
// own bucket (from X-Forwarded-For), and an IPv6 client's bucket is its
// /64, however many of its addresses it uses.
func TestRateLimitsBehindProxy(t *testing.T) {
	e := newEnvServer(t, func(c *server.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} },
		func(c *acme.Config) { c.IPLimit = mustLimit(t, "1/m:3") })
	hc := e.httpClient()
	nonce := strings.Replace(e.dirURL, "directory", "new-nonce", 1)
	head := func(client string) int {
		req, _ := http.NewRequest("HEAD", nonce, nil)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Clients in different /64s (and IPv4 ones) do not share a bucket.
	for i := 0; i < 6; i++ {
		for _, c := range []string{"2001:db8:0:" + strconv.Itoa(i) + "::1", "198.51.100." + strconv.Itoa(i+1)} {
			if code := head(c); code == http.StatusTooManyRequests {
				t.Fatalf("client %s limited on its first request", c)
			}
		}
	}
	// One client walking the addresses of its /64 gets its burst of 3.
	limited := 0
	for i := 1; i <= 10; i++ {
		if head("2001:db8:aaaa:1::"+strconv.FormatInt(int64(i), 16)) == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 7 {
		t.Errorf("%d of 10 requests from one /64 limited, want 7", limited)
	}
}

func mustLimit(t *testing.T, s string) ratelimit.Limit {
	t.Helper()
	l, err := ratelimit.ParseLimit(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestProfilesAndValidity(t *testing.T) {
	e := newEnv(t, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	r := e.raw(t)
	profiles := r.dir["meta"].(map[string]any)["profiles"].(map[string]any)
	if _, ok := profiles["ec/tls-server"]; !ok || len(profiles) != 2 {
		t.Fatalf("directory profiles %v", profiles)
	}
	meta := r.dir["meta"].(map[string]any)
	if meta["termsOfService"] != "https://qpki.test/terms" || meta["website"] != "https://qpki.test/" || meta["caaIdentities"] == nil {
		t.Fatalf("directory meta %v", meta)
	}
	c := e.client()
	o := order(t, c, xacme.DomainIDs("client.example.com"), http01(answers), xacme.WithOrderIssuanceProfile("ec/tls-client"))
	if o.Profile != "ec/tls-client" {
		t.Fatalf("order profile %q", o.Profile)
	}
	cert, _ := e.issue(t, c, o, "", "client.example.com")
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("ec/tls-client certificate has EKU %v", cert.ExtKeyUsage)
	}
	// notAfter is honoured, to the second.
	notAfter := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	o = order(t, c, xacme.DomainIDs("short.example.com"), http01(answers), xacme.WithOrderNotAfter(notAfter))
	cert, _ = e.issue(t, c, o, "", "short.example.com")
	if d := cert.NotAfter.Sub(notAfter); d < -time.Second || d > time.Second {
		t.Fatalf("certificate notAfter %s, asked %s", cert.NotAfter, notAfter)
	}
}

// certID is the ARI identifier of a certificate.
func certID(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	id, err := core.CertID(c)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRenewalInfoAndRevocation(t *testing.T) {
	e := newEnv(t, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.client()
	ctx := context.Background()
	o := order(t, c, xacme.DomainIDs("ari.example.com"), http01(answers))
	csr, certKey := csrFor(t, "", "ari.example.com")
	ders, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csr, true)
	if err != nil {
		t.Fatal(err)
	}
	cert := e.verifyChain(t, ders, []string{"ari.example.com"})

	r := e.raw(t)
	ari := func() (start, end time.Time) {
		resp, err := r.http.Get(r.url("renewalInfo") + "/" + certID(t, cert))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct {
			Window struct{ Start, End time.Time } `json:"suggestedWindow"`
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Retry-After") == "" || json.NewDecoder(resp.Body).Decode(&v) != nil {
			t.Fatalf("renewalInfo: HTTP %d", resp.StatusCode)
		}
		return v.Window.Start, v.Window.End
	}
	start, end := ari()
	if !start.After(cert.NotBefore) || !end.After(start) || !end.Before(cert.NotAfter) {
		t.Fatalf("renewal window %s..%s outside %s..%s", start, end, cert.NotBefore, cert.NotAfter)
	}
	if resp, _ := r.http.Get(r.url("renewalInfo") + "/AAAA.AQ"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("renewalInfo of an unknown certificate: HTTP %d", resp.StatusCode)
	}

	// An order replacing it; a second one is refused (x/crypto/acme has
	// no replaces: the same account, by hand).
	acct, err := c.GetReg(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	rc := e.raw(t)
	rc.key, rc.kid = c.Key, acct.URI
	replaces := map[string]any{"identifiers": dnsIDs("ari.example.com"), "replaces": certID(t, cert)}
	if r := rc.post(rc.url("newOrder"), replaces); r.status != http.StatusCreated || r.json(t)["replaces"] != certID(t, cert) {
		t.Fatalf("order replacing the certificate: HTTP %d %s", r.status, r.body)
	}
	rc.post(rc.url("newOrder"), replaces).wantProblem(t, http.StatusConflict, "alreadyReplaced")
	stranger := e.raw(t)
	stranger.register()
	stranger.post(stranger.url("newOrder"), replaces).wantProblem(t, http.StatusForbidden, "unauthorized")

	// Revocation: not by a stranger, not for a CA reason, then by the
	// certificate's own key; once only.
	other := e.client()
	if err := other.RevokeCert(ctx, nil, cert.Raw, xacme.CRLReasonKeyCompromise); err == nil {
		t.Fatal("another account revoked the certificate")
	} else {
		acmeErr(t, err, http.StatusForbidden, "unauthorized")
	}
	if err := c.RevokeCert(ctx, nil, cert.Raw, xacme.CRLReasonCACompromise); err == nil {
		t.Fatal("revoked for cACompromise")
	} else {
		acmeErr(t, err, http.StatusBadRequest, "badRevocationReason")
	}
	if err := other.RevokeCert(ctx, certKey, cert.Raw, xacme.CRLReasonKeyCompromise); err != nil {
		t.Fatalf("revocation with the certificate's key: %v", err)
	}
	if rec := e.record(t, cert); rec.Revocation == nil || rec.Revocation.Reason != 1 {
		t.Fatalf("revocation %+v", rec.Revocation)
	}
	// (x/crypto/acme takes alreadyRevoked for success: by hand.)
	rc.post(rc.url("revokeCert"), map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(cert.Raw)}).
		wantProblem(t, http.StatusBadRequest, "alreadyRevoked")
	// A revoked certificate should be replaced now.
	if start, end := ari(); end.After(time.Now().Add(time.Minute)) || !start.Before(end) {
		t.Fatalf("renewal window of a revoked certificate %s..%s, want now", start, end)
	}
}

func TestAlternateChains(t *testing.T) {
	dir := t.TempDir()
	caDir := newCA(t, dir)
	sub, err := ca.Open(caDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Rotate(ca.RotateOptions{CrossSign: true}); err != nil {
		t.Fatal(err)
	}
	sub.Close()
	e := &env{t: t, dir: dir, caDir: caDir, dataDir: filepath.Join(dir, "data"), httpPort: freePort(t), tlsPort: freePort(t)}
	e.start(acme.Config{DataDir: e.dataDir, Profiles: []string{"ec/tls-server"}, HTTPPort: e.httpPort, ResolveTo: "127.0.0.1"})
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.client()
	o := order(t, c, xacme.DomainIDs("alt.example.com"), http01(answers))
	_, certURL := e.issue(t, c, o, "", "alt.example.com")
	alts, err := c.ListCertAlternates(context.Background(), certURL)
	if err != nil || len(alts) != 1 {
		t.Fatalf("alternates %v %v, want one", alts, err)
	}
	ders, err := c.FetchCert(context.Background(), alts[0], true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ders) != 3 {
		t.Fatalf("alternate chain of %d certificates, want leaf, link and old issuing CA", len(ders))
	}
	// The link is self-issued (same name, RFC 5280 §6.1: it does not
	// count against the old issuing CA's pathLenConstraint of 0), which
	// crypto/x509 does not know but OpenSSL does.
	leaf := filepath.Join(dir, "alt-leaf.pem")
	chain := filepath.Join(dir, "alt-chain.pem")
	var certs []*x509.Certificate
	for _, d := range ders {
		cc, _ := x509.ParseCertificate(d)
		certs = append(certs, cc)
	}
	os.WriteFile(leaf, ca.EncodeCerts(certs[0]), 0o644)
	os.WriteFile(chain, ca.EncodeCerts(certs[1:]...), 0o644)
	e.opensslVerify(t, leaf, chain)
}

func TestRestart(t *testing.T) {
	e := newEnv(t, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.raw(t)
	c.register()
	orderURL, _ := c.newOrder("restart.example.com")
	saved := c.nonce()
	cfg := acme.Config{DataDir: e.dataDir, Profiles: []string{"ec/tls-server"}, HTTPPort: e.httpPort, ResolveTo: "127.0.0.1"}
	e.stop()
	e.start(cfg)
	// The listener's port changed: the same paths on the new base.
	c.dir = e.raw(t).dir
	rebase := func(u string) string { return "https://" + e.srv.Addr + u[strings.Index(u, "/acme/"):] }
	orderURL, c.kid = rebase(orderURL), rebase(c.kid)
	// The account, its order and a nonce from before the clean restart
	// are still good.
	body := c.jws(orderURL, saved, []byte{})
	r := c.postBody(orderURL, body, "application/jose+json")
	if r.status != http.StatusOK || r.json(t)["status"] != "pending" {
		t.Fatalf("after restart: HTTP %d %s", r.status, r.body)
	}
	c.postBody(orderURL, body, "application/jose+json").wantProblem(t, http.StatusBadRequest, "badNonce")
}

// setHeader adds one header to every request.
type setHeader struct {
	rt          http.RoundTripper
	name, value string
}

func (s setHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(s.name, s.value)
	return s.rt.RoundTrip(r)
}

// TestFinalizeRequestIDCleaned: a client's X-Request-Id reaches the job
// (and so the worker's and the recorder's log lines) only when it is
// plain; anything else is replaced, and finalize still works.
func TestFinalizeRequestIDCleaned(t *testing.T) {
	logs := &syncBuffer{}
	e := newEnvServer(t, func(c *server.Config) {
		c.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	for i, bad := range []string{"<svg/onload=alert(1)>", "two words", strings.Repeat("x", 100)} {
		c := e.client()
		c.HTTPClient.Transport = setHeader{c.HTTPClient.Transport, "X-Request-Id", bad}
		name := "rid" + strconv.Itoa(i) + ".example.com"
		o := order(t, c, xacme.DomainIDs(name), http01(answers))
		e.issue(t, c, o, name, name)
		if strings.Contains(logs.String(), bad) {
			t.Errorf("the raw request id %q reached the log", bad)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"job recorded"`) {
		t.Fatalf("no job was recorded:\n%s", logs)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A revocation whose certificate the CA's store cannot look up (here its
// database is closed; in the chaos run, a NATS node was lost under the
// shared store) is a server error the client retries, not 404 "this CA
// did not issue the certificate", which it takes as the final answer.
func TestRevokeWhileStoreFails(t *testing.T) {
	e := newEnv(t, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.client()
	o := order(t, c, xacme.DomainIDs("revoke-later.example.com"), http01(answers))
	cert, _ := e.issue(t, c, o, "", "revoke-later.example.com")
	acct, err := c.GetReg(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.srv.Core.CA.Store()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// By hand: x/crypto/acme retries a 500 until its context ends.
	rc := e.raw(t)
	rc.key, rc.kid = c.Key, acct.URI
	rc.post(rc.url("revokeCert"), map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(cert.Raw), "reason": 1}).
		wantProblem(t, http.StatusInternalServerError, "serverInternal")
}

// unavailableStore is the real ACME store whose order and authorization
// lookups fail while down is set, as a JetStream store's do during a
// leader election.
type unavailableStore struct {
	store.ACMEStore
	down atomic.Bool
}

var errUnavailable = errors.New("nats: timeout")

func (s *unavailableStore) Order(id string) (*store.ACMEOrder, error) {
	if s.down.Load() {
		return nil, errUnavailable
	}
	return s.ACMEStore.Order(id)
}

func (s *unavailableStore) Authz(id string) (*store.ACMEAuthz, error) {
	if s.down.Load() {
		return nil, errUnavailable
	}
	return s.ACMEStore.Authz(id)
}

// An order or authorization the store cannot look up is a server error
// the client retries, not 404 "no such order", which it takes as final
// (the chaos run lost an order so when a NATS node was killed); one that
// does not exist is still 404.
func TestOrderLookupWhileStoreFails(t *testing.T) {
	var st *unavailableStore
	e := newEnv(t, func(c *acme.Config) {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		bst, err := store.OpenACME(filepath.Join(c.DataDir, store.ACMEFile))
		if err != nil {
			t.Fatal(err)
		}
		st = &unavailableStore{ACMEStore: bst}
		c.Store = st
	})
	c := e.client()
	ctx := context.Background()
	o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("lookup.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	acct, err := c.GetReg(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	rc := e.raw(t)
	rc.key, rc.kid = c.Key, acct.URI
	rc.post(o.URI+"-missing", nil).wantProblem(t, http.StatusNotFound, "malformed")
	st.down.Store(true)
	rc.post(o.URI, nil).wantProblem(t, http.StatusInternalServerError, "serverInternal")
	rc.post(o.AuthzURLs[0], nil).wantProblem(t, http.StatusInternalServerError, "serverInternal")
	st.down.Store(false)
	if _, err := c.GetOrder(ctx, o.URI); err != nil {
		t.Fatalf("the order once the store is back: %v", err)
	}
}
