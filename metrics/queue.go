package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueDepth counts one CA's jobs of one class.
type QueueDepth struct {
	CA, Class   string
	Pending     uint64 // stored, waiting for a worker
	InFlight    uint64 // delivered to a worker, not yet acked
	Redelivered uint64 // of those in flight, delivered more than once
}

// QueueSnapshot is what the queue collector reports on each scrape.
type QueueSnapshot struct {
	Depths      []QueueDepth
	DeadLetters uint64
	// ResultsSeq counts every result ever stored.
	ResultsSeq uint64
}

// QueueFunc reads the queue's state; it must return once ctx is done.
type QueueFunc func(ctx context.Context) (QueueSnapshot, error)

// queueCollector reads the queue on scrape, so that the figures are those
// of the cluster, whoever changed them.
type queueCollector struct {
	mu      sync.Mutex
	read    QueueFunc
	timeout time.Duration

	up, jobs, redelivered, dead, results *prometheus.Desc
}

func newQueueCollector() *queueCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "queue", name), help, labels, nil)
	}
	return &queueCollector{
		up:          d("up", "1 when the last scrape could read the queue's state, else 0."),
		jobs:        d("jobs", "Jobs in the queue, by CA, class (interactive, batch) and state (pending, in_flight).", "ca", "class", "state"),
		redelivered: d("redelivered_jobs", "Jobs in flight that were delivered more than once, by CA and class.", "ca", "class"),
		dead:        d("dead_letters", "Jobs given up after their last delivery, kept in the dead-letter stream."),
		results:     d("results_total", "Results ever stored in the results stream (its last sequence number)."),
	}
}

// WatchQueue makes each scrape read the queue through read, waiting at
// most timeout (default 2s).
func (m *Metrics) WatchQueue(read QueueFunc, timeout time.Duration) {
	if m == nil {
		return
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	m.queue.mu.Lock()
	m.queue.read, m.queue.timeout = read, timeout
	m.queue.mu.Unlock()
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.jobs
	ch <- c.redelivered
	ch <- c.dead
	ch <- c.results
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	read, timeout := c.read, c.timeout
	c.mu.Unlock()
	if read == nil {
		return // a process without a queue (a CLI pipeline)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := read(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, d := range s.Depths {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(d.Pending), d.CA, d.Class, "pending")
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(d.InFlight), d.CA, d.Class, "in_flight")
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(d.Redelivered), d.CA, d.Class)
	}
	ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(s.DeadLetters))
	ch <- prometheus.MustNewConstMetric(c.results, prometheus.CounterValue, float64(s.ResultsSeq))
}
