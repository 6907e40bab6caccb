package acme_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/qpki/qpki/acme"
)

// TestNonceAndResources: newNonce answers HEAD with 200 and GET with 204
// (RFC 8555 §7.2), uncached; unknown resources and wrong methods are
// problem documents too.
func TestNonceAndResources(t *testing.T) {
	e := newEnv(t, nil)
	c := e.raw(t)
	seen := map[string]bool{}
	for _, m := range []struct {
		method string
		status int
	}{{http.MethodHead, http.StatusOK}, {http.MethodGet, http.StatusNoContent}, {http.MethodHead, http.StatusOK}} {
		req, _ := http.NewRequest(m.method, c.url("newNonce"), nil)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		n := resp.Header.Get("Replay-Nonce")
		if resp.StatusCode != m.status || n == "" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s newNonce: HTTP %d, nonce %q, Cache-Control %q", m.method, resp.StatusCode, n, resp.Header.Get("Cache-Control"))
		}
		if seen[n] {
			t.Fatalf("nonce %q issued twice", n)
		}
		seen[n] = true
		if !strings.Contains(resp.Header.Get("Link"), `rel="index"`) {
			t.Errorf("newNonce without the index link: %q", resp.Header.Get("Link"))
		}
	}
	get := func(method, url string) response {
		req, _ := http.NewRequest(method, url, nil)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return response{resp.StatusCode, resp.Header, nil}
	}
	if r := get(http.MethodGet, c.url("newOrder")); r.status != http.StatusMethodNotAllowed || r.header.Get("Content-Type") != "application/problem+json" ||
		r.header.Get("Allow") != "POST" {
		t.Fatalf("GET newOrder: HTTP %d %v", r.status, r.header)
	}
	base := strings.TrimSuffix(e.dirURL, "directory")
	c.post(base+"nothing-here", nil).wantProblem(t, http.StatusNotFound, "malformed")
}

// TestJWSRules: the protected header's kid/jwk, nonce and url rules of
// RFC 8555 §6.2-6.5, and POST-as-GET.
func TestJWSRules(t *testing.T) {
	e := newEnv(t, nil)
	c := e.raw(t)
	c.register()
	orderURL, _ := c.newOrder("jws.example.com")
	newOrder := c.url("newOrder")
	payload := encode(t, map[string]any{"identifiers": dnsIDs("jws2.example.com")})

	// A jwk where the account's kid is required, and a kid on newAccount.
	signJWSPost := func(kid, url, nonce string, payload []byte) response {
		return c.postBody(url, signJWS(t, c.key, c.alg, kid, url, nonce, payload), "application/jose+json")
	}
	signJWSPost("", newOrder, c.nonce(), payload).wantProblem(t, http.StatusBadRequest, "malformed")
	signJWSPost(c.kid, c.url("newAccount"), c.nonce(), []byte(`{"termsOfServiceAgreed":true}`)).wantProblem(t, http.StatusBadRequest, "malformed")
	// Both jwk and kid (go-jose would not build that header).
	key := c.key.(*ecdsa.PrivateKey)
	c.postBody(newOrder, handJWS(t, key, map[string]any{"alg": "ES256", "kid": c.kid, "jwk": jwkOf(t, &key.PublicKey),
		"nonce": c.nonce(), "url": newOrder}, payload), "application/jose+json").wantProblem(t, http.StatusBadRequest, "malformed")
	// No nonce, no url, a kid of another server.
	signJWSPost(c.kid, newOrder, "", payload).wantProblem(t, http.StatusBadRequest, "badNonce")
	c.postBody(newOrder, handJWS(t, key, map[string]any{"alg": "ES256", "kid": c.kid, "nonce": c.nonce()}, payload),
		"application/jose+json").wantProblem(t, http.StatusBadRequest, "malformed")
	signJWSPost("https://elsewhere.test/acme/acct/x", newOrder, c.nonce(), payload).wantProblem(t, http.StatusBadRequest, "malformed")
	// A compact JWS is not the flattened JSON serialization.
	c.postBody(newOrder, []byte("a.b.c"), "application/jose+json").wantProblem(t, http.StatusBadRequest, "malformed")
	// An order is read with an empty payload, not "{}".
	c.post(orderURL, map[string]any{}).wantProblem(t, http.StatusBadRequest, "malformed")
	// Another account cannot read the order.
	other := e.raw(t)
	other.register()
	other.post(orderURL, nil).wantProblem(t, http.StatusNotFound, "malformed")
	other.post(c.kid, nil).wantProblem(t, http.StatusForbidden, "unauthorized")
	// After all these refusals the account has its one order.
	if orders := c.post(c.kid+"/orders", nil).json(t)["orders"].([]any); len(orders) != 1 {
		t.Fatalf("orders %v, want one", orders)
	}
}

