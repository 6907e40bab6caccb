// Package wfe is the ACME front-end's web layer (RFC 8555): routes,
// request authentication with JWS (§6.2-6.5), nonces, rate limits, and
// the JSON of ACME objects. Decisions are the RA's.
package wfe

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/qpki/qpki/acme/nonce"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/acme/ra"
	"github.com/qpki/qpki/acme/ratelimit"
	"github.com/qpki/qpki/pkg/store"
)

// Paths of the ACME resources, under the HTTPS listener.
const (
	DirectoryPath   = "/acme/directory"
	newNoncePath    = "/acme/new-nonce"
	newAccountPath  = "/acme/new-account"
	newOrderPath    = "/acme/new-order"
	revokeCertPath  = "/acme/revoke-cert"
	keyChangePath   = "/acme/key-change"
	renewalInfoPath = "/acme/renewal-info/"
	accountPath     = "/acme/acct/"
	orderPath       = "/acme/order/"
	authzPath       = "/acme/authz/"
	challengePath   = "/acme/chall/"
	certPath        = "/acme/cert/"
)

// Media types.
const (
	mediaJOSE    = "application/jose+json"
	mediaProblem = "application/problem+json"
	mediaJSON    = "application/json"
	mediaPEM     = "application/pem-certificate-chain"
)

// DefaultMaxBody bounds a request: enough for the largest CSR qpki parses
// (an SLH-DSA signature of about 50 KiB), base64url twice.
const DefaultMaxBody = 512 << 10

// Config is the WFE's part of the ACME configuration.
type Config struct {
	TermsOfService string
	Website        string
	CAAIdentities  []string
	// EABRequired refuses accounts without an external account binding
	// (whose keys are in the ACME store).
	EABRequired bool
	// ExternalURL is the base URL clients use ("https://acme.example.com");
	// empty takes https:// and the request's Host.
	ExternalURL string
	MaxBody     int64
	// IPLimit applies to every request of a client address, OrderLimit
	// to the new orders of an account; Exempt lists who escapes both.
	IPLimit    ratelimit.Limit
	OrderLimit ratelimit.Limit
	Exempt     *ratelimit.Exempt
	Log        *slog.Logger
}

// WFE serves the ACME resources.
type WFE struct {
	cfg    Config
	ra     *ra.RA
	st     store.ACMEStore
	nonces nonce.Source
	ipLim  *ratelimit.Limiter
	ordLim *ratelimit.Limiter
	now    func() time.Time
	acctMu sync.Mutex
	accts  map[string]*cachedAccount
	gate   *gate
}

// cachedAccount saves decoding the account and its JWK on every request.
// Entries live accountCacheTTL: front-ends sharing a store see each
// other's key changes and deactivations that soon.
type cachedAccount struct {
	acct    *store.ACMEAccount
	key     *jose.JSONWebKey
	expires time.Time
}

const accountCacheTTL = 5 * time.Second

// New returns a WFE.
func New(cfg Config, r *ra.RA, st store.ACMEStore, n nonce.Source) *WFE {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &WFE{cfg: cfg, ra: r, st: st, nonces: n, ipLim: ratelimit.New(cfg.IPLimit), ordLim: ratelimit.New(cfg.OrderLimit),
		now: time.Now, accts: map[string]*cachedAccount{}, gate: newGate()}
}

