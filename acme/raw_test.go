package acme_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// rawClient builds JWS requests by hand, to send what a correct client
// never would.
type rawClient struct {
	t    *testing.T
	e    *env
	key  crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string // account URL once registered
	dir  map[string]any
	http *http.Client
}

func (e *env) raw(t *testing.T) *rawClient {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := &rawClient{t: t, e: e, key: key, alg: jose.ES256, http: e.httpClient()}
	resp, err := c.http.Get(e.dirURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&c.dir); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *rawClient) url(name string) string { return c.dir[name].(string) }

func (c *rawClient) nonce() string {
	c.t.Helper()
	resp, err := c.http.Head(c.url("newNonce"))
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if n == "" {
		c.t.Fatal("newNonce gave no Replay-Nonce")
	}
	return n
}

// jws signs payload for url with the client's key: by kid once the
// client has an account, else with an embedded jwk.
func (c *rawClient) jws(url, nonce string, payload []byte) []byte {
	c.t.Helper()
	return signJWS(c.t, c.key, c.alg, c.kid, url, nonce, payload)
}

func signJWS(t *testing.T, key any, alg jose.SignatureAlgorithm, kid, url, nonce string, payload []byte) []byte {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("url", url)
	if nonce != "" {
		opts = opts.WithHeader("nonce", nonce)
	}
	sk := jose.SigningKey{Algorithm: alg, Key: key}
	if kid != "" {
		sk.Key = jose.JSONWebKey{Key: key, KeyID: kid}
	} else {
		opts.EmbedJWK = true
	}
	s, err := jose.NewSigner(sk, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(obj.FullSerialize())
}

// response is an HTTP answer, read.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) problem(t *testing.T) map[string]any {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("HTTP %d with Content-Type %q, want application/problem+json: %s", r.status, ct, r.body)
	}
	var p map[string]any
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantProblem checks the status and ACME error type of an answer.
func (r response) wantProblem(t *testing.T, status int, typ string) map[string]any {
	t.Helper()
	p := r.problem(t)
	if r.status != status || p["type"] != "urn:ietf:params:acme:error:"+typ {
		t.Fatalf("got HTTP %d %v, want %d %s", r.status, p, status, typ)
	}
	if r.header.Get("Replay-Nonce") == "" {
		t.Error("the problem answer has no Replay-Nonce")
	}
	return p
}

func (c *rawClient) postBody(url string, body []byte, contentType string) response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func (c *rawClient) post(url string, payload any) response {
	c.t.Helper()
	return c.postBody(url, c.jws(url, c.nonce(), encode(c.t, payload)), "application/jose+json")
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	switch v := v.(type) {
	case nil:
		return []byte{} // POST-as-GET: an empty payload
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// register creates the client's account.
func (c *rawClient) register() {
	c.t.Helper()
	r := c.post(c.url("newAccount"), map[string]any{"termsOfServiceAgreed": true, "contact": []string{"mailto:raw@example.com"}})
	if r.status != http.StatusCreated {
		c.t.Fatalf("newAccount: HTTP %d %s", r.status, r.body)
	}
	c.kid = r.header.Get("Location")
	if !strings.Contains(c.kid, "/acme/acct/") {
		c.t.Fatalf("account URL %q", c.kid)
	}
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("HTTP %d: %v: %s", r.status, err, r.body)
	}
	return m
}