// handJWS signs an ES256 flattened JWS over a protected header given as a
// map, to send headers go-jose would not build.
func handJWS(t *testing.T, key *ecdsa.PrivateKey, hdr map[string]any, payload []byte) []byte {
	t.Helper()
	prot := base64.RawURLEncoding.EncodeToString(encode(t, hdr))
	pl := base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(prot + "." + pl))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	return fmt.Appendf(nil, `{"protected":%q,"payload":%q,"signature":%q}`, prot, pl, base64.RawURLEncoding.EncodeToString(sig))
}

func jwkOf(t *testing.T, pub any) json.RawMessage {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: pub}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFinalizeProcessing: while the signing job is queued the order is
// processing with a Retry-After, and valid with its certificate once
// the job is recorded; the certificate downloads as a PEM chain.
func TestFinalizeProcessing(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.FinalizeWait = time.Nanosecond })
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.raw(t)
	c.register()
	certsBefore := e.certCount(t)
	orderURL, o := c.newOrder("processing.example.com")
	c.solveHTTP01(o, answers, false)
	if o = c.post(orderURL, nil).json(t); o["status"] != "ready" {
		t.Fatalf("order is %v, want ready", o["status"])
	}
	csr, _ := csrFor(t, "", "processing.example.com")
	finalize := map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}
	r := c.post(o["finalize"].(string), finalize)
	o = r.json(t)
	if r.status != http.StatusOK {
		t.Fatalf("finalize: HTTP %d %s", r.status, r.body)
	}
	switch o["status"] {
	case "processing":
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Fatalf("processing order without Retry-After: %q", r.header.Get("Retry-After"))
		}
		if o["certificate"] != nil {
			t.Fatalf("processing order with a certificate: %v", o)
		}
	case "valid":
		t.Log("the certificate was signed within a nanosecond's wait")
	default:
		t.Fatalf("finalize: order %v", o)
	}
	// Finalizing again, even with the same CSR, is refused: the order is
	// no longer ready.
	c.post(o["finalize"].(string), finalize).wantProblem(t, http.StatusForbidden, "orderNotReady")
	deadline := time.Now().Add(10 * time.Second)
	for o["status"] == "processing" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		o = c.post(orderURL, nil).json(t)
	}
	if o["status"] != "valid" || o["certificate"] == nil {
		t.Fatalf("order %v, want valid with a certificate", o)
	}
	r = c.post(o["certificate"].(string), nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/pem-certificate-chain" {
		t.Fatalf("certificate: HTTP %d %s", r.status, r.header.Get("Content-Type"))
	}
	var ders [][]byte
	for rest := r.body; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		ders = append(ders, b.Bytes)
	}
	e.verifyChain(t, ders, []string{"processing.example.com"})
	// Another account cannot download it.
	other := e.raw(t)
	other.register()
	other.post(o["certificate"].(string), nil).wantProblem(t, http.StatusNotFound, "malformed")
	if n := e.certCount(t); n != certsBefore+1 {
		t.Fatalf("%d certificates issued, want 1", n-certsBefore)
	}
}

