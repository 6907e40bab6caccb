// Package ocsp is the OCSP responder front-end (RFC 6960, RFC 5019) of
// `qpki serve`: one URL answers for every CA the process hosts, picking
// the CA by the request's issuer name and key hashes.
//
// Responses are signed ahead of time through the queue, like any batch
// work: the presigner reads each CA's store, and asks for every
// certificate's response in chunks (jobs of kind ocsp, class batch) before
// its first request, again at half its validity, and at once (class
// interactive) after a revocation. The recorder checks and keeps them in
// the CA's store; requests are answered from a bounded in-memory cache in
// front of it, so a burst of relying parties never reaches a signer.
//
// Where pre-signing everything cannot keep up or fit, a CA's responses are
// signed on first request and cached instead (ModeFor). Answers that no
// pre-signed response can give — several CertIDs at once, a nonce with
// --ocsp-nonce, a serial the CA never issued — are signed on request,
// rate-limited per client, and the never-issued ones cached per serial.
package ocsp

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/ocspx"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// Path is where the responder answers, on the HTTPS and plain-HTTP
// listeners: POST to Path, GET under Path + "/".
const Path = "/ocsp"

// DefaultValidity is a response's life (thisUpdate to nextUpdate); it is
// re-signed at half of it.
const DefaultValidity = 4 * 24 * time.Hour

// Authority is one CA the responder answers for.
type Authority struct {
	// Name is the CA's name (its queue name).
	Name   string
	CA     *ca.CA
	Enroll *enroll.Service
}

// Options shape the responder.
type Options struct {
	// Validity of responses (DefaultValidity when 0).
	Validity time.Duration
	// Nonce signs a fresh response for a request that carries a nonce
	// (RFC 8954), rate-limited per client; off, the nonce is ignored and
	// the pre-signed response served (RFC 5019 §4).
	Nonce bool
	// CacheEntries bounds the in-memory cache (DefaultCacheEntries when 0).
	CacheEntries int
	// ClientRate and ClientBurst bound the signatures a client may cause
	// (nonces, several CertIDs, never-issued serials): per second, and at
	// once.
	ClientRate  float64
	ClientBurst int
	// Chunk is the number of certificates per pre-signing job (by
	// algorithm when 0: ChunkFor).
	Chunk int
	// InFlight bounds the pre-signing jobs queued at once per CA.
	InFlight int
	Log      *slog.Logger
}

// DefaultCacheEntries holds the responses of 200,000 certificates: about
// 120 MB of P-256 responses.
const DefaultCacheEntries = 200_000

