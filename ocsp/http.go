package ocsp

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/ocspx"
	"github.com/qpki/qpki/pkg/store"
)

// Wrap serves Path and everything under it before next (a ServeMux) sees
// the request: a GET request's base64 may hold "//", which ServeMux would
// clean and redirect.
func (r *Responder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if p := req.URL.Path; p == Path || strings.HasPrefix(p, Path+"/") {
			r.ServeHTTP(w, req)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// signTimeout bounds how long a request waits for a signature made for it.
const signTimeout = 10 * time.Second

// ServeHTTP answers POST (application/ocsp-request) at Path and GET at
// Path/<base64 request> (RFC 5019 §5).
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	der, err := requestBytes(req)
	switch {
	case errors.Is(err, errMethod):
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "OCSP takes GET and POST", http.StatusMethodNotAllowed)
		return
	case err != nil:
		writeStatus(w, ocspx.MalformedRequest)
		return
	}
	parsed, err := ocspx.ParseRequest(der)
	if err != nil {
		// An unknown hash algorithm leaves nothing to match: malformed too.
		writeStatus(w, ocspx.MalformedRequest)
		return
	}
	e, status := r.answer(req, parsed)
	if status != ocspx.Successful {
		writeStatus(w, status)
		return
	}
	h := w.Header()
	h["Content-Type"] = hdrOCSPResponse
	if req.Method == http.MethodGet {
		// RFC 5019 §6: cacheable until nextUpdate; the same bytes until
		// the response is re-signed.
		h["Cache-Control"] = []string{cacheControl(time.Until(e.nextUpdate))}
		h["Last-Modified"], h["Expires"], h["Etag"] = e.hdrLastModified, e.hdrExpires, e.hdrETag
		if inm := req.Header["If-None-Match"]; len(inm) == 1 && inm[0] == e.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	} else {
		h["Cache-Control"] = hdrNoStore
	}
	h["Content-Length"] = e.hdrLength
	w.Write(e.der)
}

var errMethod = errors.New("method")

var (
	hdrOCSPResponse = []string{"application/ocsp-response"}
	hdrNoStore      = []string{"no-store"}
)

// cacheControl says how long caches may keep a response: up to its
// nextUpdate (RFC 5019 §6.2).
func cacheControl(left time.Duration) string {
	age := max(int64(left/time.Second), 0)
	return "max-age=" + strconv.FormatInt(age, 10) + ", public, no-transform, must-revalidate"
}

// requestBytes reads the DER request from a POST body or a GET path, at
// most ocspx.MaxRequest bytes either way.
func requestBytes(req *http.Request) ([]byte, error) {
	switch req.Method {
	case http.MethodPost:
		body := http.MaxBytesReader(nil, req.Body, ocspx.MaxRequest+1)
		der, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		if len(der) > ocspx.MaxRequest {
			return nil, ocspx.ErrTooLarge
		}
		return der, nil
	case http.MethodGet:
		// The raw path: base64 may hold '/' and '+', escaped or not.
		raw := req.URL.EscapedPath()
		b64, ok := strings.CutPrefix(raw, Path+"/")
		if !ok || b64 == "" || len(b64) > 3*ocspx.MaxRequest {
			return nil, ocspx.ErrMalformed
		}
		s, err := url.PathUnescape(b64)
		if err != nil {
			return nil, err
		}
		// RFC 5019 says base64; some clients send base64url or drop the
		// padding.
		s = strings.TrimRight(s, "=")
		if strings.ContainsAny(s, "-_") {
			return base64.RawURLEncoding.DecodeString(s)
		}
		return base64.RawStdEncoding.DecodeString(s)
	}
	return nil, errMethod
}

func writeStatus(w http.ResponseWriter, s ocspx.ResponseStatus) {
	h := w.Header()
	h.Set("Content-Type", "application/ocsp-response")
	h.Set("Cache-Control", "no-store")
	w.Write(ocspx.ErrorResponse(s))
}

