// Package jskv keeps a CA's store in JetStream key-value buckets, so that
// several `qpki serve` front-ends on a NATS cluster share one certificate
// index, one set of serial reservations and jobs, and one set of ACME
// objects. It implements store.Store, store.JobStore and store.ACMEStore;
// bbolt (package store) stays the embedded default.
//
// A bucket has no transactions across keys, so every change is built from
// single-key compare-and-set steps: Create for create-if-absent, Update
// with the revision that was read for read-modify-write (retried when
// another writer got in first). The order of the steps is chosen so that
// a process dying between two of them leaves nothing a retry cannot
// finish: a serial's certificate key is created once and never replaced,
// so no serial is ever issued twice.
//
// The buckets of CA <ca> (its queue name):
//
//	QPKI_<ca>_CERTS   serial (lowercase hex) → store.Cert
//	QPKI_<ca>_SERIALS serial → job id that reserved it
//	QPKI_<ca>_JOBS    job id → store.Job
//	QPKI_<ca>_META    counters (crl_number)
//	QPKI_<ca>_ACME    ACME objects and their indexes, by key prefix
//	QPKI_<ca>_OCSP    <hash>.<serial> → store.OCSPResponse (pre-signed)
//
// Reads go to each bucket's stream leader (direct gets, which a lagging
// follower may answer, are turned off), so a process reads what any other
// process wrote before.
package jskv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/pkg/store"
)

// Options name and shape the buckets.
type Options struct {
	// CA is the CA's name in bucket names ([A-Za-z0-9_-], the queue name).
	CA string
	// Replicas of each bucket: 1 on a single server, 3 on a cluster.
	Replicas int
	// Timeout bounds one store operation (default 10 s), retries
	// included.
	Timeout time.Duration
	// Instance names this process among the front-ends sharing the ACME
	// bucket; the nonces it saves at a clean shutdown are its own.
	Instance string
}

// Bucket name suffixes.
const (
	bucketCerts   = "CERTS"
	bucketSerials = "SERIALS"
	bucketJobs    = "JOBS"
	bucketMeta    = "META"
	bucketACME    = "ACME"
	bucketOCSP    = "OCSP"
)

var caName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (o *Options) check() error {
	if !caName.MatchString(o.CA) {
		return fmt.Errorf("jskv: CA name %q: want 1 to 64 of [A-Za-z0-9_-]", o.CA)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return fmt.Errorf("jskv: %d replicas, want 1 to 5", o.Replicas)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return nil
}

// BucketName is the name of one of a CA's buckets.
func BucketName(ca, suffix string) string { return "QPKI_" + ca + "_" + suffix }

// openBucket binds to a bucket, creating it when missing, with direct
// gets off: a read must see every write acknowledged before it. Several
// front-ends may start at once; the cluster may be electing leaders:
// transient failures are retried for up to a minute.
func openBucket(ctx context.Context, js jetstream.JetStream, name string, replicas int) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var kv jetstream.KeyValue
	err := retry(ctx, func(ctx context.Context) error {
		var err error
		kv, err = bindBucket(ctx, js, name, replicas)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jskv: bucket %s: %w", name, err)
	}
	return kv, nil
}

func bindBucket(ctx context.Context, js jetstream.JetStream, name string, replicas int) (jetstream.KeyValue, error) {
	stream, err := js.Stream(ctx, "KV_"+name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// The stream a key-value bucket of history 1 is, as nats.go
		// declares it, but with direct gets off from the start.
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:              "KV_" + name,
			Description:       "qpki store",
			Subjects:          []string{"$KV." + name + ".>"},
			MaxMsgsPerSubject: 1,
			MaxBytes:          -1,
			MaxMsgSize:        -1,
			Storage:           jetstream.FileStorage,
			Replicas:          replicas,
			AllowRollup:       true,
			DenyDelete:        true,
			Duplicates:        2 * time.Minute,
			MaxMsgs:           -1,
			MaxConsumers:      -1,
			Discard:           jetstream.DiscardNew,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			stream, err = js.Stream(ctx, "KV_"+name) // another front-end was first
		}
	}
	if err != nil {
		return nil, err
	}
	if cfg := stream.CachedInfo().Config; cfg.AllowDirect {
		// Created by other means (nats kv add): turn direct gets off.
		cfg.AllowDirect = false
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("turning direct gets off: %w", err)
		}
	}
	return js.KeyValue(ctx, name)
}

// retry runs fn until it succeeds, fails for good, or ctx ends.
func retry(ctx context.Context, fn func(ctx context.Context) error) error {
	return retryEach(ctx, 10*time.Second, 50*time.Millisecond, 2*time.Second, fn)
}