func (o *Options) defaults() {
	if o.Validity <= 0 {
		o.Validity = DefaultValidity
	}
	if o.CacheEntries <= 0 {
		o.CacheEntries = DefaultCacheEntries
	}
	if o.ClientRate <= 0 {
		o.ClientRate = 2
	}
	if o.ClientBurst <= 0 {
		o.ClientBurst = 10
	}
	if o.InFlight <= 0 {
		o.InFlight = 8
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Mode is how a CA's responses are signed.
type Mode string

// Signing modes.
const (
	// Presign signs every certificate's response ahead of time.
	Presign Mode = "presign"
	// OnDemand signs a certificate's response on its first request and
	// caches it (in memory and in the store) until half its validity.
	OnDemand Mode = "on-demand"
)

// ModeFor says how responses signed with algorithm a are made, and why.
//
//   - ECDSA, Ed25519, RSA: pre-signed. A signature takes microseconds to a
//     millisecond and a response is 300 to 900 bytes: a million
//     certificates are minutes of signing and under 1 GB.
//   - ML-DSA-44 and ML-DSA-65 (and composites with them): pre-signed. A
//     signature is about a tenth of a millisecond; a response is 2.7 to
//     3.6 KB, a few GB per million certificates, stored on disk and only
//     the requested ones cached in memory.
//   - ML-DSA-87 (and its composites): on demand. About 4.9 KB a response,
//     5 GB per million certificates, most of them never asked for.
//   - SLH-DSA: on demand. The small ("s") sets take up to a second per
//     signature, so a million responses would take days of a signer; the
//     fast ("f") sets make 17 to 50 KB signatures.
func ModeFor(a algo.Algorithm) (Mode, string) {
	switch a.Family() {
	case algo.FamilySLHDSA:
		return OnDemand, "SLH-DSA signs slowly (up to a second per signature) or large (17-50 KB)"
	case algo.FamilyMLDSA:
		if a == algo.MLDSA87 {
			return OnDemand, "ML-DSA-87 responses are about 5 KB: 5 GB per million certificates"
		}
	case algo.FamilyComposite:
		if pq, _, err := algo.CompositeComponents(a); err == nil && pq == algo.MLDSA87 {
			return OnDemand, "composite responses with ML-DSA-87 are over 5 KB: 5 GB per million certificates"
		}
	}
	return Presign, "signing is fast and responses are small enough to keep one per certificate"
}

// ChunkFor is the number of certificates per pre-signing job: their
// responses together stay well under the queue's message limit.
func ChunkFor(a algo.Algorithm) int {
	if a.IsClassical() {
		return 256
	}
	return 64
}

// Responder answers OCSP requests for its authorities.
type Responder struct {
	o     Options
	auths []*authority
	// issuers maps CertID issuer hashes to the CA version they name.
	issuers map[issuerID]issuerRef
	cache   *cache
	limits  *limiter
	flight  flight
}

// authority is an Authority with what the responder derived from it.
type authority struct {
	Authority
	idx       int
	store     store.Store
	ocsp      store.OCSPStore
	mode      Mode
	algorithm algo.Algorithm
	chunk     int
	revoked   chan string      // serials to re-sign now
	issued    chan *store.Cert // new certificates to pre-sign
	mu        sync.Mutex
	delegated bool // a delegated responder signs (ocsp/responder.json)
	checked   time.Time
	stamp     time.Time // of ocsp/responder.json when last read
}

type issuerRef struct {
	auth    *authority
	version string
}

// issuerID keys the issuers map without an allocation per request.
type issuerID struct {
	hash       ocspx.Hash
	name, key  [64]byte
	nlen, klen uint8
}

func issuerKey(h ocspx.IssuerHashes) issuerID {
	id := issuerID{hash: h.Hash, nlen: uint8(len(h.NameHash)), klen: uint8(len(h.KeyHash))}
	copy(id.name[:], h.NameHash)
	copy(id.key[:], h.KeyHash)
	return id
}

// New makes a responder for the given CAs.
func New(o Options, cas ...Authority) (*Responder, error) {
	o.defaults()
	if len(cas) == 0 {
		return nil, errors.New("ocsp: no CA to answer for")
	}
	r := &Responder{o: o, issuers: map[issuerID]issuerRef{}, cache: newCache(o.CacheEntries),
		limits: newLimiter(o.ClientRate, o.ClientBurst)}
	for i, a := range cas {
		st, err := a.CA.Store()
		if err != nil {
			return nil, err
		}
		os, ok := st.(store.OCSPStore)
		if !ok {
			return nil, fmt.Errorf("ocsp: the store of CA %s cannot keep OCSP responses", a.Name)
		}
		au := &authority{Authority: a, idx: i, store: st, ocsp: os, revoked: make(chan string, 1024), issued: make(chan *store.Cert, 4096)}
		if err := r.index(au); err != nil {
			return nil, err
		}
		au.refreshSigner()
		r.auths = append(r.auths, au)
		o.Log.Info("OCSP responder", "ca", a.Name, "mode", au.mode, "algorithm", au.algorithm, "delegated", au.delegated)
	}
	return r, nil
}

// index registers the CertID hashes of every version of a CA.
func (r *Responder) index(a *authority) error {
	for name := range a.CA.Meta.Versions {
		cert, err := a.CA.Certificate(name)
		if err != nil {
			continue // a version waiting for its certificate
		}
		for _, h := range ocspx.Hashes {
			ih, err := ocspx.HashIssuer(cert, h)
			if err != nil {
				return err
			}
			k := issuerKey(ih)
			if other, dup := r.issuers[k]; dup && other.auth != a {
				return fmt.Errorf("ocsp: CAs %s and %s have the same name and key", other.auth.Name, a.Name)
			}
			r.issuers[k] = issuerRef{a, name}
		}
	}
	if len(r.issuers) == 0 {
		return fmt.Errorf("ocsp: CA %s has no certificate yet", a.Name)
	}
	return nil
}

// refreshSigner decides who signs the CA's responses (its delegated
// responder when it has a valid one) and thus the mode.
func (a *authority) refreshSigner() {
	alg := a.signingAlgorithm()
	delegated := false
	if _, cert, err := a.CA.Responder(); err == nil && time.Now().Before(cert.NotAfter) {
		if ra, err := x509x.KeyAlgorithm(cert); err == nil {
			alg, delegated = ra, true
		}
	}
	mode, _ := ModeFor(alg)
	a.mu.Lock()
	a.algorithm, a.mode, a.delegated, a.chunk = alg, mode, delegated, ChunkFor(alg)
	a.mu.Unlock()
}

// signingAlgorithm is the algorithm of the CA key that signs responses:
// the composite for a composite CA, else its primary key's.
func (a *authority) signingAlgorithm() algo.Algorithm {
	cert, err := a.CA.Certificate("")
	if err != nil {
		return ""
	}
	alg, err := x509x.KeyAlgorithm(cert)
	if err != nil {
		return ""
	}
	return alg
}

// state is who signs, checked again (a stat of the responder's metadata)
// at most once a second, so that a responder that `qpki ocsp responder
// issue` installs signs from the next response on.
func (a *authority) state() (Mode, bool, int) {
	a.mu.Lock()
	if time.Since(a.checked) > time.Second {
		a.checked = time.Now()
		var stamp time.Time
		if fi, err := os.Stat(filepath.Join(a.CA.Dir, ca.OCSPDir, "responder.json")); err == nil {
			stamp = fi.ModTime()
		}
		if !stamp.Equal(a.stamp) {
			a.stamp = stamp
			a.mu.Unlock()
			a.refreshSigner()
			a.mu.Lock()
		}
	}
	defer a.mu.Unlock()
	return a.mode, a.delegated, a.chunk
}

// Revoked re-signs a certificate's responses at once (interactive
// class): the CA calls it right after a revocation.
func (r *Responder) Revoked(caName string, c *store.Cert) {
	for _, a := range r.auths {
		if a.Name == caName {
			select {
			case a.revoked <- c.Serial:
			default: // full: the next scan finds the changed status
			}
		}
	}
}

// Issued pre-signs a new certificate's response soon: the recorder calls
// it for each certificate it records. It never blocks: when the presigner
// is behind, the next scan finds the certificate.
func (r *Responder) Issued(caName string, c *store.Cert) {
	for _, a := range r.auths {
		if a.Name == caName {
			lite := &store.Cert{Serial: c.Serial, CAVersion: c.CAVersion, NotAfter: c.NotAfter, Revocation: c.Revocation}
			select {
			case a.issued <- lite:
			default:
			}
		}
	}
}

// Modes reports each CA's signing mode (for the start-up log and tests).
func (r *Responder) Modes() map[string]Mode {
	out := map[string]Mode{}
	for _, a := range r.auths {
		m, _, _ := a.state()
		out[a.Name] = m
	}
	return out
}
