package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
)

// CRL publishing: serve keeps the CA's current CRL fresh — signed through
// the queue like any job — and serves it over HTTP.

// CRLPath is where the CA's CRL is published on the listeners, at the URL
// its profiles' crlDistributionPoints should name.
const CRLPath = "/crl/ca.crl"

// crlPublisher regenerates the CRL before its nextUpdate and, when asked,
// right after each revocation.
type crlPublisher struct {
	core     *Core
	validity time.Duration
	now      chan struct{}
}

func (core *Core) startCRLPublisher(ctx context.Context, validity time.Duration, onRevoke bool) {
	p := &crlPublisher{core: core, validity: validity, now: make(chan struct{}, 1)}
	if onRevoke {
		core.CA.OnRevoke = func(*store.Cert) { p.trigger() }
	}
	core.wg.Add(1)
	go func() {
		defer core.wg.Done()
		p.run(ctx)
	}()
}

func (p *crlPublisher) trigger() {
	select {
	case p.now <- struct{}{}:
	default:
	}
}

func (p *crlPublisher) run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if p.due() {
			p.publishLogged(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.now:
			p.publishLogged(ctx)
		}
	}
}

func (p *crlPublisher) publishLogged(ctx context.Context) {
	if err := p.publish(ctx); err != nil && ctx.Err() == nil {
		p.core.cfg.Log.Error("CRL regeneration failed", "error", err)
	}
}

// due reports whether the current CRL is missing or past half its life.
func (p *crlPublisher) due() bool {
	data, err := os.ReadFile(filepath.Join(p.core.CA.Dir, ca.CRLDir, "ca.crl.der"))
	if err != nil {
		return true
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return true
	}
	life := crl.NextUpdate.Sub(crl.ThisUpdate)
	return time.Now().After(crl.ThisUpdate.Add(life / 2))
}

func (p *crlPublisher) publish(ctx context.Context) error {
	key := fmt.Sprintf("crl-auto-%d", time.Now().UnixNano())
	id, err := p.core.Enroll.Submit(ctx, enroll.Request{Kind: jobspec.KindCRL, Key: key, CRL: ca.CRLOptions{Validity: p.validity}})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := p.core.Enroll.Wait(wctx, id)
	if err != nil {
		return err
	}
	return res.Err()
}

// crlHandler serves the current CRL (DER, application/pkix-crl).
func (core *Core) crlHandler(w http.ResponseWriter, r *http.Request) {
	data, err := os.ReadFile(filepath.Join(core.CA.Dir, ca.CRLDir, "ca.crl.der"))
	if err != nil {
		http.Error(w, "no CRL published yet", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	if crl, err := x509.ParseRevocationList(data); err == nil {
		w.Header().Set("Expires", crl.NextUpdate.UTC().Format(http.TimeFormat))
		w.Header().Set("Last-Modified", crl.ThisUpdate.UTC().Format(http.TimeFormat))
	}
	w.Write(data)
}

// startHTTPListener serves the CRL and the front-ends that answer over
// plain HTTP (OCSP) on --http-listen (alias --crl-listen).
func (s *Server) startHTTPListener(addr string, fronts []Frontend) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CRLPath, s.Core.crlHandler)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--http-listen: %w", err)
	}
	s.CRLAddr = ln.Addr().String()
	s.crlHTTP = &http.Server{Handler: s.proxies.Handler(wrap(mux, fronts)), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go s.crlHTTP.Serve(s.proxies.Listener(ln)) // a PROXY header from a trusted balancer, as on HTTPS
	return nil
}