// Register adds the ACME routes to mux.
func (w *WFE) Register(mux *http.ServeMux) {
	mux.HandleFunc(DirectoryPath, w.handle(w.directory, http.MethodGet, http.MethodHead))
	mux.HandleFunc(newNoncePath, w.handle(w.newNonce, http.MethodGet, http.MethodHead))
	mux.HandleFunc(newAccountPath, w.handle(w.newAccount, http.MethodPost))
	mux.HandleFunc(newOrderPath, w.handle(w.newOrder, http.MethodPost))
	mux.HandleFunc(revokeCertPath, w.handle(w.revokeCert, http.MethodPost))
	mux.HandleFunc(keyChangePath, w.handle(w.keyChange, http.MethodPost))
	mux.HandleFunc(renewalInfoPath+"{certid}", w.handle(w.renewalInfo, http.MethodGet))
	mux.HandleFunc(accountPath+"{id}", w.handle(w.account, http.MethodPost))
	mux.HandleFunc(accountPath+"{id}/orders", w.handle(w.accountOrders, http.MethodPost))
	mux.HandleFunc(orderPath+"{id}", w.handle(w.order, http.MethodPost))
	mux.HandleFunc(orderPath+"{id}/finalize", w.handle(w.finalize, http.MethodPost))
	mux.HandleFunc(authzPath+"{id}", w.handle(w.authz, http.MethodPost))
	mux.HandleFunc(challengePath+"{authz}/{chal}", w.handle(w.challenge, http.MethodPost))
	mux.HandleFunc(certPath+"{serial}", w.handle(w.certificate, http.MethodPost))
	mux.HandleFunc(certPath+"{serial}/{alt}", w.handle(w.certificate, http.MethodPost))
	mux.HandleFunc("/acme/", w.handle(func(*request) *probs.Problem {
		return probs.NotFound("no such ACME resource")
	}))
}

// request is one HTTP request being served.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	base string // https://host
}

func (q *request) url(path string) string { return q.base + path }

// handle wraps an endpoint: method check, per-IP rate limit, the index
// link and a fresh nonce on every answer, problems as
// application/problem+json.
func (w *WFE) handle(fn func(*request) *probs.Problem, methods ...string) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		q := &request{w: rw, r: r, base: w.baseURL(r)}
		h := rw.Header()
		h.Set("Cache-Control", "no-store")
		if !w.gate.enter() {
			h.Set("Connection", "close")
			h.Set("Retry-After", "1")
			w.problem(q, probs.New(probs.TypeServerInternal, http.StatusServiceUnavailable, "the server is shutting down"))
			return
		}
		defer w.gate.leave()
		if r.URL.Path != DirectoryPath {
			h.Add("Link", link(q.url(DirectoryPath), "index"))
		}
		if r.Method == http.MethodPost || r.URL.Path == newNoncePath {
			h.Set("Replay-Nonce", w.nonces.Nonce())
		}
		if len(methods) > 0 && !contains(methods, r.Method) {
			h.Set("Allow", strings.Join(methods, ", "))
			w.problem(q, probs.New(probs.TypeMalformed, http.StatusMethodNotAllowed, "method %s not allowed (use %s)", r.Method, strings.Join(methods, " or ")))
			return
		}
		if ip, ok := clientIP(r); ok && !w.cfg.Exempt.IP(ip) {
			key := ratelimit.IPKey(ip) // an IPv6 client's /64
			if ok, wait := w.ipLim.Allow(key, w.now()); !ok {
				w.problem(q, w.rateLimited(q, wait, "too many requests from %s", key))
				return
			}
		}
		if p := fn(q); p != nil {
			w.problem(q, p)
		}
	}
}

func (w *WFE) baseURL(r *http.Request) string {
	if w.cfg.ExternalURL != "" {
		return strings.TrimSuffix(w.cfg.ExternalURL, "/")
	}
	return "https://" + r.Host
}

