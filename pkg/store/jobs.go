package store

import (
	"errors"
	"fmt"
	"math/big"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Job states.
const (
	JobQueued = "queued"
	JobDone   = "done"
	JobFailed = "failed"
)

// ErrKeyReused is returned when an idempotency key comes back with a
// different request.
var ErrKeyReused = errors.New("idempotency key already used for a different request")

// Job is enroll's record of a submitted job: what was asked, under which
// idempotency key, which serial it reserved, and how it ended.
type Job struct {
	ID          string    `json:"id"`
	Key         string    `json:"key"`
	RequestHash string    `json:"request_hash"`
	Kind        string    `json:"kind"`
	Class       string    `json:"class"`
	Profile     string    `json:"profile,omitempty"`
	Serial      string    `json:"serial,omitempty"`
	State       string    `json:"state"`
	Error       string    `json:"error,omitempty"`
	Created     time.Time `json:"created"`
	Finished    time.Time `json:"finished,omitempty"`
	// Payload is the job as published, kept to publish it again when the
	// client retries a job that was recorded but never reached the queue.
	Payload []byte `json:"payload,omitempty"`
	// Result is the kind-specific outcome of a non-certificate job (a CRL's
	// DER, a COSE message); certificates live in the certs bucket.
	Result []byte `json:"result,omitempty"`
	// Retryable marks a failure that was not the request's fault: the job
	// was dead-lettered, its deliveries spent on a signer that did not
	// work. The same request submitted again starts a new attempt.
	Retryable bool `json:"retryable,omitempty"`
	// Origin is who asked; FinishJob copies it into the certificate.
	Origin *Origin `json:"origin,omitempty"`
	// StreamSeq is where the queue's stream keeps the job (its sequence
	// at the last publish), so that the sweeper can tell a job waiting in
	// the stream from one the stream lost; 0 when not known.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
}

// JobStore is the part of the store the pipeline uses.
type JobStore interface {
	// CreateJob records a new job and reserves its serial (if any) in one
	// transaction. When a job with the same id exists, it is returned with
	// created false, or ErrKeyReused when its request differs.
	CreateJob(j *Job) (existing *Job, created bool, err error)
	Job(id string) (*Job, error)
	// FinishJob records a job's outcome, with its certificate when it made
	// one, in one transaction. The first outcome wins: a later one (a
	// redelivered job signed twice) is dropped and first is false.
	FinishJob(d Finished) (first bool, err error)
	// FinishJobs is FinishJob for many jobs in one transaction; first[i]
	// tells whether done[i] was recorded.
	FinishJobs(done []Finished) (first []bool, err error)
	// Jobs lists jobs in a state ("" for all).
	Jobs(state string) ([]*Job, error)
	// SetStreamSeqs records the stream sequences of queued jobs (job id →
	// sequence); a job that is no longer queued, or unknown, is skipped.
	SetStreamSeqs(seqs map[string]uint64) error
}

// Finished is one job's outcome for FinishJobs.
type Finished struct {
	ID        string
	State     string
	Error     string
	Result    []byte
	Cert      *Cert
	Retryable bool // a failure: see Job.Retryable
}

var bucketJobs = []byte("jobs")

func (s *Bolt) jobsBucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	if tx.Writable() {
		return tx.CreateBucketIfNotExists(bucketJobs)
	}
	b := tx.Bucket(bucketJobs)
	if b == nil {
		return nil, ErrNotFound
	}
	return b, nil
}

func (s *Bolt) CreateJob(j *Job) (*Job, bool, error) {
	var existing *Job
	created := false
	// Batch coalesces concurrent submissions into one transaction (one
	// fsync); fn may run more than once, so it resets what it reports.
	err := s.db.Batch(func(tx *bolt.Tx) error {
		existing, created = nil, false
		b, err := s.jobsBucket(tx)
		if err != nil {
			return err
		}
		if v := b.Get([]byte(j.ID)); v != nil {
			existing = new(Job)
			if err := decodeRecord(v, existing); err != nil {
				return err
			}
			if existing.RequestHash != j.RequestHash {
				return fmt.Errorf("%w (key %q)", ErrKeyReused, j.Key)
			}
			return nil
		}
		if j.Serial != "" {
			serial, err := ParseSerial(j.Serial)
			if err != nil {
				return err
			}
			k := serialKey(serial)
			if tx.Bucket(bucketCerts).Get(k) != nil || tx.Bucket(bucketReservations).Get(k) != nil {
				return ErrSerialInUse
			}
			if err := tx.Bucket(bucketReservations).Put(k, []byte(j.ID)); err != nil {
				return err
			}
		}
		val, err := encodeRecord(j)
		if err != nil {
			return err
		}
		created = true
		return b.Put([]byte(j.ID), val)
	})
	if err != nil {
		return nil, false, err
	}
	if existing != nil {
		return existing, false, nil
	}
	return j, created, nil
}

