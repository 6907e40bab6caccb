package jskv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/pkg/store"
)

// Store is a CA's certificate index, serial reservations, jobs and
// counters in JetStream key-value buckets.
type Store struct {
	ops
	certs, serials, jobs, meta jetstream.KeyValue
	ocsp                       jetstream.KeyValue // pre-signed OCSP responses (ocsp.go)
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.JobStore = (*Store)(nil)
)

const keyCRLNumber = "crl_number"

// Open binds to (creating when missing) the buckets of CA o.CA.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	s := &Store{ops: ops{o.Timeout}}
	for _, b := range []struct {
		kv     *jetstream.KeyValue
		suffix string
	}{{&s.certs, bucketCerts}, {&s.serials, bucketSerials}, {&s.jobs, bucketJobs}, {&s.meta, bucketMeta}, {&s.ocsp, bucketOCSP}} {
		kv, err := openBucket(ctx, js, BucketName(o.CA, b.suffix), o.Replicas)
		if err != nil {
			return nil, err
		}
		*b.kv = kv
	}
	return s, nil
}

// Close releases nothing: the NATS connection belongs to the caller.
func (s *Store) Close() error { return nil }

func serialKey(n *big.Int) string { return store.FormatSerial(n) }

func (s *Store) Reserve(serial *big.Int, jobID string) error {
	if jobID == "" {
		return errors.New("store: reservation without a job id")
	}
	return s.do(func(ctx context.Context) error { return s.reserve(ctx, serialKey(serial), jobID) })
}

// reserve claims a serial for a job; the same job may claim it again.
func (s *Store) reserve(ctx context.Context, k, jobID string) error {
	if _, err := s.certs.Get(ctx, k); err == nil {
		return store.ErrSerialInUse
	} else if !notFound(err) {
		return err
	}
	owner, created, err := createOrGet(ctx, s.serials, k, []byte(jobID))
	if err != nil || created || string(owner) == jobID {
		return err
	}
	return store.ErrSerialInUse
}

func (s *Store) Reservation(serial *big.Int) (string, error) {
	var job string
	err := s.do(func(ctx context.Context) error {
		var err error
		job, _, err = getString(ctx, s.serials, serialKey(serial))
		return err
	})
	return job, err
}

func (s *Store) PutCert(c *store.Cert) error {
	serial, err := store.ParseSerial(c.Serial)
	if err != nil {
		return err
	}
	val, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.do(func(ctx context.Context) error {
		k := serialKey(serial)
		owner, _, err := getString(ctx, s.serials, k)
		switch {
		case err == nil && owner != c.JobID:
			// Unless this very certificate went in already.
			if prev, perr := s.cert(ctx, k); perr == nil && store.SameCert(prev, c) {
				return nil
			}
			return store.ErrSerialInUse
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
		return s.createCert(ctx, k, c, val)
	})
}

// createCert writes a serial's certificate once: the one step that makes
// a serial issued. Writing the same certificate again is a no-op.
func (s *Store) createCert(ctx context.Context, k string, c *store.Cert, val []byte) error {
	old, created, err := createOrGet(ctx, s.certs, k, val)
	if err != nil || created {
		return err
	}
	prev := new(store.Cert)
	if err := json.Unmarshal(old, prev); err != nil {
		return fmt.Errorf("jskv: certificate %s: %w", k, err)
	}
	if store.SameCert(prev, c) {
		return nil
	}
	return store.ErrSerialInUse
}

func (s *Store) cert(ctx context.Context, k string) (*store.Cert, error) {
	c := new(store.Cert)
	if _, err := getJSON(ctx, s.certs, k, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Store) Cert(serial *big.Int) (*store.Cert, error) {
	var c *store.Cert
	err := s.do(func(ctx context.Context) error {
		var err error
		c, err = s.cert(ctx, serialKey(serial))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("certificate %s: %w", store.FormatSerial(serial), store.ErrNotFound)
	}
	return c, err
}

func (s *Store) List(f store.Filter) ([]*store.Cert, error) {
	if f.Now.IsZero() {
		f.Now = time.Now()
	}
	var out []*store.Cert
	err := s.do(func(ctx context.Context) error {
		out = nil
		return scan(ctx, s.certs, ">", func(_ string, v []byte, _ uint64) error {
			c := new(store.Cert)
			if err := json.Unmarshal(v, c); err != nil {
				return err
			}
			if f.Status == "" || c.Status(f.Now) == f.Status {
				out = append(out, c)
			}
			return nil
		})
	})
	store.SortByIssued(out)
	return out, err
}

func (s *Store) Revoke(serial *big.Int, r store.Revocation) (*store.Cert, error) {
	k := serialKey(serial)
	var c *store.Cert
	err := s.do(func(ctx context.Context) error {
		for {
			c = new(store.Cert)
			rev, err := getJSON(ctx, s.certs, k, c)
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("certificate %s: %w", k, store.ErrNotFound)
			}
			if err != nil {
				return err
			}
			if c.Revocation != nil {
				return fmt.Errorf("certificate %s: %w", k, store.ErrRevoked)
			}
			c.Revocation = &r
			val, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if _, err = s.certs.Update(ctx, k, val, rev); !conflict(err) {
				return err
			}
			if err := pause(ctx); err != nil {
				return err
			}
		}
	})
	return c, err
}

func (s *Store) NextCRLNumber() (*big.Int, error) {
	n := new(big.Int)
	err := s.do(func(ctx context.Context) error {
		for {
			n.SetInt64(0)
			e, err := s.meta.Get(ctx, keyCRLNumber)
			var rev uint64
			switch {
			case err == nil:
				n.SetBytes(e.Value())
				rev = e.Revision()
			case !notFound(err):
				return err
			}
			n.Add(n, big.NewInt(1))
			if rev == 0 {
				_, err = s.meta.Create(ctx, keyCRLNumber, n.Bytes())
			} else {
				_, err = s.meta.Update(ctx, keyCRLNumber, n.Bytes(), rev)
			}
			if !conflict(err) {
				return err
			}
			if err := pause(ctx); err != nil {
				return err
			}
		}
	})
	return n, err
}
