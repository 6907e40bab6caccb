package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/qpki/qpki/edge"
	"github.com/qpki/qpki/metrics"
	"github.com/qpki/qpki/queue"
)

// The ops listener: plain HTTP, by default on loopback only, with what
// an operator and a monitoring system read but the public must not:
// /status and /status.json (subjects and serials of recent certificates)
// and /metrics, besides /healthz and /readyz (also on the HTTPS listener,
// for load balancers that probe the public port).

// DefaultOpsListen is --ops-listen's default. When that address is taken
// (a second serve on the same host), serve warns and runs without the
// ops listener; an address given explicitly must be free.
const DefaultOpsListen = "127.0.0.1:9464"

// Readiness is one component's state in /readyz.
type Readiness string

const (
	Ready       Readiness = "ok"
	Unavailable Readiness = "unavailable" // it does not answer
	Failed      Readiness = "failed"      // it stopped with an error
)

func writeReadiness(w http.ResponseWriter, checks map[string]Readiness) {
	code := http.StatusOK
	for _, st := range checks {
		if st != Ready {
			code = http.StatusServiceUnavailable
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(checks)
}

func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// startOps serves the ops listener on addr ("" for none).
func (s *Server) startOps(addr string) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if addr == DefaultOpsListen && errors.Is(err, syscall.EADDRINUSE) {
			s.Core.cfg.Log.Warn("ops listener: the default address is taken; /status and /metrics are not served (set --ops-listen)", "addr", addr)
			return nil
		}
		return fmt.Errorf("--ops-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", s.Core.Metrics.Handler())
	mux.HandleFunc("GET /status", s.statusPage)
	mux.HandleFunc("GET /status.json", s.statusJSON)
	s.OpsAddr = ln.Addr().String()
	s.ops = &http.Server{Handler: (*edge.Proxies)(nil).Handler(s.observe(mux)), ErrorLog: httpErrorLog(s.Core.cfg.Log),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := s.ops.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.done <- fmt.Errorf("ops listener: %w", err)
		}
	}()
	return nil
}

func (s *Server) closeOps() {
	if s.ops != nil {
		s.ops.Close()
	}
}

// ServeOps serves m over plain HTTP on addr, for a process without the
// HTTPS listener (`qpki worker`): /metrics, /healthz (the process runs)
// and /readyz (the queue answers). q, when not nil, is reported in the
// queue metrics; log gets what /readyz does not say. stop closes the
// listener.
func ServeOps(addr string, m *metrics.Metrics, q *queue.Queue, log *slog.Logger) (stop func(), err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ops listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]Readiness{"queue": Ready}
		if q != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			defer cancel()
			if _, err := q.Status(ctx); err != nil {
				checks["queue"] = Unavailable
				log.Warn("readiness: queue", "error", err)
			}
		}
		writeReadiness(w, checks)
	})
	if q != nil {
		m.WatchQueue(QueueMetrics(q), 2*time.Second)
	}
	hs := &http.Server{Handler: (*edge.Proxies)(nil).Handler(m.InstrumentHTTP(mux)), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	return func() { hs.Close() }, nil
}