func (s *Bolt) Job(id string) (*Job, error) {
	var j *Job
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := s.jobsBucket(tx)
		if err != nil {
			return fmt.Errorf("job %s: %w", id, ErrNotFound)
		}
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("job %s: %w", id, ErrNotFound)
		}
		j = new(Job)
		return decodeRecord(v, j)
	})
	return j, err
}

func (s *Bolt) FinishJob(d Finished) (bool, error) {
	first, err := s.finish([]Finished{d}, true)
	if err != nil {
		return false, err
	}
	return first[0], nil
}

func (s *Bolt) FinishJobs(done []Finished) ([]bool, error) {
	return s.finish(done, false)
}

// finish records outcomes in one transaction: through Batch for a lone
// outcome (concurrent callers share a commit), directly for a batch.
func (s *Bolt) finish(done []Finished, batch bool) ([]bool, error) {
	first := make([]bool, len(done))
	fn := func(tx *bolt.Tx) error {
		clear(first)
		b, err := s.jobsBucket(tx)
		if err != nil {
			return err
		}
		for i, d := range done {
			ok, err := finishOne(tx, b, d)
			if err != nil {
				return err
			}
			first[i] = ok
		}
		return nil
	}
	var err error
	if batch {
		err = s.db.Batch(fn)
	} else {
		err = s.db.Update(fn)
	}
	return first, err
}

func finishOne(tx *bolt.Tx, b *bolt.Bucket, d Finished) (bool, error) {
	v := b.Get([]byte(d.ID))
	if v == nil {
		return false, fmt.Errorf("job %s: %w", d.ID, ErrNotFound)
	}
	j := new(Job)
	if err := decodeRecord(v, j); err != nil {
		return false, err
	}
	if j.State != JobQueued {
		return false, nil // an earlier result won
	}
	if cert := d.Cert; cert != nil {
		serial, err := ParseSerial(cert.Serial)
		if err != nil {
			return false, err
		}
		if j.Serial != "" && serial.Cmp(mustSerial(j.Serial)) != 0 {
			return false, fmt.Errorf("job %s: certificate serial %s is not the reserved %s", d.ID, cert.Serial, j.Serial)
		}
		k := serialKey(serial)
		certs := tx.Bucket(bucketCerts)
		if certs.Get(k) != nil {
			return false, ErrSerialInUse
		}
		cert.Origin = j.Origin
		val, err := encodeRecord(cert)
		if err != nil {
			return false, err
		}
		if err := certs.Put(k, val); err != nil {
			return false, err
		}
	}
	j.Finish(d, time.Now())
	val, err := encodeRecord(j)
	if err != nil {
		return false, err
	}
	return true, b.Put([]byte(d.ID), val)
}

func (s *Bolt) SetStreamSeqs(seqs map[string]uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	return s.db.Batch(func(tx *bolt.Tx) error {
		b, err := s.jobsBucket(tx)
		if err != nil {
			return err
		}
		for id, seq := range seqs {
			v := b.Get([]byte(id))
			if v == nil {
				continue
			}
			j := new(Job)
			if err := decodeRecord(v, j); err != nil {
				return err
			}
			if j.State != JobQueued || j.StreamSeq == seq {
				continue
			}
			j.StreamSeq = seq
			val, err := encodeRecord(j)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(id), val); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Bolt) Jobs(state string) ([]*Job, error) {
	var out []*Job
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := s.jobsBucket(tx)
		if err != nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			j := new(Job)
			if err := decodeRecord(v, j); err != nil {
				return err
			}
			if state == "" || j.State == state {
				out = append(out, j)
			}
			return nil
		})
	})
	return out, err
}

func mustSerial(s string) *big.Int {
	n, err := ParseSerial(s)
	if err != nil {
		return new(big.Int)
	}
	return n
}
