// Package metrics holds qpki's Prometheus metrics: the jobs that go through
// the pipeline, the queue's depth, latencies from submission to record and
// of each signature, the signers' rate and errors, and the HTTPS requests of
// the front-ends.
//
// It is a leaf package (the standard library and the Prometheus client
// only): enroll, worker and server report to it through small interfaces
// of their own, which *Metrics satisfies. Every method is safe on a nil
// *Metrics, which records nothing.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

const namespace = "qpki"

// Latency buckets, in seconds. A file-key ECDSA signature takes tens of
// microseconds, an HSM's ML-DSA one milliseconds; a batch job may wait in
// the queue for minutes.
var (
	signBuckets = prometheus.ExponentialBuckets(0.00005, 2.5, 14)                           // 50µs … ~7.5 min
	jobBuckets  = prometheus.ExponentialBuckets(0.001, 2.5, 16)                             // 1ms … ~15 min
	httpBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60} // long polls wait
)

// Metrics is one process's set of metrics and the registry that exposes
// them.
type Metrics struct {
	reg *prometheus.Registry

	submitted   *prometheus.CounterVec
	signed      *prometheus.CounterVec
	failed      *prometheus.CounterVec
	forged      *prometheus.CounterVec
	jobLatency  *prometheus.HistogramVec
	signLatency *prometheus.HistogramVec
	signatures  *prometheus.CounterVec
	signErrors  *prometheus.CounterVec
	signerBusy  *prometheus.CounterVec
	httpCount   *prometheus.CounterVec
	httpLatency *prometheus.HistogramVec
	queue       *queueCollector
}

// New returns a fresh set of metrics in its own registry, with the Go
// runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "jobs_submitted_total",
			Help: "Jobs accepted by enroll and published to the queue, by kind, profile and class.",
		}, []string{"kind", "profile", "class"}),
		signed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "jobs_signed_total",
			Help: "Jobs recorded as done (certificate, CRL or token signed), by kind and profile.",
		}, []string{"kind", "profile"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "jobs_failed_total",
			Help: "Jobs recorded as failed (refused by the worker's policy check or dead-lettered), by kind and profile.",
		}, []string{"kind", "profile"}),
		forged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "forged_results_total",
			Help: "Results the recorder refused because they do not verify under the CA's key or do not match their job (dead-lettered; the job waits for its genuine result), by kind. Any increase is an alarm: someone holding queue credentials publishes results.",
		}, []string{"kind"}),
		jobLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "job_latency_seconds",
			Help:    "Time from submission to the recorded result, by kind and class.",
			Buckets: jobBuckets,
		}, []string{"kind", "class"}),
		signLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "sign_duration_seconds",
			Help:    "Time a worker spends on one job's signature (policy re-check and signing, without the rate limiter's wait), by kind and signer.",
			Buckets: signBuckets,
		}, []string{"kind", "signer"}),
		signatures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "signer_signatures_total",
			Help: "Signatures made, by signer (key storage type and token label).",
		}, []string{"signer"}),
		signErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "signer_errors_total",
			Help: "Signer failures (the job is retried on a fresh session), by signer.",
		}, []string{"signer"}),
		signerBusy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "signer_busy_seconds_total",
			Help: "Time signer sessions spent signing, by signer: its rate over the number of sessions is how busy the queue keeps them.",
		}, []string{"signer"}),
		httpCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTPS requests, by endpoint (the route pattern that matched) and status code.",
		}, []string{"endpoint", "code"}),
		httpLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "HTTPS request duration, by endpoint.",
			Buckets: httpBuckets,
		}, []string{"endpoint"}),
		queue: newQueueCollector(),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.submitted, m.signed, m.failed, m.forged, m.jobLatency, m.signLatency,
		m.signatures, m.signErrors, m.signerBusy, m.httpCount, m.httpLatency, m.queue,
	)
	return m
}

// Registry is where the metrics live, for adding more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text (or OpenMetrics)
// format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:            m.reg, // counts its own scrape errors
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// JobSubmitted counts a new job published by enroll (enroll.Observer).
func (m *Metrics) JobSubmitted(kind, profile, class string) {
	if m == nil {
		return
	}
	m.submitted.WithLabelValues(kind, profile, class).Inc()
}

// JobRecorded counts a job's first recorded result and observes the time
// since it was submitted.
func (m *Metrics) JobRecorded(kind, profile, class string, ok bool, sinceSubmit time.Duration) {
	if m == nil {
		return
	}
	if ok {
		m.signed.WithLabelValues(kind, profile).Inc()
	} else {
		m.failed.WithLabelValues(kind, profile).Inc()
	}
	m.jobLatency.WithLabelValues(kind, class).Observe(sinceSubmit.Seconds())
}

// ForgedResult counts a result the recorder refused as forged.
func (m *Metrics) ForgedResult(kind string) {
	if m == nil {
		return
	}
	m.forged.WithLabelValues(kind).Inc()
}

// ForgedResults is the number of forged results counted so far.
func (m *Metrics) ForgedResults() float64 {
	if m == nil {
		return 0
	}
	ch := make(chan prometheus.Metric, 16)
	go func() { m.forged.Collect(ch); close(ch) }()
	var total float64
	for c := range ch {
		var out dto.Metric
		if c.Write(&out) == nil {
			total += out.GetCounter().GetValue()
		}
	}
	return total
}

// SignerBusy adds the time one signature held a session of signer
// (worker.Observer).
func (m *Metrics) SignerBusy(signer string, held time.Duration) {
	if m == nil {
		return
	}
	m.signerBusy.WithLabelValues(signer).Add(held.Seconds())
}

// SignerBusySeconds returns the time a signer's sessions have spent
// signing so far.
func (m *Metrics) SignerBusySeconds(signer string) float64 {
	var out dto.Metric
	if m == nil || m.signerBusy.WithLabelValues(signer).Write(&out) != nil {
		return 0
	}
	return out.GetCounter().GetValue()
}

// Signed reports one signature attempt of a worker (worker.Observer): err
// is nil when the signer signed, else the signer's failure.
func (m *Metrics) Signed(kind, signer string, elapsed time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.signErrors.WithLabelValues(signer).Inc()
		return
	}
	m.signatures.WithLabelValues(signer).Inc()
	m.signLatency.WithLabelValues(kind, signer).Observe(elapsed.Seconds())
}
