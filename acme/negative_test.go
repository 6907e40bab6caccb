package acme_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/store"
)

func (c *rawClient) thumbprint() string {
	c.t.Helper()
	k := jose.JSONWebKey{Key: c.key.Public()}
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		c.t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(t)
}

func dnsIDs(names ...string) []map[string]string {
	var out []map[string]string
	for _, n := range names {
		out = append(out, map[string]string{"type": "dns", "value": n})
	}
	return out
}

// newOrder creates an order and returns its URL and object.
func (c *rawClient) newOrder(names ...string) (string, map[string]any) {
	c.t.Helper()
	r := c.post(c.url("newOrder"), map[string]any{"identifiers": dnsIDs(names...)})
	if r.status != http.StatusCreated {
		c.t.Fatalf("newOrder: HTTP %d %s", r.status, r.body)
	}
	return r.header.Get("Location"), r.json(c.t)
}

// solveHTTP01 answers (or, with wrong, mis-answers) every authorization
// of an order over http-01 and returns the last challenge object.
func (c *rawClient) solveHTTP01(o map[string]any, answers *sync.Map, wrong bool) map[string]any {
	c.t.Helper()
	var last map[string]any
	for _, u := range o["authorizations"].([]any) {
		z := c.post(u.(string), nil).json(c.t)
		for _, ch := range z["challenges"].([]any) {
			ch := ch.(map[string]any)
			if ch["type"] != "http-01" {
				continue
			}
			token := ch["token"].(string)
			ka := token + "." + c.thumbprint()
			if wrong {
				ka = token + ".not-the-thumbprint"
			}
			answers.Store(token, ka)
			last = c.post(ch["url"].(string), map[string]any{}).json(c.t)
		}
	}
	return last
}

func (e *env) jobExists(t *testing.T, orderID string) bool {
	t.Helper()
	_, err := e.srv.Core.Enroll.Job(enroll.JobID(enroll.QueueName(e.srv.Core.CA), "acme-order/"+orderID))
	return err == nil
}

