// Package server runs a CA's signing pipeline in one process: the queue
// (embedded NATS or a cluster), the recorder, the workers, the HTTPS
// listener where the front-ends join, and the local API on a Unix socket
// through which the CLI works while the server holds the CA.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/metrics"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/worker"
)

// Config is everything `qpki serve` takes.
type Config struct {
	CADir   string `yaml:"ca_dir"`
	DataDir string `yaml:"data_dir"`
	Listen  string `yaml:"listen"`
	// OpsListen is the plain-HTTP ops listener (/status, /status.json,
	// /metrics, /healthz, /readyz); "" runs none. The CLI's default is
	// DefaultOpsListen.
	OpsListen string `yaml:"ops_listen"`
	// TrustedProxies are the networks of load balancers whose forwarding
	// headers and PROXY protocol headers are believed (see package edge).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Workers is the number of signer sessions in this process; 0 runs no
	// worker (signing is left to `qpki worker` processes).
	Workers int     `yaml:"workers"`
	Rate    float64 `yaml:"rate"`
	// AckWait is how long a job delivered to a worker that died waits
	// before another worker takes it (queue.DefaultAckWait when 0).
	AckWait time.Duration `yaml:"ack_wait"`

	// Store is where the CA's records live: StoreBolt (the default) or
	// StoreJetStream, shared with other front-ends on the NATS cluster.
	Store string `yaml:"store"`

	NATSURL   string `yaml:"nats_url"`
	NATSCreds string `yaml:"nats_creds"`
	NATSNKey  string `yaml:"nats_nkey"`
	NATSCA    string `yaml:"nats_ca"`
	NATSCert  string `yaml:"nats_cert"`
	NATSKey   string `yaml:"nats_key"`

	HSMConfig string `yaml:"hsm_config"`
	TLSCert   string `yaml:"tls_cert"`
	TLSKey    string `yaml:"tls_key"`

	// PublishCRL keeps the CA's CRL fresh (regenerated through the queue
	// at half its life) and serves it at CRLPath.
	PublishCRL  bool `yaml:"publish_crl"`
	CRLDays     int  `yaml:"crl_days"`
	CRLOnRevoke bool `yaml:"crl_on_revoke"`
	// HTTPListen is the plain-HTTP listener, where crlDistributionPoints
	// and AIA OCSP URLs usually point: the CRL and the front-ends that
	// serve over plain HTTP (OCSP). CRLListen is its older name.
	HTTPListen string `yaml:"http_listen"`
	CRLListen  string `yaml:"crl_listen"`

	// Keys unlocks the CA's keys (passphrase from the environment).
	Keys ca.KeyOptions `yaml:"-"`
	// Consume shapes the job consumers.
	Consume queue.ConsumeOptions `yaml:"-"`
	Log     *slog.Logger         `yaml:"-"`
	// Metrics collects the process's metrics (a fresh set when nil).
	Metrics *metrics.Metrics `yaml:"-"`
	// SampleEvery is how often the status page's chart reads the queue
	// (DefaultSampleEvery when 0).
	SampleEvery time.Duration `yaml:"-"`
	// Sweep tunes the sweeper, which publishes again the queued jobs the
	// stream lost (enroll defaults when zero; tests shorten it).
	Sweep enroll.SweepOptions `yaml:"-"`
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8443"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New()
	}
	if c.HSMConfig != "" {
		c.Keys.HSMConfig = c.HSMConfig
	}
	if c.Consume.AckWait == 0 {
		c.Consume.AckWait = c.AckWait
	}
	if c.HTTPListen == "" {
		c.HTTPListen = c.CRLListen
	}
}

