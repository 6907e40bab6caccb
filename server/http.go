package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qpki/qpki/edge"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/store"
)

// Frontend is a protocol front-end (ACME, EST) mounted on the HTTPS
// listener. A front-end that is also an io.Closer is closed at shutdown,
// after the listener stopped and before the pipeline does.
type Frontend interface {
	Mount(mux *http.ServeMux, svc *enroll.Service) error
}

// Wrapper is a front-end that sees requests before the ServeMux, on the
// HTTPS and the plain-HTTP listener (OCSP: its GET paths hold base64,
// which ServeMux would clean).
type Wrapper interface {
	Wrap(next http.Handler) http.Handler
}

// wrap puts the front-ends that are Wrappers in front of h.
func wrap(h http.Handler, fronts []Frontend) http.Handler {
	for _, f := range fronts {
		if w, ok := f.(Wrapper); ok {
			h = w.Wrap(h)
		}
	}
	return h
}

// Server is a running `qpki serve`.
type Server struct {
	Core    *Core
	Addr    string // the HTTPS listener's address, once HTTPSReady is closed
	CRLAddr string // the plain-HTTP listener's address, if any (CRL, OCSP)
	OpsAddr string // the ops listener's address, if any
	fronts  []Frontend
	httpsUp chan struct{}
	crlHTTP *http.Server
	ops     *http.Server
	proxies *edge.Proxies
	mu      sync.Mutex
	https   *http.Server
	local   *http.Server
	sock    string
	done    chan error
	certs   certCache // the status page's view of the store
}

// SocketPath is where the local API of the server holding caDir listens.
func SocketPath(caDir string) string { return filepath.Join(caDir, "qpki.sock") }

// Start runs the whole server: the pipeline, the HTTPS listener with
// /healthz, /readyz and the front-ends, the ops listener (status page and
// metrics) and the local API socket.
func Start(ctx context.Context, cfg Config, fronts ...Frontend) (*Server, error) {
	cfg.defaults()
	proxies, err := edge.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if _, err := os.Stat(SocketPath(cfg.CADir)); err == nil {
		if cl, err := Dial(cfg.CADir); err == nil {
			cl.Close()
			return nil, fmt.Errorf("a qpki server already holds %s", cfg.CADir)
		}
	}
	core, err := StartCore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{Core: core, done: make(chan error, 2), httpsUp: make(chan struct{}), proxies: proxies}
	if err := s.startLocal(); err != nil {
		core.Stop()
		return nil, err
	}
	if err := s.startOps(cfg.OpsListen); err != nil {
		s.local.Close()
		os.Remove(s.sock)
		core.Stop()
		return nil, err
	}
	if cfg.PublishCRL {
		core.startCRLPublisher(core.ctx, time.Duration(max(cfg.CRLDays, 1))*24*time.Hour, cfg.CRLOnRevoke)
	}
	if cfg.HTTPListen != "" {
		if err := s.startHTTPListener(cfg.HTTPListen, fronts); err != nil {
			s.local.Close()
			s.closeOps()
			core.Stop()
			return nil, err
		}
	}
	if cfg.Workers == 0 && cfg.TLSCert == "" {
		// The listener's certificate is signed by a worker process that
		// may not have started yet: bring HTTPS up when it is.
		cfg.Log.Info("waiting for a worker to sign the HTTPS listener's certificate")
		go func() {
			if err := s.startHTTPS(ctx, fronts); err != nil {
				s.done <- fmt.Errorf("HTTPS listener: %w", err)
			}
		}()
		return s, nil
	}
	if err := s.startHTTPS(ctx, fronts); err != nil {
		s.local.Close()
		os.Remove(s.sock)
		s.closeOps()
		core.Stop()
		return nil, err
	}
	return s, nil
}

// HTTPSReady is closed once the HTTPS listener serves.
func (s *Server) HTTPSReady() <-chan struct{} { return s.httpsUp }

func (s *Server) startHTTPS(ctx context.Context, fronts []Frontend) error {
	cert, err := listenerCertificate(ctx, s.Core)
	if err != nil {
		return err
	}
	// The public listener has the probes but not the status page or the
	// metrics: those list subjects and serials (see startOps).
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("GET "+CRLPath, s.Core.crlHandler)
	mux.HandleFunc("GET "+ShardCRLPattern, s.Core.shardCRLHandler)
	for _, f := range fronts {
		if err := f.Mount(mux, s.Core.Enroll); err != nil {
			return err
		}
	}
	s.fronts = fronts
	ln, err := net.Listen("tcp", s.Core.cfg.Listen)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Addr = ln.Addr().String()
	s.https = &http.Server{Handler: s.proxies.Handler(s.observe(wrap(mux, fronts))), ErrorLog: httpErrorLog(s.Core.cfg.Log),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			// Client certificates are asked for, never required: EST checks
			// them per endpoint, ACME and the health checks ignore them.
			ClientAuth: tls.RequestClientCert}}
	go func() {
		if err := s.https.ServeTLS(s.proxies.Listener(ln), "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.done <- err
		}
	}()
	close(s.httpsUp)
	return nil
}

// ready answers whether the queue, the store and the signers are usable,
// each as a word (ok, unavailable, failed): the errors themselves go to
// the log, not to whoever can reach the probe.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]Readiness{"queue": Ready, "store": Ready, "pipeline": Ready}
	log := s.Core.cfg.Log
	if _, err := s.Core.Queue.Status(ctx); err != nil {
		checks["queue"] = Unavailable
		log.Warn("readiness: queue", "error", err)
	}
	if st, err := s.Core.CA.Store(); err != nil {
		checks["store"] = Unavailable
		log.Warn("readiness: store", "error", err)
	} else if _, err := st.Reservation(big.NewInt(0)); err != nil && !errors.Is(err, store.ErrNotFound) {
		checks["store"] = Unavailable
		log.Warn("readiness: store", "error", err)
	}
	if err := s.Core.Err(); err != nil {
		checks["pipeline"] = Failed
		log.Warn("readiness: pipeline", "error", err)
	}
	writeReadiness(w, checks)
}

// Wait blocks until ctx is done or a listener fails.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.done:
		return err
	}
}

// Shutdown stops the listeners, then the pipeline: work in hand is
// finished and its results recorded before it returns.
func (s *Server) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.mu.Lock()
	h := s.https
	s.mu.Unlock()
	if h != nil {
		h.Shutdown(ctx)
	}
	if s.local != nil {
		s.local.Shutdown(ctx)
		os.Remove(s.sock)
	}
	if s.crlHTTP != nil {
		s.crlHTTP.Shutdown(ctx)
	}
	if s.ops != nil {
		s.ops.Shutdown(ctx)
	}
	for _, f := range s.fronts {
		if c, ok := f.(io.Closer); ok {
			c.Close()
		}
	}
	s.Core.Stop()
}
