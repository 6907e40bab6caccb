package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

var b64 = base64.RawURLEncoding

// directory is the part of an ACME directory the load needs.
type directory struct {
	NewNonce   string `json:"newNonce"`
	NewAccount string `json:"newAccount"`
	NewOrder   string `json:"newOrder"`
}

// account is one ACME account: its key, URL and last nonce. It runs one
// flow at a time.
type account struct {
	hc    *http.Client
	dir   directory
	key   *ecdsa.PrivateKey
	jwk   string // JSON, for newAccount
	thumb string
	kid   string
	nonce string
	// csrKey is the subject key of every certificate this account orders.
	csrKey *ecdsa.PrivateKey
}

func newAccount(ctx context.Context, hc *http.Client, dir directory) (*account, error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, err
	}
	x, y := pub[1:33], pub[33:]
	jwk := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, b64.EncodeToString(x), b64.EncodeToString(y))
	sum := sha256.Sum256([]byte(jwk)) // members in lexicographic order: the RFC 7638 input
	var resp *response
	a := &account{hc: hc, dir: dir, key: key, jwk: jwk, thumb: b64.EncodeToString(sum[:]), csrKey: csrKey}
	resp, err = a.post(ctx, dir.NewAccount, []byte(`{"termsOfServiceAgreed":true,"contact":["mailto:load@example.com"]}`), http.StatusCreated, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("newAccount: %w", err)
	}
	a.kid = resp.location
	return a, nil
}

type response struct {
	status   int
	location string
	body     []byte
}

// errProblem is an ACME error answer.
type errProblem struct {
	status int
	body   string
}

func (e *errProblem) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// post sends a JWS (kid once the account exists, jwk before), with one
// retry on badNonce.
func (a *account) post(ctx context.Context, url string, payload []byte, want ...int) (*response, error) {
	for attempt := 0; ; attempt++ {
		if a.nonce == "" {
			if err := a.fetchNonce(ctx); err != nil {
				return nil, err
			}
		}
		body, err := a.sign(url, payload)
		if err != nil {
			return nil, err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/jose+json")
		resp, err := a.hc.Do(req)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		a.nonce = resp.Header.Get("Replay-Nonce")
		if err != nil {
			return nil, err
		}
		for _, w := range want {
			if resp.StatusCode == w {
				return &response{resp.StatusCode, resp.Header.Get("Location"), data}, nil
			}
		}
		if attempt == 0 && bytes.Contains(data, []byte("badNonce")) {
			continue
		}
		return nil, &errProblem{resp.StatusCode, string(data)}
	}
}

func (a *account) fetchNonce(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, a.dir.NewNonce, nil)
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if a.nonce = resp.Header.Get("Replay-Nonce"); a.nonce == "" {
		return errors.New("newNonce gave no nonce")
	}
	return nil
}

// sign makes a flattened ES256 JWS.
func (a *account) sign(url string, payload []byte) ([]byte, error) {
	var prot string
	if a.kid != "" {
		prot = fmt.Sprintf(`{"alg":"ES256","kid":%q,"nonce":%q,"url":%q}`, a.kid, a.nonce, url)
	} else {
		prot = fmt.Sprintf(`{"alg":"ES256","jwk":%s,"nonce":%q,"url":%q}`, a.jwk, a.nonce, url)
	}
	a.nonce = ""
	p64, pl64 := b64.EncodeToString([]byte(prot)), b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(p64 + "." + pl64))
	r, s, err := ecdsa.Sign(rand.Reader, a.key, digest[:])
	if err != nil {
		return nil, err
	}
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	return fmt.Appendf(nil, `{"protected":%q,"payload":%q,"signature":%q}`, p64, pl64, b64.EncodeToString(sig)), nil
}

type orderObj struct {
	Status         string   `json:"status"`
	Authorizations []string `json:"authorizations"`
	Finalize       string   `json:"finalize"`
	Certificate    string   `json:"certificate"`
}

type authzObj struct {
	Status     string `json:"status"`
	Challenges []struct {
		Type   string `json:"type"`
		URL    string `json:"url"`
		Token  string `json:"token"`
		Status string `json:"status"`
	} `json:"challenges"`
}

// timing is one flow's milestones.
type timing struct {
	start, finalize, valid, done time.Time
}

// flow runs newOrder → http-01 → finalize → download for one name.
func (a *account) flow(ctx context.Context, name string, tokens *sync.Map, poll time.Duration) (timing, error) {
	var tm timing
	tm.start = time.Now()
	resp, err := a.post(ctx, a.dir.NewOrder, fmt.Appendf(nil, `{"identifiers":[{"type":"dns","value":%q}]}`, name), http.StatusCreated)
	if err != nil {
		return tm, fmt.Errorf("newOrder: %w", err)
	}
	orderURL := resp.location
	var o orderObj
	if err := json.Unmarshal(resp.body, &o); err != nil || len(o.Authorizations) != 1 {
		return tm, fmt.Errorf("newOrder: unexpected order %s", resp.body)
	}
	var z authzObj
	if resp, err = a.post(ctx, o.Authorizations[0], nil, http.StatusOK); err != nil {
		return tm, fmt.Errorf("authz: %w", err)
	}
	json.Unmarshal(resp.body, &z)
	chURL := ""
	for _, c := range z.Challenges {
		if c.Type == "http-01" {
			tokens.Store(c.Token, c.Token+"."+a.thumb)
			defer tokens.Delete(c.Token)
			chURL = c.URL
		}
	}
	if chURL == "" {
		return tm, errors.New("no http-01 challenge")
	}
	if resp, err = a.post(ctx, chURL, []byte("{}"), http.StatusOK); err != nil {
		return tm, fmt.Errorf("challenge: %w", err)
	}
	var ch struct{ Status string }
	json.Unmarshal(resp.body, &ch)
	for ch.Status != "valid" {
		if ch.Status == "invalid" {
			return tm, fmt.Errorf("challenge invalid: %s", resp.body)
		}
		sleep(ctx, poll)
		if resp, err = a.post(ctx, o.Authorizations[0], nil, http.StatusOK); err != nil {
			return tm, fmt.Errorf("authz poll: %w", err)
		}
		json.Unmarshal(resp.body, &z)
		ch.Status = z.Status
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, crypto.Signer(a.csrKey))
	if err != nil {
		return tm, err
	}
	tm.finalize = time.Now()
	if resp, err = a.post(ctx, o.Finalize, fmt.Appendf(nil, `{"csr":%q}`, b64.EncodeToString(csr)), http.StatusOK); err != nil {
		return tm, fmt.Errorf("finalize: %w", err)
	}
	json.Unmarshal(resp.body, &o)
	for o.Status != "valid" {
		if o.Status == "invalid" {
			return tm, fmt.Errorf("order invalid: %s", resp.body)
		}
		sleep(ctx, poll)
		if resp, err = a.post(ctx, orderURL, nil, http.StatusOK); err != nil {
			return tm, fmt.Errorf("order poll: %w", err)
		}
		json.Unmarshal(resp.body, &o)
	}
	tm.valid = time.Now()
	if resp, err = a.post(ctx, o.Certificate, nil, http.StatusOK); err != nil {
		return tm, fmt.Errorf("certificate: %w", err)
	}
	if !strings.Contains(string(resp.body), "BEGIN CERTIFICATE") {
		return tm, errors.New("the certificate download holds no certificate")
	}
	tm.done = time.Now()
	return tm, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