func (e *env) certCount(t *testing.T) int {
	t.Helper()
	st, err := e.srv.Core.CA.Store()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := st.List(store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

func lastPart(u string) string { return u[strings.LastIndex(u, "/")+1:] }

func TestNegative(t *testing.T) {
	e := newEnv(t, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.raw(t)
	c.register()
	certsBefore := e.certCount(t)

	t.Run("replayed nonce", func(t *testing.T) {
		url := c.url("newOrder")
		body := c.jws(url, c.nonce(), encode(t, map[string]any{"identifiers": dnsIDs("replay.example.com")}))
		if r := c.postBody(url, body, "application/jose+json"); r.status != http.StatusCreated {
			t.Fatalf("first use: HTTP %d %s", r.status, r.body)
		}
		before := len(c.post(c.kid+"/orders", nil).json(t)["orders"].([]any))
		r := c.postBody(url, body, "application/jose+json")
		r.wantProblem(t, http.StatusBadRequest, "badNonce")
		if after := len(c.post(c.kid+"/orders", nil).json(t)["orders"].([]any)); after != before {
			t.Fatalf("the replay made an order: %d orders, had %d", after, before)
		}
		// A made-up nonce is no better.
		c.postBody(url, c.jws(url, "bm90LWEtbm9uY2U", encode(t, map[string]any{"identifiers": dnsIDs("x.example.com")})), "application/jose+json").
			wantProblem(t, http.StatusBadRequest, "badNonce")
	})

	t.Run("wrong url", func(t *testing.T) {
		body := c.jws(c.url("newAccount"), c.nonce(), encode(t, map[string]any{"identifiers": dnsIDs("url.example.com")}))
		c.postBody(c.url("newOrder"), body, "application/jose+json").wantProblem(t, http.StatusForbidden, "unauthorized")
	})

	t.Run("signed by another key", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		before := len(c.post(c.kid+"/orders", nil).json(t)["orders"].([]any))
		url := c.url("newOrder")
		body := signJWS(t, other, jose.ES256, c.kid, url, c.nonce(), encode(t, map[string]any{"identifiers": dnsIDs("thief.example.com")}))
		c.postBody(url, body, "application/jose+json").wantProblem(t, http.StatusBadRequest, "malformed")
		if after := len(c.post(c.kid+"/orders", nil).json(t)["orders"].([]any)); after != before {
			t.Fatal("an order was made by a forged request")
		}
	})

	t.Run("finalize with other names", func(t *testing.T) {
		orderURL, o := c.newOrder("good.example.com")
		c.solveHTTP01(o, answers, false)
		if o = c.post(orderURL, nil).json(t); o["status"] != "ready" {
			t.Fatalf("order is %v, want ready", o["status"])
		}
		for _, names := range [][]string{{"evil.example.com"}, {"good.example.com", "evil.example.com"}} {
			csr, _ := csrFor(t, "", names...)
			r := c.post(o["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)})
			r.wantProblem(t, http.StatusBadRequest, "badCSR")
		}
		// A CSR signed with the account key is refused too.
		csr := csrForKey(t, c.key, "", "good.example.com")
		c.post(o["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}).wantProblem(t, http.StatusBadRequest, "badCSR")
		if o = c.post(orderURL, nil).json(t); o["status"] != "ready" {
			t.Fatalf("after refused finalizes the order is %v, want ready", o["status"])
		}
		if e.jobExists(t, lastPart(orderURL)) {
			t.Fatal("a refused finalize left a signing job")
		}
		// The right CSR still works.
		csr, _ = csrFor(t, "", "good.example.com")
		o = c.post(o["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}).json(t)
		if o["status"] != "valid" {
			t.Fatalf("finalize: order %v", o)
		}
	})

	t.Run("failing challenge", func(t *testing.T) {
		orderURL, o := c.newOrder("fail.example.com")
		ch := c.solveHTTP01(o, answers, true)
		deadline := time.Now().Add(10 * time.Second)
		for ch["status"] == "processing" && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			ch = c.post(ch["url"].(string), nil).json(t)
		}
		if ch["status"] != "invalid" {
			t.Fatalf("challenge is %v, want invalid", ch)
		}
		if errType := ch["error"].(map[string]any)["type"]; errType != "urn:ietf:params:acme:error:incorrectResponse" {
			t.Fatalf("challenge error %v, want incorrectResponse", errType)
		}
		o = c.post(orderURL, nil).json(t)
		if o["status"] != "invalid" || o["error"] == nil {
			t.Fatalf("order %v, want invalid with an error", o)
		}
		z := c.post(o["authorizations"].([]any)[0].(string), nil).json(t)
		if z["status"] != "invalid" {
			t.Fatalf("authorization is %v, want invalid", z["status"])
		}
		csr, _ := csrFor(t, "", "fail.example.com")
		c.post(o["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}).
			wantProblem(t, http.StatusForbidden, "orderNotReady")
		if e.jobExists(t, lastPart(orderURL)) {
			t.Fatal("an invalid order reached the signing queue")
		}
	})

	t.Run("oversized body", func(t *testing.T) {
		big := bytes.Repeat([]byte("a"), 600<<10)
		payload := append(append([]byte(`{"identifiers":[{"type":"dns","value":"big.example.com"}],"x":"`), big...), '"', '}')
		r := c.postBody(c.url("newOrder"), c.jws(c.url("newOrder"), c.nonce(), payload), "application/jose+json")
		r.wantProblem(t, http.StatusRequestEntityTooLarge, "malformed")
	})

	t.Run("wrong content type", func(t *testing.T) {
		r := c.postBody(c.url("newOrder"), c.jws(c.url("newOrder"), c.nonce(), []byte(`{}`)), "application/json")
		r.wantProblem(t, http.StatusUnsupportedMediaType, "malformed")
	})

	t.Run("unknown account", func(t *testing.T) {
		url := c.url("newOrder")
		body := signJWS(t, c.key, jose.ES256, strings.TrimSuffix(c.kid, lastPart(c.kid))+"nosuchaccount", url, c.nonce(), []byte(`{}`))
		c.postBody(url, body, "application/jose+json").wantProblem(t, http.StatusBadRequest, "accountDoesNotExist")
	})

	t.Run("unsupported algorithm", func(t *testing.T) {
		url := c.url("newOrder")
		body := signJWS(t, bytes.Repeat([]byte("k"), 32), jose.HS256, c.kid, url, c.nonce(), []byte(`{}`))
		p := c.postBody(url, body, "application/jose+json").wantProblem(t, http.StatusBadRequest, "badSignatureAlgorithm")
		if p["algorithms"] == nil {
			t.Error("badSignatureAlgorithm without the algorithms list")
		}
	})

	t.Run("identifiers", func(t *testing.T) {
		r := c.post(c.url("newOrder"), map[string]any{"identifiers": []map[string]string{
			{"type": "dns", "value": "ok.example.com"}, {"type": "dns", "value": "under_score.example.com"},
			{"type": "email", "value": "a@example.com"}}})
		p := r.wantProblem(t, http.StatusBadRequest, "compound")
		subs := p["subproblems"].([]any)
		if len(subs) != 2 {
			t.Fatalf("subproblems %v, want one per refused identifier", subs)
		}
		want := map[string]string{"under_score.example.com": "malformed", "a@example.com": "unsupportedIdentifier"}
		for _, s := range subs {
			s := s.(map[string]any)
			v := s["identifier"].(map[string]any)["value"].(string)
			if s["type"] != "urn:ietf:params:acme:error:"+want[v] {
				t.Errorf("subproblem for %s: %v, want %s", v, s["type"], want[v])
			}
		}
		// A wildcard cannot be validated but by dns-01.
		_, o := c.newOrder("*.wild.example.com")
		z := c.post(o["authorizations"].([]any)[0].(string), nil).json(t)
		if chs := z["challenges"].([]any); len(chs) != 1 || chs[0].(map[string]any)["type"] != "dns-01" || z["wildcard"] != true {
			t.Fatalf("wildcard authorization %v", z)
		}
		c.post(c.url("newOrder"), map[string]any{"identifiers": dnsIDs("a.example.com"), "profile": "no/such"}).
			wantProblem(t, http.StatusBadRequest, "invalidProfile")
		c.post(c.url("newOrder"), map[string]any{"identifiers": dnsIDs("a.example.com"), "notBefore": time.Now().Add(time.Hour).Format(time.RFC3339)}).
			wantProblem(t, http.StatusBadRequest, "malformed")
		c.post(c.url("newOrder"), map[string]any{"identifiers": dnsIDs("a.example.com"), "notAfter": time.Now().Add(3 * 365 * 24 * time.Hour).Format(time.RFC3339)}).
			wantProblem(t, http.StatusBadRequest, "malformed")
	})

	if n := e.certCount(t); n != certsBefore+1 {
		t.Fatalf("%d certificates issued, want exactly the one good finalize", n-certsBefore)
	}
}
