package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/server"
)

// lockedBuffer collects log lines written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the JSON log records.
func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Bytes())
		}
		out = append(out, m)
	}
	return out
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// issueFrontend is the smallest front-end: POST /test/issue takes a DER
// CSR and answers with the certificate, through enroll as ACME and EST do.
type issueFrontend struct{}

func (issueFrontend) Mount(mux *http.ServeMux, svc *enroll.Service) error {
	mux.HandleFunc("POST /test/issue", func(w http.ResponseWriter, r *http.Request) {
		csr, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id, err := svc.Submit(r.Context(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr, Key: r.URL.Query().Get("key")})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		res, err := svc.Wait(ctx, id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write(res.DER)
	})
	return nil
}

type observed struct {
	s      *server.Server
	client *http.Client
	base   string // the HTTPS listener
	ops    string // the ops listener
	log    *lockedBuffer
}

// startObserved runs a real server on a new ECDSA CA, with one worker, a
// JSON debug log and the status page sampling the queue every 100ms.
func startObserved(t *testing.T) *observed {
	t.Helper()
	return startObservedWith(t, nil)
}

// startObservedWith is startObserved with tweak applied to the server's
// configuration.
func startObservedWith(t *testing.T, tweak func(*server.Config)) *observed {
	t.Helper()
	dir := t.TempDir()
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "status-ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Observed Root"}})
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := c.Certificate("")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := server.Config{CADir: c.Dir, DataDir: filepath.Join(dir, "data"),
		Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", Workers: 1, Log: log, SampleEvery: 100 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := server.Start(context.Background(), cfg, issueFrontend{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	<-s.HTTPSReady()
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	t.Cleanup(client.CloseIdleConnections)
	return &observed{s: s, client: client, base: "https://" + s.Addr, ops: "http://" + s.OpsAddr, log: logs}
}

// get reads path from the HTTPS listener.
func (o *observed) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	return o.getURL(t, o.base+path)
}

// opsGet reads path from the ops listener.
func (o *observed) opsGet(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	return o.getURL(t, o.ops+path)
}

func (o *observed) getURL(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := o.client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// issue asks for a certificate over HTTPS; requestID "" sends none.
func (o *observed) issue(t *testing.T, name, requestID string) (*x509.Certificate, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", o.base+"/test/issue?key="+name+"&token=s3cret-query", bytes.NewReader(benchCSR(t, name)))
	req.Header.Set("Authorization", "Bearer s3cret-header")
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("issue %s: %s %s", name, resp.Status, body)
	}
	cert, err := x509.ParseCertificate(body)
	if err != nil {
		t.Fatal(err)
	}
	return cert, resp.Header.Get("X-Request-Id")
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)

// scrape reads /metrics into series → value.
func (o *observed) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, body := o.opsGet(t, "/metrics")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	return parseMetrics(t, string(body))
}

// parseMetrics reads the Prometheus text format into series → value.
func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, l := range strings.Split(text, "\n") {
		if m := sampleLine.FindStringSubmatch(l); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("bad sample %q", l)
			}
			out[m[1]] = v
		}
	}
	return out
}

const (
	submittedIssue = `qpki_jobs_submitted_total{class="interactive",kind="issue",profile="ec/tls-server"}`
	signedIssue    = `qpki_jobs_signed_total{kind="issue",profile="ec/tls-server"}`
)