// Core is the pipeline without the network front: what `qpki serve` and
// an in-process `qpki batch` share.
type Core struct {
	CA     *ca.CA
	Queue  *queue.Queue
	Enroll *enroll.Service
	// Metrics is where the pipeline reports (served at /metrics).
	Metrics *metrics.Metrics
	cfg     Config
	// workerQueue is the in-process workers' own connection, as the
	// embedded server's worker user; nil when they share Queue.
	workerQueue *queue.Queue
	samples     *sampler // the queue's recent readings, for the status page

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

// StartCore opens the CA and its store, the queue, the recorder and the
// workers.
func StartCore(ctx context.Context, cfg Config) (*Core, error) {
	cfg.defaults()
	reserveProcsForSync()
	tuneGC()
	if err := checkStore(cfg); err != nil {
		return nil, err
	}
	c, err := ca.Open(cfg.CADir)
	if err != nil {
		return nil, err
	}
	if cfg.Store != StoreJetStream {
		if _, err := c.Store(); err != nil {
			return nil, err
		}
	}
	q, err := startQueue(ctx, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	shared, err := openSharedStore(ctx, cfg, c, q)
	if err != nil {
		q.Close()
		return nil, err
	}
	svc, err := enroll.New(c, q)
	if err != nil {
		q.Close()
		c.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	core := &Core{CA: c, Queue: q, Enroll: svc, cfg: cfg, ctx: ctx, cancel: cancel,
		Metrics: cfg.Metrics, samples: newSampler(cfg.SampleEvery)}
	svc.Observer = observer{cfg.Metrics, cfg.Log}
	core.watchShared(shared)
	cfg.Metrics.WatchQueue(QueueMetrics(q), 2*time.Second)
	name := enroll.QueueName(c)
	core.wg.Add(1)
	go func() {
		defer core.wg.Done()
		core.sample(ctx)
	}()
	core.wg.Add(1)
	go func() {
		defer core.wg.Done()
		o := cfg.Sweep
		if o.Log == nil {
			o.Log = cfg.Log.With("ca", name)
		}
		svc.Sweep(ctx, q, o)
	}()
	core.wg.Add(1)
	go func() {
		defer core.wg.Done()
		// The recorder: the one writer of results into the store.
		if err := q.ResultBatches(ctx, name, 256, core.record); err != nil && ctx.Err() == nil {
			core.fail(fmt.Errorf("recorder: %w", err))
		}
	}()
	if cfg.Workers > 0 {
		// The workers connect as the worker user: even in one process,
		// the signer cannot publish a job, the front-end cannot publish
		// a result.
		wq, err := q.WorkerQueue(ctx)
		if err != nil {
			core.Stop()
			return nil, err
		}
		if wq != q {
			core.workerQueue = wq
		}
		ready := make(chan error, 1)
		core.wg.Add(1)
		go func() {
			defer core.wg.Done()
			err := worker.Run(ctx, c, wq, worker.Options{Sessions: cfg.Workers, Rate: cfg.Rate, Keys: cfg.Keys,
				Consume: cfg.Consume, Log: cfg.Log, QueueName: name, Ready: ready, Observer: cfg.Metrics})
			if err != nil {
				core.fail(fmt.Errorf("workers: %w", err))
			}
		}()
		select {
		case err := <-ready:
			if err != nil {
				core.Stop()
				return nil, err
			}
		case <-time.After(2 * time.Minute):
			core.Stop()
			return nil, errors.New("workers did not start")
		}
	}
	return core, nil
}

// record commits a batch of results (one audit write and one store
// transaction for its certificates); recording is idempotent, so a
// failed batch is simply offered again. A forged result is refused.
func (core *Core) record(rs []queue.Result) error {
	errs := core.Enroll.RecordBatch(rs)
	for i, err := range errs {
		var f *enroll.ForgedError
		if errors.As(err, &f) {
			errs[i] = core.refuse(rs[i], f)
		}
	}
	return errors.Join(errs...)
}

// refuse raises the alarm about a forged result and moves it out of the
// results stream into the dead letters; its job stays queued, and the
// genuine result, when a worker publishes it, is recorded as usual. The
// log names the job and why, never the result's content.
func (core *Core) refuse(r queue.Result, f *enroll.ForgedError) error {
	core.cfg.Log.Error("ALARM: forged result refused: someone with queue credentials published a result that the CA did not sign for this job",
		"job", r.JobID, "kind", f.Kind, "reason", f.Reason, "request_id", r.RequestID, "stream_seq", r.Seq)
	if err := core.Queue.RefuseResult(core.ctx, r, f.Error()); err != nil {
		return err // offered again, and refused again
	}
	core.Metrics.ForgedResult(f.Kind)
	return nil
}

func (core *Core) fail(err error) {
	core.cfg.Log.Error("pipeline", "error", err)
	core.mu.Lock()
	core.errs = append(core.errs, err)
	core.mu.Unlock()
}

// Err reports a failure of the recorder or the workers.
func (core *Core) Err() error {
	core.mu.Lock()
	defer core.mu.Unlock()
	return errors.Join(core.errs...)
}

// Stop stops taking work, lets the workers finish what they hold, flushes
// results, closes the queue, the signer sessions and the store.
func (core *Core) Stop() {
	core.cancel()
	core.wg.Wait()
	if core.workerQueue != nil {
		core.workerQueue.Close()
	}
	core.Queue.Close()
	core.CA.Close()
}

// QueueDir is where a data dir keeps the embedded queue.
func QueueDir(dataDir string) string { return filepath.Join(dataDir, "queue") }

// QueueName is the CA's name in queue subjects.
func QueueName(c *ca.CA) string { return enroll.QueueName(c) }

func startQueue(ctx context.Context, cfg Config) (*queue.Queue, error) {
	o := queue.Options{
		DataDir: QueueDir(cfg.DataDir), NATSURL: cfg.NATSURL, CredsFile: cfg.NATSCreds,
		NKeySeedFile: cfg.NATSNKey, TLSCAFile: cfg.NATSCA, TLSCertFile: cfg.NATSCert, TLSKeyFile: cfg.NATSKey,
		Name: "qpki-serve", Logger: slog.New(minLevel{cfg.Log.Handler(), slog.LevelWarn}),
	}
	if cfg.NATSURL == "" {
		return queue.Start(ctx, o)
	}
	return queue.Connect(ctx, o)
}

// minLevel drops records below a level: the embedded NATS server's
// start-up banner is noise in qpki's log.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
