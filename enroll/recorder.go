package enroll

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"time"

	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// Record commits one result to the store: the recorder's job, done by the
// one process that holds the CA. The first result for a job wins; a
// duplicate from a redelivery is dropped. It wakes whoever waits. A result
// that does not verify under the CA's key or does not match its job is
// refused with a ForgedError and changes nothing: the caller dead-letters
// it, and the job waits for its genuine result.
func (s *Service) Record(r queue.Result) error {
	// One recording per job at a time, so that two results of the same
	// job (a redelivery signed twice) never both reach the audit log.
	unlock := s.lockJob(r.JobID)
	defer unlock()
	j, err := s.jobs.Job(r.JobID)
	if errors.Is(err, store.ErrNotFound) {
		return unknownJob(r)
	}
	if err != nil {
		return err
	}
	if j.State != store.JobQueued {
		return nil
	}
	return s.record(r, j)
}

// unknownGrace is how long a result whose job the store does not know is
// offered again before it is dropped.
const unknownGrace = time.Minute

// unknownJob decides about a result whose job the store does not know.
// A store shared by several front-ends (JetStream key-value, read from
// any replica) may not show a job created a moment ago through another
// front-end: dropping its result then lost the certificate for good, so
// the result is refused, to be offered again, until it is unknownGrace
// old. After that it is taken to be no job of this store's (submitted to
// another deployment under the same CA name) and dropped.
func unknownJob(r queue.Result) error {
	if time.Since(r.Finished) < unknownGrace {
		return fmt.Errorf("job %s: %w (not visible yet: the result will be offered again)", r.JobID, store.ErrNotFound)
	}
	return nil
}

// record commits r for its job j, still queued; the caller holds the
// job's lock.
func (s *Service) record(r queue.Result, j *store.Job) error {
	if !r.OK {
		if err := s.finish(j, r, store.JobFailed, r.Error, nil, nil); err != nil {
			return err
		}
		s.wake(r.JobID)
		return nil
	}
	switch j.Kind {
	case jobspec.KindIssue, jobspec.KindKeygen:
		// A keygen result's sealed key is not decoded: it stays in the
		// results stream, sealed to the front-end (SealedKey).
		var res jobspec.IssueResult
		if err := jobspec.Decode(r.Payload, &res); err != nil {
			return forged(j, "the result does not decode: %v", err)
		}
		rec, err := s.checkedCert(j, &res)
		if IsForged(err) {
			return err // the job stays queued for a genuine result
		}
		if err != nil {
			return s.fail(j, r, err)
		}
		if err := s.CA.Audit(audit.EventIssue, ca.IssueFields(rec)); err != nil {
			return err
		}
		if err := s.finish(j, r, store.JobDone, "", nil, rec); err != nil {
			return err
		}
	case jobspec.KindCRL:
		var res jobspec.CRLResult
		if err := jobspec.Decode(r.Payload, &res); err != nil {
			return forged(j, "the result does not decode: %v", err)
		}
		var req jobspec.CRL
		if err := jobspec.Decode(j.Payload, &req); err != nil {
			return s.fail(j, r, fmt.Errorf("the job's stored payload: %v", err))
		}
		if err := s.checkedCRL(j, &req, &res); err != nil {
			return err
		}
		if err := s.CA.Audit(audit.EventCRL, crlFields(j, &req, &res)); err != nil {
			return err
		}
		if err := s.CA.StoreShardCRL(res.Version, req.Shard, res.DER); err != nil {
			return err
		}
		if err := s.finish(j, r, store.JobDone, "", res.DER, nil); err != nil {
			return err
		}
	case jobspec.KindCOSE:
		if err := s.recordCOSE(j, r); err != nil {
			return err
		}
	case jobspec.KindOCSP:
		if err := s.recordOCSP(j, r); err != nil {
			return err
		}
	default:
		return s.fail(j, r, fmt.Errorf("unknown job kind %q", j.Kind))
	}
	s.wake(r.JobID)
	return nil
}

// crlFields are the audit fields of a CRL signed for job j: with the job
// and the CRL's hash, which make the entry's idempotency key (audit.Key),
// so that a redelivered result is not audited twice.
func crlFields(j *store.Job, req *jobspec.CRL, res *jobspec.CRLResult) map[string]any {
	f := ca.CRLFields(req)
	sum := sha256.Sum256(res.DER)
	f["job_id"], f["sha256"] = j.ID, hex.EncodeToString(sum[:])
	return f
}

// fail records that job j cannot be done (its request no longer passes the
// policy, the certificate cannot be stored): the job fails with err.
func (s *Service) fail(j *store.Job, r queue.Result, err error) error {
	if ferr := s.finish(j, r, store.JobFailed, err.Error(), nil, nil); ferr != nil {
		return ferr
	}
	s.wake(j.ID)
	return nil
}

// finish stores job j's outcome (FinishJob) and, when this call was the
// one that finished it, reports it (recorded).
func (s *Service) finish(j *store.Job, r queue.Result, state, errMsg string, result []byte, cert *store.Cert) error {
	s.approvals.take(j.ID) // no result will be checked against it
	// A dead letter is not the request's fault: the request may start over.
	first, err := s.jobs.FinishJob(store.Finished{ID: j.ID, State: state, Error: errMsg, Result: result, Cert: cert, Retryable: r.DeadLetter})
	if err != nil {
		return err
	}
	s.recorded(j, r, state, errMsg, first)
	if first && cert != nil && s.OnCert != nil {
		s.OnCert(cert)
	}
	return nil
}

// recorded brings j, as read before recording, to the state just stored
// and tells the observer, when this call was the one that finished it.
func (s *Service) recorded(j *store.Job, r queue.Result, state, errMsg string, first bool) {
	if !first {
		return
	}
	j.State, j.Error, j.Finished = state, errMsg, time.Now().UTC()
	if s.Observer != nil {
		s.Observer.JobRecorded(j, r.RequestID)
	}
}

// lockJob serializes the recording of one job id (striped locks: two
// jobs may share a stripe, which only costs a little parallelism).
func (s *Service) lockJob(id string) func() {
	m := &s.recording[s.stripe(id)]
	m.Lock()
	return m.Unlock
}

// lockJobs takes the locks of several jobs at once, in stripe order so
// that two batches never wait on each other.
func (s *Service) lockJobs(ids []string) func() {
	var stripes []int
	taken := make(map[int]bool)
	for _, id := range ids {
		if i := s.stripe(id); !taken[i] {
			taken[i] = true
			stripes = append(stripes, i)
		}
	}
	sort.Ints(stripes)
	for _, i := range stripes {
		s.recording[i].Lock()
	}
	return func() {
		for _, i := range stripes {
			s.recording[i].Unlock()
		}
	}
}

func (s *Service) stripe(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(len(s.recording)))
}
