package enroll

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// RecordBatch commits a batch of results as Record does, but the issued
// certificates of the batch go in with one audit write and one store
// transaction: the recorder is the one writer, and one fsync per result
// would make it the pipeline's bottleneck. Other results (failures, CRLs,
// tokens, generated keys) are recorded one by one. It returns one error
// per result; a result whose error is nil is recorded (or was a duplicate
// to drop), one whose error is a ForgedError was refused.
func (s *Service) RecordBatch(rs []queue.Result) []error {
	errs := make([]error, len(rs))
	// The first result of each job wins, within the batch as across
	// batches; the batch holds its jobs' locks throughout, so that a
	// concurrent Record of the same job cannot audit it a second time.
	first := make([]int, 0, len(rs))
	ids := make([]string, 0, len(rs))
	seen := make(map[string]bool, len(rs))
	for i, r := range rs {
		if !seen[r.JobID] {
			seen[r.JobID] = true
			first = append(first, i)
			ids = append(ids, r.JobID)
		}
	}
	unlock := s.lockJobs(ids)
	defer unlock()

	type pending struct {
		i   int
		j   *store.Job
		res jobspec.IssueResult
		rec *store.Cert
		err error
	}
	var checks []*pending
	for _, i := range first {
		r := rs[i]
		j, err := s.jobs.Job(r.JobID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			errs[i] = unknownJob(r)
			continue
		case err != nil:
			errs[i] = err
			continue
		case j.State != store.JobQueued:
			s.wake(r.JobID) // an earlier result won, maybe another front-end's
			continue
		case !r.OK || j.Kind != jobspec.KindIssue:
			errs[i] = s.record(r, j)
			continue
		}
		p := &pending{i: i, j: j}
		if err := jobspec.Decode(r.Payload, &p.res); err != nil {
			errs[i] = forged(j, "the result does not decode: %v", err)
			continue
		}
		checks = append(checks, p)
	}
	// The checks (a signature verification and the profile's template per
	// certificate) are independent: they run on every core, so that the
	// one recorder does not become the pipeline's bottleneck.
	parallel(len(checks), func(k int) {
		p := checks[k]
		p.rec, p.err = s.checkedCert(p.j, &p.res)
	})
	var bulk []*pending
	for _, p := range checks {
		switch {
		case IsForged(p.err):
			errs[p.i] = p.err // the job stays queued for a genuine result
		case p.err != nil:
			errs[p.i] = s.fail(p.j, rs[p.i], p.err)
		default:
			bulk = append(bulk, p)
		}
	}
	if len(bulk) == 0 {
		return errs
	}
	events := make([]audit.Event, len(bulk))
	done := make([]store.Finished, len(bulk))
	for k, p := range bulk {
		events[k] = audit.Event{Event: audit.EventIssue, Fields: ca.IssueFields(p.rec)}
		done[k] = store.Finished{ID: p.rec.JobID, State: store.JobDone, Cert: p.rec}
	}
	// Audited first, as in Record.
	if err := s.CA.AuditMany(events); err != nil {
		for _, p := range bulk {
			errs[p.i] = err
		}
		return errs
	}
	// A stored certificate is reported and handed to its waiters. When
	// another result was stored first (a redelivery recorded by another
	// front-end), the waiters read that one from the store instead.
	stored := func(p *pending, first bool) {
		s.recorded(p.j, rs[p.i], store.JobDone, "", first)
		if !first {
			s.wake(p.rec.JobID)
			return
		}
		s.wakeWith(p.rec.JobID, &Result{JobID: p.rec.JobID, State: store.JobDone, Cert: p.rec, DER: p.rec.DER})
		if s.OnCert != nil {
			s.OnCert(p.rec)
		}
	}
	isFirst, err := s.jobs.FinishJobs(done)
	if err == nil {
		for k, p := range bulk {
			stored(p, isFirst[k])
		}
		return errs
	}
	// One bad result must not hold back the others: record them one by
	// one, and fail the job whose certificate cannot be stored.
	for k, p := range bulk {
		f, err := s.jobs.FinishJob(done[k])
		switch {
		case err == nil:
			stored(p, f)
		case errors.Is(err, store.ErrSerialInUse):
			err = s.fail(p.j, rs[p.i], err)
		}
		errs[p.i] = err
	}
	return errs
}

// parallel runs f(0) to f(n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, f func(int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for k := range n {
			f(k)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int(next.Add(1) - 1); k < n; k = int(next.Add(1) - 1) {
				f(k)
			}
		}()
	}
	wg.Wait()
}