// settled scrapes until every submitted issue job is counted as signed:
// the recorder counts a batch just after it wakes the batch's waiters.
func (o *observed) settled(t *testing.T) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := o.scrape(t)
		if m[submittedIssue] == m[signedIssue] || time.Now().After(deadline) {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsMove issues certificates through a real server and checks
// that the pipeline's counters and histograms move between two scrapes.
func TestMetricsMove(t *testing.T) {
	o := startObserved(t)
	o.issue(t, "m0.example.com", "")
	before := o.settled(t)
	const n = 3
	for i := range n {
		o.issue(t, fmt.Sprintf("m%d.example.com", i+1), "")
	}
	after := o.settled(t)
	grew := func(series string, by float64) {
		t.Helper()
		if got := after[series] - before[series]; got != by {
			t.Errorf("%s grew by %v, want %v (before %v, after %v)", series, got, by, before[series], after[series])
		}
	}
	grew(submittedIssue, n)
	grew(signedIssue, n)
	grew(`qpki_job_latency_seconds_count{class="interactive",kind="issue"}`, n)
	grew(`qpki_sign_duration_seconds_count{kind="issue",signer="software"}`, n)
	grew(`qpki_signer_signatures_total{signer="software"}`, n)
	grew(`qpki_http_requests_total{code="200",endpoint="POST /test/issue"}`, n)
	if after[`qpki_http_requests_total{code="200",endpoint="GET /metrics"}`] <= before[`qpki_http_requests_total{code="200",endpoint="GET /metrics"}`] {
		t.Error("scrapes of /metrics are not counted")
	}
	if after[`qpki_job_latency_seconds_sum{class="interactive",kind="issue"}`] <= before[`qpki_job_latency_seconds_sum{class="interactive",kind="issue"}`] {
		t.Error("job latency sum did not grow")
	}
	if after[`qpki_signer_busy_seconds_total{signer="software"}`] <= before[`qpki_signer_busy_seconds_total{signer="software"}`] {
		t.Error("the signer's busy time did not grow")
	}
	if after[`qpki_queue_up`] != 1 {
		t.Errorf("qpki_queue_up = %v", after[`qpki_queue_up`])
	}
	if got := after[`qpki_queue_results_total`] - before[`qpki_queue_results_total`]; got < n {
		t.Errorf("qpki_queue_results_total grew by %v, want ≥ %d", got, n)
	}
	name := server.QueueName(o.s.Core.CA)
	if _, ok := after[`qpki_queue_jobs{ca="`+name+`",class="interactive",state="pending"}`]; !ok {
		t.Errorf("no queue depth series for CA %s", name)
	}
	if after[`qpki_jobs_failed_total{kind="issue",profile="ec/tls-server"}`] != 0 {
		t.Error("failed jobs counted")
	}
	// An unknown path is counted under one label, not its own.
	o.get(t, "/no/such/path/"+strings.Repeat("x", 40))
	if got := o.scrape(t)[`qpki_http_requests_total{code="404",endpoint="unmatched"}`]; got != 1 {
		t.Errorf("unmatched 404s = %v, want 1", got)
	}
}

// TestRequestIDFlows follows one request's id from the HTTPS front-end
// through enroll and the queue to the worker's log line, and checks that
// no secret of the request is logged.
func TestRequestIDFlows(t *testing.T) {
	o := startObserved(t)
	const rid = "req-0123.abc"
	_, echoed := o.issue(t, "rid.example.com", rid)
	if echoed != rid {
		t.Errorf("X-Request-Id answered %q, want %q", echoed, rid)
	}
	_, generated := o.issue(t, "gen.example.com", "")
	if !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(generated) {
		t.Errorf("generated request id %q", generated)
	}
	// A header that could forge log lines is replaced, not echoed.
	_, replaced := o.issue(t, "bad.example.com", "evil\" injected=1")
	if replaced == "" || strings.ContainsAny(replaced, "\" =") {
		t.Errorf("unsafe request id echoed as %q", replaced)
	}
	deadline := time.Now().Add(10 * time.Second)
	var access, signed, recorded bool
	for !(access && signed && recorded) && time.Now().Before(deadline) {
		access, signed, recorded = false, false, false
		var jobs = map[string]bool{}
		lines := o.log.lines(t)
		for _, l := range lines {
			if l["request_id"] == rid && l["msg"] == "job signed" {
				signed = true
				jobs[l["job"].(string)] = true
			}
		}
		for _, l := range lines {
			switch {
			case l["msg"] == "http request" && l["request_id"] == rid:
				access = l["endpoint"] == "POST /test/issue" && l["status"] == float64(200) && l["path"] == "/test/issue"
			case l["msg"] == "job recorded" && jobs[fmt.Sprint(l["job"])]:
				recorded = l["state"] == "done"
			}
		}
		if !(access && signed && recorded) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !access || !signed || !recorded {
		t.Fatalf("request id %s: access log %v, worker %v, recorder %v\n%s", rid, access, signed, recorded, o.log)
	}
	for _, secret := range []string{"s3cret-query", "s3cret-header", "Bearer"} {
		if strings.Contains(o.log.String(), secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

// TestWorkerMetricsListener runs `qpki worker --metrics-listen` (the alias
// of --ops-listen) beside a
// serve that signs nothing itself: the worker signs the listener's
// certificate, and its own /metrics shows the signature and the queue.
func TestWorkerMetricsListener(t *testing.T) {
	e := newEnv(t)
	e.startServe(0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e.start("worker", "worker", "--ca-dir", e.caDir, "--data-dir", e.data, "--metrics-listen", addr)
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			m := parseMetrics(t, string(body))
			if m[`qpki_sign_duration_seconds_count{kind="issue",signer="software"}`] >= 1 {
				if m["qpki_queue_up"] != 1 || m[`qpki_signer_signatures_total{signer="software"}`] < 1 {
					t.Fatalf("worker metrics:\n%s", grepLines(string(body), "qpki_"))
				}
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(e.dir, "worker.log"))
			resp, _ := http.Get(url + "/metrics")
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("the worker's metrics never showed its signature (%v)\n%s\n%s", err, log, grepLines(string(body), "qpki_"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(url + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, err, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if p == "/readyz" && strings.TrimSpace(string(body)) != `{"queue":"ok"}` {
			t.Errorf("worker /readyz: %s", body)
		}
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
