package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/audit/jsaudit"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
	"github.com/qpki/qpki/queue"
)

// Where `qpki serve` keeps the CA's records (Config.Store).
const (
	// StoreBolt is the embedded default: <ca-dir>/ca.db, <data-dir>/acme.db
	// and <ca-dir>/audit.jsonl, held by one process.
	StoreBolt = "bolt"
	// StoreJetStream keeps the certificate index, serial reservations,
	// jobs and ACME objects in JetStream key-value buckets and the audit
	// log in a stream, so that several serve front-ends on one NATS
	// cluster share them; so are the ACME nonces and external account
	// keys and the EST users.
	StoreJetStream = "jetstream"
)

func checkStore(cfg Config) error {
	switch cfg.Store {
	case "", StoreBolt, StoreJetStream:
		return nil
	}
	return fmt.Errorf("store %q: want %s or %s", cfg.Store, StoreBolt, StoreJetStream)
}

// openSharedStore points the CA at JetStream key-value buckets and an
// audit stream, replicated as the queue's streams are. It returns nil
// with the default store.
func openSharedStore(ctx context.Context, cfg Config, c *ca.CA, q *queue.Queue) (*jskv.Store, error) {
	if cfg.Store != StoreJetStream {
		return nil, nil
	}
	js := q.JetStream()
	replicas := 1
	if st, err := js.Stream(ctx, queue.StreamJobs); err == nil {
		replicas = st.CachedInfo().Config.Replicas
	}
	name := enroll.QueueName(c)
	st, err := jskv.Open(ctx, js, jskv.Options{CA: name, Replicas: replicas})
	if err != nil {
		return nil, err
	}
	log, err := jsaudit.Open(ctx, js, name, replicas)
	if err != nil {
		return nil, err
	}
	if err := c.UseStore(st, log); err != nil {
		return nil, err
	}
	return st, nil
}

// watchShared wakes this front-end's waiters for the jobs that other
// front-ends' recorders finish: the recorders share one consumer, so a
// result may be recorded by another process.
func (core *Core) watchShared(st *jskv.Store) {
	if st == nil {
		return
	}
	core.wg.Add(1)
	go func() {
		defer core.wg.Done()
		if err := st.WatchFinished(core.ctx, core.Enroll.Wake); err != nil {
			core.fail(fmt.Errorf("shared store: %w", err))
		}
	}()
}

// SharedACMEStore opens the ACME objects of the served CA in the shared
// JetStream store, for an ACME front-end mounted on svc; it returns nil
// when serve keeps the default store (the front-end opens acme.db).
func SharedACMEStore(ctx context.Context, cfg Config, svc *enroll.Service) (store.ACMEStore, error) {
	if cfg.Store != StoreJetStream {
		return nil, nil
	}
	js, o, err := sharedJetStream(ctx, svc)
	if err != nil {
		return nil, err
	}
	o.Instance = instanceName(cfg)
	return jskv.OpenACME(ctx, js, o)
}

// SharedNonces opens the ACME nonces that the front-ends sharing the
// store issue and redeem; nil with the default store (each front-end
// keeps its own).
func SharedNonces(ctx context.Context, cfg Config, svc *enroll.Service, lifetime time.Duration) (*jskv.Nonces, error) {
	if cfg.Store != StoreJetStream {
		return nil, nil
	}
	js, o, err := sharedJetStream(ctx, svc)
	if err != nil {
		return nil, err
	}
	n, err := jskv.OpenNonces(ctx, js, o, lifetime)
	if err != nil {
		return nil, err
	}
	n.Log = cfg.Log
	return n, nil
}

// SharedRecords opens one of the served CA's record buckets
// (jskv.BucketESTUsers, jskv.BucketEAB); nil with the default store
// (the front-end keeps the data dir's file).
func SharedRecords(ctx context.Context, cfg Config, svc *enroll.Service, suffix string) (*jskv.Records, error) {
	if cfg.Store != StoreJetStream {
		return nil, nil
	}
	js, o, err := sharedJetStream(ctx, svc)
	if err != nil {
		return nil, err
	}
	return jskv.OpenRecords(ctx, js, o, suffix)
}

// sharedJetStream is the queue's JetStream and the bucket options of the
// served CA, replicated as the queue's streams are.
func sharedJetStream(ctx context.Context, svc *enroll.Service) (jetstream.JetStream, jskv.Options, error) {
	q, ok := svc.Queue.(*queue.Queue)
	if !ok {
		return nil, jskv.Options{}, fmt.Errorf("store %s: the enrollment service has no NATS queue", StoreJetStream)
	}
	return q.JetStream(), jskv.Options{CA: enroll.QueueName(svc.CA), Replicas: StreamReplicas(ctx, q.JetStream())}, nil
}

// StreamReplicas is the replica count of the queue's job stream, which
// the shared buckets follow (1 when it cannot be read).
func StreamReplicas(ctx context.Context, js jetstream.JetStream) int {
	if st, err := js.Stream(ctx, queue.StreamJobs); err == nil {
		return st.CachedInfo().Config.Replicas
	}
	return 1
}

// instanceName tells this front-end from the others sharing the ACME
// bucket: the host and its data dir.
func instanceName(cfg Config) string {
	host, _ := os.Hostname()
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		dir = cfg.DataDir
	}
	sum := sha256.Sum256([]byte(host + "\x00" + dir))
	return host + "-" + hex.EncodeToString(sum[:6])
}
