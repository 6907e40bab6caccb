package server

import (
	"context"
	stdlog "log"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/qpki/qpki/edge"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/metrics"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// observer reports enroll's jobs to the metrics, and each recorded one to
// the log.
type observer struct {
	m   *metrics.Metrics
	log *slog.Logger
}

func (o observer) JobSubmitted(kind, profile, class string) { o.m.JobSubmitted(kind, profile, class) }

func (o observer) JobRecorded(j *store.Job, requestID string) {
	latency := j.Finished.Sub(j.Created)
	o.m.JobRecorded(j.Kind, j.Profile, j.Class, j.State == store.JobDone, latency)
	o.log.Debug("job recorded", "job", j.ID, "request_id", requestID, "kind", j.Kind, "state", j.State,
		"serial", j.Serial, "latency", latency)
}

// QueueMetrics reads q for the metrics' queue collector (see
// metrics.Metrics.WatchQueue); `qpki worker` reports the queue too, so
// that worker pods can be scaled on its depth.
func QueueMetrics(q *queue.Queue) metrics.QueueFunc {
	return func(ctx context.Context) (metrics.QueueSnapshot, error) {
		st, err := q.Status(ctx)
		if err != nil {
			return metrics.QueueSnapshot{}, err
		}
		return queueSnapshot(st), nil
	}
}

func queueSnapshot(st queue.Status) metrics.QueueSnapshot {
	snap := metrics.QueueSnapshot{DeadLetters: st.DeadLetters, ResultsSeq: st.ResultsSeq}
	for _, name := range st.CANames() {
		cs := st.CAs[name]
		for _, c := range []struct {
			class string
			s     queue.ClassStatus
		}{{queue.ClassInteractive, cs.Interactive}, {queue.ClassBatch, cs.Batch}} {
			snap.Depths = append(snap.Depths, metrics.QueueDepth{CA: name, Class: c.class,
				Pending: c.s.Pending, InFlight: c.s.InFlight, Redelivered: c.s.Redelivered})
		}
	}
	return snap
}

// RequestIDHeader carries a request's id in and out of the listeners.
const RequestIDHeader = edge.RequestIDHeader

// quietEndpoints are polled by machines: their requests are logged at
// debug level only.
var quietEndpoints = map[string]bool{
	"GET /healthz": true, "GET /readyz": true, "GET /metrics": true, "GET /status.json": true,
}

// observe wraps the HTTPS mux: each request gets an id (the client's
// X-Request-Id or a new one), which goes back in the response, into the
// context (enroll puts it on the job, so the worker's log names it) and
// into one access log line; and it is counted in the metrics. The log
// line has no query string, header or body: those may hold secrets.
func (s *Server) observe(mux http.Handler) http.Handler {
	log := s.Core.cfg.Log
	next := s.Core.Metrics.InstrumentHTTP(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := edge.RequestID(r) // edge.Handler, outside, cleaned it
		w.Header().Set(RequestIDHeader, id)
		r = r.WithContext(enroll.WithRequestID(r.Context(), id))
		sw := &metrics.StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		level := slog.LevelInfo
		if quietEndpoints[r.Pattern] {
			level = slog.LevelDebug
		}
		if !log.Enabled(r.Context(), level) {
			return
		}
		path := r.URL.Path
		if len(path) > 200 {
			path = path[:200] + "…"
		}
		attrs := []slog.Attr{slog.String("request_id", id),
			slog.String("method", r.Method), slog.String("path", path), slog.String("endpoint", r.Pattern),
			slog.Int("status", sw.Status()), slog.Int64("bytes", sw.Bytes()),
			slog.Duration("duration", time.Since(start)), slog.String("remote", r.RemoteAddr)}
		if peer, ok := edge.Peer(r.Context()); ok {
			attrs = append(attrs, slog.String("via", peer)) // the trusted proxy
		}
		log.LogAttrs(r.Context(), level, "http request", attrs...)
	})
}

// httpErrorLog sends net/http's own error lines to the structured log: a
// failed TLS handshake (scanners, probes that only connect) at debug
// level, anything else (a handler's panic) as an error.
func httpErrorLog(log *slog.Logger) *stdlog.Logger {
	return stdlog.New(errorLogWriter{log}, "", 0)
}

type errorLogWriter struct{ log *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelError
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, "https listener", "error", msg)
	return len(p), nil
}
