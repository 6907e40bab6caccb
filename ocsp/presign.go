package ocsp

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/qpki/qpki/pkg/ocspx"
	"github.com/qpki/qpki/pkg/store"
)

// Run keeps every CA's responses signed ahead of time and its delegated
// responder renewed, until ctx is done.
func (r *Responder) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, a := range r.auths {
		wg.Add(3)
		go func() {
			defer wg.Done()
			r.presignLoop(ctx, a)
		}()
		go func() {
			defer wg.Done()
			r.revokeLoop(ctx, a)
		}()
		go func() {
			defer wg.Done()
			r.renewLoop(ctx, a)
		}()
	}
	wg.Wait()
}

// scanEvery is how often the presigner looks for responses due: well
// within the half validity at which they are re-signed.
func (r *Responder) scanEvery() time.Duration {
	return min(r.o.Validity/16, 10*time.Minute)
}

// New certificates are pre-signed once issuance pauses (issuedQuiet
// without a new one), or issuedMax after the first waiting: a batch of
// issuance is not slowed by their responses, and a certificate's response
// is ready within seconds of a burst.
const (
	issuedQuiet = 10 * time.Second
	issuedMax   = 10 * time.Minute
)

func (r *Responder) presignLoop(ctx context.Context, a *authority) {
	t := time.NewTicker(r.scanEvery())
	defer t.Stop()
	r.scanLogged(ctx, a)
	var fresh []*store.Cert
	var since time.Time
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-a.issued:
			if len(fresh) == 0 {
				since = time.Now()
			}
			fresh = append(fresh, c)
			if time.Since(since) < issuedMax {
				quiet.Reset(issuedQuiet)
				continue
			}
			r.presignFresh(ctx, a, fresh)
			fresh = nil
		case <-quiet.C:
			r.presignFresh(ctx, a, fresh)
			fresh = nil
		case <-t.C:
			a.refreshSigner()
			r.scanLogged(ctx, a)
		}
	}
}

// presignFresh signs the responses of newly issued certificates, in
// batch chunks.
func (r *Responder) presignFresh(ctx context.Context, a *authority, certs []*store.Cert) {
	mode, _, chunk := a.state()
	if mode != Presign {
		return
	}
	byVersion := map[string][]*store.Cert{}
	for _, c := range certs {
		byVersion[c.CAVersion] = append(byVersion[c.CAVersion], c)
	}
	for v, cs := range byVersion {
		for len(cs) > 0 {
			n := min(chunk, len(cs))
			if err := r.signCerts(ctx, a, v, string(ocspx.SHA1), cs[:n], false); err != nil && ctx.Err() == nil {
				r.o.Log.Warn("OCSP: pre-signing new certificates failed (the next scan retries)", "ca", a.Name, "error", err)
				return
			}
			cs = cs[n:]
		}
	}
}

// revokeLoop re-signs revoked certificates' responses at once, whatever
// the presigner is busy with (a scan of a million certificates).
func (r *Responder) revokeLoop(ctx context.Context, a *authority) {
	for {
		select {
		case <-ctx.Done():
			return
		case serial := <-a.revoked:
			r.resignRevoked(ctx, a, serial)
		}
	}
}

// resignRevoked signs a revoked certificate's responses at once, under
// every hash a response of it is kept for.
func (r *Responder) resignRevoked(ctx context.Context, a *authority, serial string) {
	n, err := store.ParseSerial(serial)
	if err != nil {
		return
	}
	c, err := a.store.Cert(n)
	if err != nil {
		return
	}
	for _, h := range ocspx.Hashes {
		k := cacheKey{a.idx, string(h), c.Serial}
		_, missing := a.ocsp.OCSP(n, string(h))
		if missing != nil && h != ocspx.SHA1 {
			r.cache.drop(k)
			continue
		}
		if m, _, _ := a.state(); m == OnDemand && missing != nil {
			r.cache.drop(k) // signed on its first request
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := r.signCerts(wctx, a, c.CAVersion, string(h), []*store.Cert{c}, true)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.o.Log.Error("OCSP: re-signing after a revocation failed", "ca", a.Name, "serial", serial, "error", err)
		}
	}
}

func (r *Responder) scanLogged(ctx context.Context, a *authority) {
	start := time.Now()
	n, err := r.scan(ctx, a)
	switch {
	case err != nil && ctx.Err() == nil:
		r.o.Log.Error("OCSP pre-signing failed", "ca", a.Name, "error", err)
	case n > 0:
		secs := time.Since(start).Seconds()
		r.o.Log.Info("OCSP responses pre-signed", "ca", a.Name, "responses", n, "seconds", math.Round(secs*1000)/1000, "per_second", math.Round(float64(n)/secs))
	}
}

// due reports whether a certificate needs a (new) pre-signed response.
func (r *Responder) due(rec *store.OCSPResponse, c *store.Cert, now time.Time) bool {
	if rec == nil {
		return true
	}
	return rec.Status != entryOf(c).Status || !now.Before(rec.ThisUpdate.Add(r.o.Validity/2))
}

// scan signs, in chunks of batch jobs, the responses of every unexpired
// certificate that has none, whose status changed, or whose response is at
// half its validity: SHA-1 CertIDs (what RFC 5019 clients send) for every
// certificate, other hashes for those a client asked about.
// It returns the number of responses signed.
func (r *Responder) scan(ctx context.Context, a *authority) (int, error) {
	mode, _, chunk := a.state()
	if mode != Presign {
		return 0, nil
	}
	now := time.Now()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		firstEr error
		signed  int
	)
	sem := make(chan struct{}, r.o.InFlight)
	send := func(version, hash string, certs []*store.Cert) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := r.signCerts(ctx, a, version, hash, certs, false)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstEr == nil {
				firstEr = err
			}
			if err == nil {
				signed += len(certs)
			}
		}()
	}
	type due struct{ version, hash string }
	pending := map[due][]*store.Cert{}
	add := func(d due, c *store.Cert) {
		pending[d] = append(pending[d], c)
		if len(pending[d]) >= chunk {
			send(d.version, d.hash, pending[d])
			pending[d] = nil
		}
	}
	err := a.ocsp.EachCert(func(c *store.Cert) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if now.After(c.NotAfter) {
			return nil // expired: answered on request, if ever asked
		}
		n, err := store.ParseSerial(c.Serial)
		if err != nil {
			return nil
		}
		// The DER is not needed to sign the status: drop it early.
		lite := &store.Cert{Serial: c.Serial, CAVersion: c.CAVersion, Revocation: c.Revocation}
		for _, h := range ocspx.Hashes {
			rec, err := a.ocsp.OCSP(n, string(h))
			if err != nil {
				rec = nil
			}
			// SHA-1 (what RFC 5019 clients ask) for every certificate;
			// other hashes once a client asked for them.
			if (rec != nil || h == ocspx.SHA1) && r.due(rec, c, now) {
				add(due{c.CAVersion, string(h)}, lite)
			}
		}
		return nil
	})
	for d, certs := range pending {
		if len(certs) > 0 {
			send(d.version, d.hash, certs)
		}
	}
	wg.Wait()
	if err != nil {
		return signed, err
	}
	return signed, firstEr
}