// answer finds or signs the response to a parsed request.
func (r *Responder) answer(req *http.Request, p *ocspx.Request) (*entry, ocspx.ResponseStatus) {
	refs := make([]issuerRef, len(p.CertIDs))
	for i, id := range p.CertIDs {
		ref, ok := r.issuers[issuerKey(id.IssuerHashes)]
		if !ok {
			return nil, ocspx.Unauthorized
		}
		if i > 0 && (ref != refs[0] || id.Hash != p.CertIDs[0].Hash) {
			// One signed answer names one issuer.
			return nil, ocspx.MalformedRequest
		}
		refs[i] = ref
	}
	nonce := p.Nonce != nil && r.o.Nonce
	if nonce && ocspx.NonceLen(p.Nonce) > ocspx.MaxNonce {
		return nil, ocspx.MalformedRequest
	}
	if len(p.CertIDs) == 1 && !nonce {
		return r.single(req, refs[0], p.CertIDs[0])
	}
	if !r.limits.allow(req) {
		if len(p.CertIDs) == 1 {
			// Over its limit, a client with a nonce gets the pre-signed
			// answer, as without --ocsp-nonce.
			return r.single(req, refs[0], p.CertIDs[0])
		}
		return nil, ocspx.TryLater
	}
	var n []byte
	if nonce {
		n = p.Nonce
	}
	e, err := r.signTogether(req.Context(), refs[0], p.CertIDs, n)
	if err != nil {
		r.o.Log.Warn("OCSP: signing a response failed", "ca", refs[0].auth.Name, "error", err)
		return nil, ocspx.TryLater
	}
	return e, ocspx.Successful
}

// single answers one CertID: from the cache, the store, or signed now.
func (r *Responder) single(req *http.Request, ref issuerRef, id ocspx.CertID) (*entry, ocspx.ResponseStatus) {
	a := ref.auth
	serial := store.FormatSerial(id.Serial)
	k := cacheKey{a.idx, string(id.Hash), serial}
	now := time.Now()
	if e := r.cache.get(k); e != nil && now.Before(e.staleAt) {
		return e, ocspx.Successful
	}
	if rec, err := a.ocsp.OCSP(id.Serial, string(id.Hash)); err == nil && now.Before(rec.NextUpdate) {
		e := newEntry(rec.DER, rec.ThisUpdate, rec.NextUpdate, rec.ThisUpdate.Add(r.o.Validity/2))
		if now.Before(e.staleAt) {
			r.cache.put(k, e)
			return e, ocspx.Successful
		}
		// Due for re-signing: the presigner is on it (SHA-1, or a hash
		// it keeps); serve this one meanwhile rather than sign on request.
		if m, _, _ := a.state(); m == Presign {
			r.cache.put(k, e.until(now.Add(time.Minute)))
			return e, ocspx.Successful
		}
	}
	cert, err := a.store.Cert(id.Serial)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, ocspx.InternalError
	}
	if cert != nil && cert.CAVersion != "" && cert.CAVersion != ref.version {
		cert = nil // another version's key issued it: not this issuer's
	}
	if cert == nil && !r.limits.allow(req) {
		// Never issued, and this client has asked for too many such.
		return nil, ocspx.TryLater
	}
	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	e, err := r.flight.do(req.Context(), "1/"+strconv.Itoa(a.idx)+"/"+string(id.Hash)+"/"+serial, func() (*entry, error) {
		if cert == nil {
			return r.signTogether(ctx, ref, []ocspx.CertID{id}, nil)
		}
		if err := r.signCerts(ctx, a, ref.version, string(id.Hash), []*store.Cert{cert}, true); err != nil {
			return nil, err
		}
		rec, err := a.ocsp.OCSP(id.Serial, string(id.Hash))
		if err != nil {
			return nil, err
		}
		return newEntry(rec.DER, rec.ThisUpdate, rec.NextUpdate, rec.ThisUpdate.Add(r.o.Validity/2)), nil
	})
	if err != nil {
		r.o.Log.Warn("OCSP: signing a response failed", "ca", a.Name, "serial", serial, "error", err)
		return nil, ocspx.TryLater
	}
	r.cache.put(k, e)
	return e, ocspx.Successful
}

// thisUpdate is the thisUpdate of a response signed now: a minute back,
// for relying parties whose clocks run a little behind, but never before
// a revocation it reports.
func thisUpdate(entries []jobspec.OCSPEntry) time.Time {
	t := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	for _, e := range entries {
		if e.Status == jobspec.OCSPRevoked && e.RevokedAt.After(t) {
			t = e.RevokedAt.UTC().Truncate(time.Second)
		}
	}
	return t
}