// retryEach is retry with each attempt given at most attempt, and the
// pause between attempts growing from first to at most most.
func retryEach(ctx context.Context, attempt, first, most time.Duration, fn func(ctx context.Context) error) error {
	delay := first
	for {
		try, cancel := context.WithTimeout(ctx, attempt)
		err := fn(try)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, most)
	}
}

// ops runs store operations against the cluster with a deadline and
// retries while the cluster is briefly unavailable (a leader election).
type ops struct {
	timeout time.Duration
}

func (o ops) do(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	return retryEach(ctx, min(o.timeout, 5*time.Second), 20*time.Millisecond, time.Second, fn)
}

// transient errors are worth a retry: no leader yet, no responder, a
// request lost with a node.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected)
}

func notFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// conflict is a compare-and-set that lost: the key exists (Create) or
// changed since it was read (Update).
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// getJSON decodes a key's value into v and returns its revision, or
// store.ErrNotFound.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if notFound(err) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("jskv: %s: %w", key, err)
	}
	return e.Revision(), nil
}

// getString returns a key's value as a string, or store.ErrNotFound.
func getString(ctx context.Context, kv jetstream.KeyValue, key string) (string, uint64, error) {
	e, err := kv.Get(ctx, key)
	if notFound(err) {
		return "", 0, store.ErrNotFound
	}
	if err != nil {
		return "", 0, err
	}
	return string(e.Value()), e.Revision(), nil
}

// scan calls fn with every live value under the key filter (">" for
// all), through one ordered consumer rather than a read per key.
//
// The consumer may run on a replica that lags behind the leader. A scan
// of the whole bucket checks that it saw the bucket's last sequence as
// the leader knows it, and starts again when it did not; a filtered scan
// may miss the latest writes.
func scan(ctx context.Context, kv jetstream.KeyValue, filter string, fn func(key string, value []byte, rev uint64) error) error {
	var want uint64
	if filter == ">" {
		st, err := kv.Status(ctx)
		if err != nil {
			return err
		}
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
			want = bs.StreamInfo().State.LastSeq
		}
	}
	// A bucket whose deletion markers were purged may never show its
	// last sequence: give up waiting after a while.
	for try := 0; ; try++ {
		type kvEntry struct {
			key   string
			value []byte
			rev   uint64
		}
		var got []kvEntry
		seen, err := watchInitial(ctx, kv, filter, func(e jetstream.KeyValueEntry) {
			if e.Operation() == jetstream.KeyValuePut {
				got = append(got, kvEntry{e.Key(), e.Value(), e.Revision()})
			}
		})
		if err != nil {
			return err
		}
		if seen >= want || try == 50 {
			for _, e := range got {
				if err := fn(e.key, e.value, e.rev); err != nil {
					return err
				}
			}
			return nil
		}
		if err := pause(ctx); err != nil {
			return err
		}
	}
}

// watchInitial feeds fn the current entries (deletions included) and
// returns the highest revision seen.
func watchInitial(ctx context.Context, kv jetstream.KeyValue, filter string, fn func(jetstream.KeyValueEntry)) (uint64, error) {
	w, err := kv.Watch(ctx, filter)
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return 0, errors.New("jskv: watcher closed")
			}
			if e == nil {
				return seen, nil // the initial values are all in
			}
			seen = max(seen, e.Revision())
			fn(e)
		}
	}
}

// token encodes any string as one key token: key tokens allow only
// [-/_=.a-zA-Z0-9] and no empty token.
func token(s string) string {
	if s == "" {
		return "_"
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

func untoken(t string) (string, error) {
	if t == "_" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(t, "="))
	return string(b), err
}

func key(parts ...string) string {
	for i, p := range parts[1:] {
		parts[i+1] = token(p)
	}
	return strings.Join(parts, ".")
}

// createOrGet creates k with val (created true), or returns the value
// already there. On a replicated bucket a create can be refused because
// of another writer's create still in flight, before that one can be
// read: then it tries again until one of the two shows.
func createOrGet(ctx context.Context, kv jetstream.KeyValue, k string, val []byte) (existing []byte, created bool, err error) {
	for delay := 2 * time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		_, err := kv.Create(ctx, k, val)
		if err == nil {
			return nil, true, nil
		}
		if !conflict(err) {
			return nil, false, err
		}
		e, err := kv.Get(ctx, k)
		if err == nil {
			return e.Value(), false, nil
		}
		if !notFound(err) {
			return nil, false, err
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// pause spaces out the retries of a compare-and-set that lost: the
// winner's write may still be in flight.
func pause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(1+rand.IntN(5)) * time.Millisecond):
		return nil
	}
}
