package jskv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/pkg/store"
)

// CreateJob reserves the job's serial, then creates the job. A process
// that dies in between leaves a reservation that the retry of the same
// job (same id) claims again.
func (s *Store) CreateJob(j *store.Job) (*store.Job, bool, error) {
	if j.ID == "" {
		return nil, false, errors.New("store: job without an id")
	}
	val, err := json.Marshal(j)
	if err != nil {
		return nil, false, err
	}
	var existing *store.Job
	created := false
	err = s.do(func(ctx context.Context) error {
		existing, created = nil, false
		prev := new(store.Job)
		_, err := getJSON(ctx, s.jobs, j.ID, prev)
		switch {
		case err == nil:
			existing = prev
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if j.Serial != "" {
			serial, err := store.ParseSerial(j.Serial)
			if err != nil {
				return err
			}
			if err := s.reserve(ctx, serialKey(serial), j.ID); err != nil {
				return err
			}
		}
		old, ok, err := createOrGet(ctx, s.jobs, j.ID, val)
		if err != nil {
			return err
		}
		if !ok {
			// Created meanwhile by another front-end.
			existing = new(store.Job)
			return json.Unmarshal(old, existing)
		}
		created = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if existing != nil {
		if existing.RequestHash != j.RequestHash {
			return nil, false, fmt.Errorf("%w (key %q)", store.ErrKeyReused, j.Key)
		}
		return existing, false, nil
	}
	return j, created, nil
}

func (s *Store) Job(id string) (*store.Job, error) {
	j := new(store.Job)
	err := s.do(func(ctx context.Context) error {
		_, err := getJSON(ctx, s.jobs, id, j)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

func (s *Store) FinishJob(d store.Finished) (bool, error) {
	var first bool
	err := s.do(func(ctx context.Context) error {
		var err error
		first, err = s.finish(ctx, d)
		return err
	})
	return first, err
}

// finishParallel is how many outcomes of a batch are recorded at once:
// each is a few round trips to the bucket leaders.
const finishParallel = 32

// FinishJobs records the outcomes one by one, several at a time; there
// is no transaction across keys, so an error leaves the others recorded
// (recording is idempotent: a retry reports them as not first).
func (s *Store) FinishJobs(done []store.Finished) ([]bool, error) {
	first := make([]bool, len(done))
	errs := make([]error, len(done))
	sem := make(chan struct{}, finishParallel)
	var wg sync.WaitGroup
	for i, d := range done {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = s.do(func(ctx context.Context) error {
				var err error
				first[i], err = s.finish(ctx, d)
				return err
			})
		}()
	}
	wg.Wait()
	return first, errors.Join(errs...)
}

// finish records one outcome: the certificate first (created once per
// serial), then the job's state, compare-and-set on the queued record.
// The first outcome wins; when another front-end's recorder got there
// first, first is false.
func (s *Store) finish(ctx context.Context, d store.Finished) (bool, error) {
	for {
		j := new(store.Job)
		rev, err := getJSON(ctx, s.jobs, d.ID, j)
		if errors.Is(err, store.ErrNotFound) {
			return false, fmt.Errorf("job %s: %w", d.ID, store.ErrNotFound)
		}
		if err != nil {
			return false, err
		}
		if j.State != store.JobQueued {
			return false, nil // an earlier result won
		}
		if c := d.Cert; c != nil {
			if err := store.CheckJobCert(j, c); err != nil {
				return false, err
			}
			c.Origin = j.Origin
			serial, _ := store.ParseSerial(c.Serial)
			k := serialKey(serial)
			val, err := json.Marshal(c)
			if err != nil {
				return false, err
			}
			if err := s.createCert(ctx, k, c, val); errors.Is(err, store.ErrSerialInUse) {
				// Another certificate of this job (a redelivery signed
				// twice) went in first and is the one delivered; the
				// job is done with it.
				prev, perr := s.cert(ctx, k)
				if perr != nil || prev.JobID != d.ID || d.State != store.JobDone {
					return false, err
				}
			} else if err != nil {
				return false, err
			}
		}
		j.Finish(d, time.Now())
		val, err := json.Marshal(j)
		if err != nil {
			return false, err
		}
		_, err = s.jobs.Update(ctx, d.ID, val, rev)
		if err == nil {
			return true, nil
		}
		if !conflict(err) {
			return false, err
		}
		if err := pause(ctx); err != nil {
			return false, err
		}
		// The job changed under us: read it again (another recorder
		// finished it, or a retry updated it).
	}
}

// SetStreamSeqs updates each queued job, compare-and-set, so that a
// recorder finishing it meanwhile wins.
func (s *Store) SetStreamSeqs(seqs map[string]uint64) error {
	var errs []error
	for id, seq := range seqs {
		errs = append(errs, s.do(func(ctx context.Context) error {
			for {
				j := new(store.Job)
				rev, err := getJSON(ctx, s.jobs, id, j)
				if errors.Is(err, store.ErrNotFound) {
					return nil
				}
				if err != nil {
					return err
				}
				if j.State != store.JobQueued || j.StreamSeq == seq {
					return nil
				}
				j.StreamSeq = seq
				val, err := json.Marshal(j)
				if err != nil {
					return err
				}
				if _, err = s.jobs.Update(ctx, id, val, rev); err == nil || !conflict(err) {
					return err
				}
				if err := pause(ctx); err != nil {
					return err
				}
			}
		}))
	}
	return errors.Join(errs...)
}

func (s *Store) Jobs(state string) ([]*store.Job, error) {
	var out []*store.Job
	err := s.do(func(ctx context.Context) error {
		out = nil
		return scan(ctx, s.jobs, ">", func(_ string, v []byte, _ uint64) error {
			j := new(store.Job)
			if err := json.Unmarshal(v, j); err != nil {
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

// WatchFinished calls fn with the id of each job that leaves the queued
// state from now on, whichever front-end recorded it, until ctx is done:
// a front-end wakes its own waiters when another one's recorder got the
// result.
func (s *Store) WatchFinished(ctx context.Context, fn func(id string)) error {
	w, err := s.jobs.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("jskv: job watcher closed")
			}
			if e == nil {
				continue
			}
			var j struct {
				State string `json:"state"`
			}
			if json.Unmarshal(e.Value(), &j) == nil && j.State != "" && j.State != store.JobQueued {
				fn(e.Key())
			}
		}
	}
}
