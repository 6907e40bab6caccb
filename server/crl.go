package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// CRL publishing: serve keeps the CA's current CRL fresh — signed through
// the queue like any job — and serves it over HTTP.

// CRLPath is where the CA's CRL is published on the listeners, at the URL
// its profiles' crlDistributionPoints should name.
const CRLPath = "/crl/ca.crl"

// ShardCRLPattern is where a partitioned CA's shard CRLs are served:
// /crl/<ca>/<shard>.crl, <ca> being the CA's queue name, as its
// certificates' crlDistributionPoints name them (qpki ca crl-config).
const ShardCRLPattern = "/crl/{ca}/{file}"

// crlPublisher regenerates the full CRL and each shard's before their
// nextUpdate and, when asked, right after a revocation (the full CRL and
// the revoked certificate's shard only).
type crlPublisher struct {
	core     *Core
	validity time.Duration
	now      chan struct{}
	mu       sync.Mutex
	pending  map[int]bool // shards revoked in since their last CRL; -1: the full CRL
}

func (core *Core) startCRLPublisher(ctx context.Context, validity time.Duration, onRevoke bool) {
	p := &crlPublisher{core: core, validity: validity, now: make(chan struct{}, 1), pending: map[int]bool{}}
	if onRevoke {
		prev := core.CA.OnRevoke
		core.CA.OnRevoke = func(c *store.Cert) {
			if prev != nil {
				prev(c)
			}
			p.mu.Lock()
			p.pending[-1] = true
			if c != nil && c.Shard != nil {
				p.pending[*c.Shard] = true
			}
			p.mu.Unlock()
			p.trigger()
		}
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
		p.publishDue(ctx, false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.now:
			p.publishDue(ctx, true)
		}
	}
}

// publishDue regenerates the CRLs past half their life and, after a
// revocation, those it touched: one job per CRL (batch class).
func (p *crlPublisher) publishDue(ctx context.Context, revoked bool) {
	p.mu.Lock()
	pending := p.pending
	p.pending = map[int]bool{}
	p.mu.Unlock()
	if (revoked && pending[-1]) || p.due(nil) {
		p.publishLogged(ctx, nil)
	}
	cfg := p.core.CA.Meta.CRL
	if cfg == nil {
		return
	}
	for k := range cfg.Published {
		if pending[k] || p.due(&k) {
			p.publishLogged(ctx, &k)
		}
	}
}

func (p *crlPublisher) publishLogged(ctx context.Context, shard *int) {
	if err := p.publish(ctx, shard); err != nil && ctx.Err() == nil {
		args := []any{"error", err}
		if shard != nil {
			args = append(args, "shard", *shard)
		}
		p.core.cfg.Log.Error("CRL regeneration failed", args...)
	}
}

// crlFile is where the CRL of shard (nil: the full one) is stored.
func crlFile(dir string, shard *int) string {
	name := "ca"
	if shard != nil {
		name = strconv.Itoa(*shard)
	}
	return filepath.Join(dir, ca.CRLDir, name+".crl.der")
}

// due reports whether a CRL is missing or past half its life.
func (p *crlPublisher) due(shard *int) bool {
	data, err := os.ReadFile(crlFile(p.core.CA.Dir, shard))
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

func (p *crlPublisher) publish(ctx context.Context, shard *int) error {
	key := fmt.Sprintf("crl-auto-%d", time.Now().UnixNano())
	class := queue.ClassInteractive
	if shard != nil {
		key = fmt.Sprintf("crl-auto-%d-%d", *shard, time.Now().UnixNano())
		class = queue.ClassBatch
	}
	id, err := p.core.Enroll.Submit(ctx, enroll.Request{Kind: jobspec.KindCRL, Key: key, Class: class, CRL: ca.CRLOptions{Validity: p.validity, Shard: shard}})
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

// shardCRLHandler serves a shard's CRL at /crl/<ca>/<shard>.crl.
func (core *Core) shardCRLHandler(w http.ResponseWriter, r *http.Request) {
	cfg := core.CA.Meta.CRL
	num, ok := strings.CutSuffix(r.PathValue("file"), ".crl")
	k, err := strconv.Atoi(num)
	if cfg == nil || r.PathValue("ca") != cfg.Name || !ok || err != nil || k < 0 || k >= cfg.Published || strconv.Itoa(k) != num {
		http.Error(w, "no such CRL", http.StatusNotFound)
		return
	}
	serveCRLFile(w, crlFile(core.CA.Dir, &k))
}

// crlHandler serves the current CRL (DER, application/pkix-crl).
func (core *Core) crlHandler(w http.ResponseWriter, r *http.Request) {
	serveCRLFile(w, crlFile(core.CA.Dir, nil))
}

func serveCRLFile(w http.ResponseWriter, path string) {
	data, err := os.ReadFile(path)
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
	mux.HandleFunc("GET "+ShardCRLPattern, s.Core.shardCRLHandler)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--http-listen: %w", err)
	}
	s.CRLAddr = ln.Addr().String()
	s.crlHTTP = &http.Server{Handler: s.proxies.Handler(wrap(mux, fronts)), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go s.crlHTTP.Serve(s.proxies.Listener(ln)) // a PROXY header from a trusted balancer, as on HTTPS
	return nil
}
