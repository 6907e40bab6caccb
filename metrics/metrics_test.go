package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qpki/qpki/metrics"
)

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestCounters(t *testing.T) {
	m := metrics.New()
	m.JobSubmitted("issue", "ec/tls-server", "interactive")
	m.JobSubmitted("issue", "ec/tls-server", "interactive")
	m.JobRecorded("issue", "ec/tls-server", "interactive", true, 30*time.Millisecond)
	m.JobRecorded("issue", "ec/tls-server", "interactive", false, 40*time.Millisecond)
	m.Signed("issue", "software", 2*time.Millisecond, nil)
	m.Signed("issue", "pkcs11:CA-Token", 0, errors.New("CKR_DEVICE_ERROR"))
	m.SignerBusy("software", 1500*time.Millisecond)
	m.SignerBusy("software", 500*time.Millisecond)
	if got := m.SignerBusySeconds("software"); got != 2 {
		t.Errorf("SignerBusySeconds = %v, want 2", got)
	}
	out := scrape(t, m.Handler())
	for _, want := range []string{
		`qpki_jobs_submitted_total{class="interactive",kind="issue",profile="ec/tls-server"} 2`,
		`qpki_jobs_signed_total{kind="issue",profile="ec/tls-server"} 1`,
		`qpki_jobs_failed_total{kind="issue",profile="ec/tls-server"} 1`,
		`qpki_job_latency_seconds_count{class="interactive",kind="issue"} 2`,
		`qpki_sign_duration_seconds_count{kind="issue",signer="software"} 1`,
		`qpki_signer_signatures_total{signer="software"} 1`,
		`qpki_signer_errors_total{signer="pkcs11:CA-Token"} 1`,
		`qpki_signer_busy_seconds_total{signer="software"} 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(out, "qpki_queue_up") {
		t.Error("queue metrics without a queue")
	}
}

func TestNilIsSafe(t *testing.T) {
	var m *metrics.Metrics
	m.JobSubmitted("issue", "p", "batch")
	m.JobRecorded("issue", "p", "batch", true, time.Second)
	m.Signed("issue", "s", time.Second, nil)
	m.SignerBusy("s", time.Second)
	m.SignerBusySeconds("s")
	m.WatchQueue(nil, 0)
	h := m.InstrumentHTTP(http.NotFoundHandler())
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
}

func TestQueueCollector(t *testing.T) {
	m := metrics.New()
	var fail bool
	m.WatchQueue(func(ctx context.Context) (metrics.QueueSnapshot, error) {
		if fail {
			return metrics.QueueSnapshot{}, errors.New("no quorum")
		}
		return metrics.QueueSnapshot{Depths: []metrics.QueueDepth{
			{CA: "issuing", Class: "interactive", Pending: 3, InFlight: 2, Redelivered: 1},
			{CA: "issuing", Class: "batch", Pending: 500},
		}, DeadLetters: 7, ResultsSeq: 1234}, nil
	}, time.Second)
	out := scrape(t, m.Handler())
	for _, want := range []string{
		`qpki_queue_up 1`,
		`qpki_queue_jobs{ca="issuing",class="interactive",state="pending"} 3`,
		`qpki_queue_jobs{ca="issuing",class="interactive",state="in_flight"} 2`,
		`qpki_queue_jobs{ca="issuing",class="batch",state="pending"} 500`,
		`qpki_queue_redelivered_jobs{ca="issuing",class="interactive"} 1`,
		`qpki_queue_dead_letters 7`,
		`qpki_queue_results_total 1234`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	fail = true
	out = scrape(t, m.Handler())
	if !strings.Contains(out, "qpki_queue_up 0") || strings.Contains(out, "qpki_queue_jobs{") {
		t.Errorf("a failed queue read should report up 0 and no depth:\n%s", grep(out, "qpki_queue"))
	}
}

// A queue read that hangs must not hang the scrape.
func TestQueueCollectorTimeout(t *testing.T) {
	m := metrics.New()
	m.WatchQueue(func(ctx context.Context) (metrics.QueueSnapshot, error) {
		<-ctx.Done()
		return metrics.QueueSnapshot{}, ctx.Err()
	}, 50*time.Millisecond)
	start := time.Now()
	out := scrape(t, m.Handler())
	if time.Since(start) > 5*time.Second || !strings.Contains(out, "qpki_queue_up 0") {
		t.Fatalf("scrape took %v:\n%s", time.Since(start), grep(out, "qpki_queue"))
	}
}

func TestInstrumentHTTP(t *testing.T) {
	m := metrics.New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /acme/order/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /flush", func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Error(err)
		}
	})
	srv := httptest.NewServer(m.InstrumentHTTP(mux))
	defer srv.Close()
	for _, p := range []string{"/acme/order/1", "/acme/order/2", "/acme/order/3", "/nope/" + strings.Repeat("x", 50), "/flush"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := testutil.CollectAndCount(m.Registry(), "qpki_http_requests_total"); got != 3 {
		t.Errorf("%d label sets, want 3 (order, unmatched, flush)", got)
	}
	out := scrape(t, m.Handler())
	for _, want := range []string{
		`qpki_http_requests_total{code="201",endpoint="GET /acme/order/{id}"} 3`,
		`qpki_http_requests_total{code="404",endpoint="unmatched"} 1`,
		`qpki_http_requests_total{code="200",endpoint="GET /flush"} 1`,
		`qpki_http_request_duration_seconds_count{endpoint="GET /acme/order/{id}"} 3`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q\n%s", want, grep(out, "qpki_http"))
		}
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