// TestFinalizeKeyPolicy: a CSR whose key the profile refuses is badCSR,
// and leaves no signing job behind.
func TestFinalizeKeyPolicy(t *testing.T) {
	e := newEnv(t, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.raw(t)
	c.register()
	certsBefore := e.certCount(t)
	orderURL, o := c.newOrder("policy.example.com")
	c.solveHTTP01(o, answers, false)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, key := range []any{rsaKey, edKey} {
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"policy.example.com"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		p := c.post(o["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}).
			wantProblem(t, http.StatusBadRequest, "badCSR")
		if !strings.Contains(p["detail"].(string), "profile") {
			t.Errorf("badCSR detail %q does not name the profile's refusal", p["detail"])
		}
	}
	// A CSR whose signature does not verify.
	csr, _ := csrFor(t, "", "policy.example.com")
	csr[len(csr)-3] ^= 0xff
	c.post(o["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}).wantProblem(t, http.StatusBadRequest, "badCSR")
	c.post(o["finalize"].(string), map[string]string{"csr": "not base64!"}).wantProblem(t, http.StatusBadRequest, "badCSR")
	if e.jobExists(t, lastPart(orderURL)) {
		t.Fatal("a refused CSR left a signing job")
	}
	if o = c.post(orderURL, nil).json(t); o["status"] != "ready" {
		t.Fatalf("order is %v, want still ready", o["status"])
	}
	if n := e.certCount(t); n != certsBefore {
		t.Fatalf("%d certificates issued", n-certsBefore)
	}
}

// TestRevokeByAuthorizations: an account that did not order a
// certificate may revoke it once it holds valid authorizations for all
// its names (RFC 8555 §7.6); the reason is recorded.
func TestRevokeByAuthorizations(t *testing.T) {
	e := newEnv(t, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	owner := e.raw(t)
	owner.register()
	names := []string{"a.revoke.example.com", "b.revoke.example.com"}
	orderURL, o := owner.newOrder(names...)
	owner.solveHTTP01(o, answers, false)
	csr, _ := csrFor(t, "", names...)
	o = owner.post(o["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}).json(t)
	for o["status"] == "processing" {
		time.Sleep(10 * time.Millisecond)
		o = owner.post(orderURL, nil).json(t)
	}
	b, _ := pem.Decode(owner.post(o["certificate"].(string), nil).body)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	revoke := map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(cert.Raw), "reason": 5}

	other := e.raw(t)
	other.register()
	// One name is not enough.
	_, o1 := other.newOrder(names[0])
	other.solveHTTP01(o1, answers, false)
	other.post(other.url("revokeCert"), revoke).wantProblem(t, http.StatusForbidden, "unauthorized")
	if e.record(t, cert).Revocation != nil {
		t.Fatal("revoked with authorizations for one of two names")
	}
	_, o2 := other.newOrder(names[1])
	other.solveHTTP01(o2, answers, false)
	if r := other.post(other.url("revokeCert"), revoke); r.status != http.StatusOK {
		t.Fatalf("revocation by an authorized account: HTTP %d %s", r.status, r.body)
	}
	if rec := e.record(t, cert); rec.Revocation == nil || rec.Revocation.Reason != 5 {
		t.Fatalf("revocation %+v, want cessationOfOperation (5)", rec.Revocation)
	}
	owner.post(owner.url("revokeCert"), revoke).wantProblem(t, http.StatusBadRequest, "alreadyRevoked")
	// A certificate this CA did not issue: its root's.
	root := readLeaf(t, e.rootFile)
	owner.post(owner.url("revokeCert"), map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(root.Raw)}).
		wantProblem(t, http.StatusNotFound, "malformed")
}

// TestAccountOrders: the orders list holds the account's live orders,
// not its invalid ones, 100 a page with a Link rel="next".
func TestAccountOrders(t *testing.T) {
	// 105 orders of new names: above the default pending limit.
	e := newEnv(t, func(c *acme.Config) { c.MaxPendingAuthzs = 200 })
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.raw(t)
	c.register()
	failed, fo := c.newOrder("failed.orders.example.com")
	ch := c.solveHTTP01(fo, answers, true)
	for ch["status"] == "processing" || ch["status"] == "pending" {
		time.Sleep(10 * time.Millisecond)
		ch = c.post(ch["url"].(string), nil).json(t)
	}
	want := map[string]bool{}
	for i := 0; i < 104; i++ {
		u, _ := c.newOrder(fmt.Sprintf("o%d.orders.example.com", i))
		want[u] = true
	}
	page := c.kid + "/orders"
	got := map[string]bool{}
	pages := 0
	for page != "" {
		r := c.post(page, nil)
		pages++
		for _, u := range r.json(t)["orders"].([]any) {
			if got[u.(string)] {
				t.Fatalf("order %s listed twice", u)
			}
			got[u.(string)] = true
		}
		page = ""
		for _, l := range r.header.Values("Link") {
			if strings.Contains(l, `rel="next"`) {
				page = l[strings.Index(l, "<")+1 : strings.Index(l, ">")]
			}
		}
	}
	if pages != 2 || len(got) != len(want) {
		t.Fatalf("%d orders on %d pages, want %d on 2", len(got), pages, len(want))
	}
	if got[failed] {
		t.Fatal("the invalid order is listed")
	}
	for u := range want {
		if !got[u] {
			t.Fatalf("order %s not listed", u)
		}
	}
}

// TestPendingExpiry: pending orders and authorizations expire; an
// expired order is invalid and cannot be finalized.
func TestPendingExpiry(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) {
		c.OrderLifetime, c.PendingAuthzLifetime = 2*time.Second, 2*time.Second
	})
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.raw(t)
	c.register()
	orderURL, o := c.newOrder("expire.example.com")
	exp, err := time.Parse(time.RFC3339, o["expires"].(string))
	if err != nil || time.Until(exp) > 2*time.Second {
		t.Fatalf("order expires %v (%v), want within 2s", o["expires"], err)
	}
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	o = c.post(orderURL, nil).json(t)
	if o["status"] != "invalid" || o["error"] == nil {
		t.Fatalf("expired order %v, want invalid with an error", o)
	}
	z := c.post(o["authorizations"].([]any)[0].(string), nil).json(t)
	if z["status"] != "expired" {
		t.Fatalf("authorization is %v, want expired", z["status"])
	}
	// Answering its challenge now changes nothing.
	ch := c.solveHTTP01(o, answers, false)
	if ch["status"] != "pending" {
		t.Fatalf("challenge of an expired authorization is %v", ch["status"])
	}
	csr, _ := csrFor(t, "", "expire.example.com")
	c.post(o["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}).
		wantProblem(t, http.StatusForbidden, "orderNotReady")
	// A new order for the name gets a new authorization.
	_, o2 := c.newOrder("expire.example.com")
	if o2["authorizations"].([]any)[0] == o["authorizations"].([]any)[0] {
		t.Fatal("a new order reused the expired authorization")
	}
	if e.jobExists(t, lastPart(orderURL)) {
		t.Fatal("an expired order reached the signing queue")
	}
}