func clientIP(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// exempt reports whether a request escapes the rate limits: its address
// or its account is on the exempt list.
func (w *WFE) exempt(q *request, acct *store.ACMEAccount) bool {
	if ip, ok := clientIP(q.r); ok && w.cfg.Exempt.IP(ip) {
		return true
	}
	return acct != nil && w.cfg.Exempt.Account(acct.ID)
}

func (w *WFE) rateLimited(q *request, wait time.Duration, format string, args ...any) *probs.Problem {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	q.w.Header().Set("Retry-After", strconv.Itoa(secs))
	return probs.RateLimited(format, args...)
}

func (w *WFE) problem(q *request, p *probs.Problem) {
	if p.Status == 0 {
		p.Status = http.StatusBadRequest
	}
	if p.Status >= 500 {
		w.cfg.Log.Error("acme", "path", q.r.URL.Path, "problem", p.Error())
	}
	q.w.Header().Set("Content-Type", mediaProblem)
	q.w.WriteHeader(p.Status)
	json.NewEncoder(q.w).Encode(p)
}

// reply writes a JSON object.
func reply(q *request, status int, v any) *probs.Problem {
	body, err := json.Marshal(v)
	if err != nil {
		return probs.ServerInternal("encoding the response: %v", err)
	}
	q.w.Header().Set("Content-Type", mediaJSON)
	q.w.WriteHeader(status)
	q.w.Write(body)
	return nil
}

func link(url, rel string) string { return "<" + url + ">;rel=\"" + rel + "\"" }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// directory is the ACME directory (RFC 8555 §7.1.1) with its meta, the
// ARI resource (RFC 9773) and the profiles (ACME profiles extension).
func (w *WFE) directory(q *request) *probs.Problem {
	meta := map[string]any{
		"externalAccountRequired": w.cfg.EABRequired,
		"profiles":                w.ra.Profiles(),
	}
	if w.cfg.TermsOfService != "" {
		meta["termsOfService"] = w.cfg.TermsOfService
	}
	if w.cfg.Website != "" {
		meta["website"] = w.cfg.Website
	}
	if len(w.cfg.CAAIdentities) > 0 {
		meta["caaIdentities"] = w.cfg.CAAIdentities
	}
	return reply(q, http.StatusOK, map[string]any{
		"newNonce":    q.url(newNoncePath),
		"newAccount":  q.url(newAccountPath),
		"newOrder":    q.url(newOrderPath),
		"revokeCert":  q.url(revokeCertPath),
		"keyChange":   q.url(keyChangePath),
		"renewalInfo": q.url(strings.TrimSuffix(renewalInfoPath, "/")),
		"meta":        meta,
	})
}

// newNonce answers HEAD with 200 and GET with 204 (RFC 8555 §7.2); the
// nonce is in the Replay-Nonce header set by handle.
func (w *WFE) newNonce(q *request) *probs.Problem {
	if q.r.Method == http.MethodGet {
		q.w.WriteHeader(http.StatusNoContent)
	} else {
		q.w.WriteHeader(http.StatusOK)
	}
	return nil
}

// readBody reads a request body within the size limit.
func (w *WFE) readBody(q *request) ([]byte, *probs.Problem) {
	if q.r.ContentLength > w.cfg.MaxBody {
		return nil, probs.New(probs.TypeMalformed, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", w.cfg.MaxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(q.w, q.r.Body, w.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, probs.New(probs.TypeMalformed, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", w.cfg.MaxBody)
		}
		return nil, probs.Malformed("reading the request body: %v", err)
	}
	return body, nil
}

// Account cache.

func (w *WFE) cachedAccount(id string) (*cachedAccount, bool) {
	w.acctMu.Lock()
	defer w.acctMu.Unlock()
	c, ok := w.accts[id]
	if ok && !w.now().Before(c.expires) {
		delete(w.accts, id)
		return nil, false
	}
	return c, ok
}

func (w *WFE) cacheAccount(a *store.ACMEAccount, key *jose.JSONWebKey) {
	w.acctMu.Lock()
	defer w.acctMu.Unlock()
	if len(w.accts) > 100_000 {
		w.accts = map[string]*cachedAccount{}
	}
	w.accts[a.ID] = &cachedAccount{acct: a, key: key, expires: w.now().Add(accountCacheTTL)}
}

func (w *WFE) forgetAccount(id string) {
	w.acctMu.Lock()
	defer w.acctMu.Unlock()
	delete(w.accts, id)
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
