package enroll

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

// Job returns a job's record.
func (s *Service) Job(id string) (*store.Job, error) { return s.jobs.Job(id) }

// Wait returns the job's result, waiting until it is recorded or ctx is
// done; then it returns ErrPending (an EST server answers 202, an ACME
// order stays processing).
//
// The recorder wakes the waiters of the jobs it records; with a store
// shared by several front-ends, so does a watch of the store for the jobs
// another front-end recorded. Wait also reads the store again every
// recheckEvery, so that a wake-up that never comes (a watch that fell
// behind or skipped an update) costs that much delay, not the whole wait.
func (s *Service) Wait(ctx context.Context, id string) (*Result, error) {
	var recheck *time.Timer
	defer func() {
		if recheck != nil {
			recheck.Stop()
		}
	}()
	for {
		ch := make(chan *Result, 1)
		s.mu.Lock()
		s.waiters[id] = append(s.waiters[id], ch)
		s.mu.Unlock()
		res, err := s.result(id)
		if err != nil || res != nil {
			s.forget(id, ch)
			return res, err
		}
		if recheck == nil {
			recheck = time.NewTimer(recheckEvery)
		} else {
			recheck.Reset(recheckEvery)
		}
		select {
		case res := <-ch:
			if res != nil {
				return res, nil
			}
		case <-recheck.C:
			s.forget(id, ch)
		case <-ctx.Done():
			s.forget(id, ch)
			return nil, ErrPending
		}
	}
}

// recheckEvery is how often Wait reads the store again while no wake-up
// came.
const recheckEvery = 2 * time.Second

func (s *Service) forget(id string, ch chan *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[id]
	for i, w := range ws {
		if w == ch {
			s.waiters[id] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(s.waiters[id]) == 0 {
		delete(s.waiters, id)
	}
}

// wake tells the waiters of a job that its result is recorded: they read
// it from the store.
func (s *Service) wake(id string) { s.wakeWith(id, nil) }

// wakeWith hands the waiters of a job the result just recorded (each its
// own copy), which spares each of them a read of the job and of its
// certificate; a nil res makes them read it.
func (s *Service) wakeWith(id string, res *Result) {
	s.swept(id)
	s.mu.Lock()
	ws := s.waiters[id]
	delete(s.waiters, id)
	s.mu.Unlock()
	for _, ch := range ws {
		if res != nil {
			cp := *res
			ch <- &cp
		} else {
			ch <- nil
		}
	}
}

// result returns the recorded outcome of a job, or nil while it is queued.
func (s *Service) result(id string) (*Result, error) {
	j, err := s.jobs.Job(id)
	if err != nil {
		return nil, err
	}
	if j.State == store.JobQueued {
		return nil, nil
	}
	res := &Result{JobID: id, State: j.State, Error: j.Error, DER: j.Result}
	if j.State == store.JobDone && j.Serial != "" {
		serial, err := store.ParseSerial(j.Serial)
		if err != nil {
			return nil, err
		}
		if res.Cert, err = s.store.Cert(serial); err != nil {
			return nil, fmt.Errorf("job %s is done but its certificate is missing: %w", id, err)
		}
		res.DER = res.Cert.DER
	}
	return res, nil
}

// Err turns a failed result into an error.
func (r *Result) Err() error {
	if r.State == store.JobFailed {
		return errors.New(r.Error)
	}
	return nil
}

func decodePublicKey(data []byte) ([]byte, error) {
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("unexpected PEM block %q, want PUBLIC KEY", block.Type)
		}
		return block.Bytes, nil
	}
	if len(data) == 0 || data[0] != 0x30 {
		return nil, errors.New("public key is neither PEM nor DER")
	}
	return data, nil
}

// KeyJob returns the job of an idempotency key's latest attempt (a
// SCEP CertPoll names its transaction, not the job id).
func (s *Service) KeyJob(key string) (*store.Job, error) {
	var last *store.Job
	for n := 1; n <= maxAttempts; n++ {
		j, err := s.jobs.Job(JobID(s.caName, attemptKey(key, n)))
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		last = j
	}
	if last == nil {
		return nil, store.ErrNotFound
	}
	return last, nil
}
