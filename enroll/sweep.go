package enroll

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// The sweeper publishes again the jobs that are queued in the store but
// whose message the stream no longer holds: a crash between the store's
// commit and the publish, a publish that failed, an embedded server that
// lost its last writes in a power loss. Without it such a job waits for
// its client to retry, and an ACME order that answered "processing" may
// stay so for ever.
//
// It never causes a second signature. A job's stream sequence is noted at
// each publish (and saved in its record once it has been queued a
// second), so that the sweeper looks the message up where it was put; a
// job whose message is gone is published again only when no result is
// stored for it (a worker publishes the result before it acks, so a job
// that left the stream by being signed always has one). The copy is
// marked Republished, and a worker checks for a result before it signs
// such a copy, as it does for a redelivery.

// SweepOptions tune Sweep.
type SweepOptions struct {
	// After is how long a job stays queued before the sweeper checks that
	// the stream holds it (default 30 s).
	After time.Duration
	// Rescan is how often the whole store is read for queued jobs
	// (default 10 minutes): the jobs of other front-ends sharing the
	// store, or of an earlier run, which this process did not publish.
	// The first scan is at the start.
	Rescan time.Duration
	Log    *slog.Logger
}

// Defaults of SweepOptions.
const (
	DefaultSweepAfter  = 30 * time.Second
	DefaultSweepRescan = 10 * time.Minute
)

// seqSaveAfter is how long a job is queued before its stream sequence is
// written to its record: most jobs are recorded sooner, and need no
// second write.
const seqSaveAfter = time.Second

// JobLocator is the part of the queue the sweeper needs (*queue.Queue).
type JobLocator interface {
	PublishJobAt(ctx context.Context, job queue.Job) (queue.Published, error)
	RepublishJob(ctx context.Context, job queue.Job, lost uint64) (queue.Published, error)
	JobStored(ctx context.Context, seq uint64, id string) (bool, error)
	LookupResult(ctx context.Context, ca, id string) (queue.Result, error)
}

// seqPublisher is a Publisher that tells where the stream put a job.
type seqPublisher interface {
	PublishJobAt(ctx context.Context, job queue.Job) (queue.Published, error)
}

// sweeper holds the queued jobs being watched.
type sweeper struct {
	after time.Duration
	mu    sync.Mutex
	jobs  map[string]*swept
}

type swept struct {
	seq   uint64    // 0: not known
	since time.Time // published (or created, for a job found in the store)
	next  time.Time // when to check it
	wait  time.Duration
	saved bool // seq is in the job's record
}

// note watches a job just published at seq. A job published again where
// it was (a client's retry, answered as a duplicate) keeps its schedule:
// retries every few seconds must not put its check off for ever.
func (sw *sweeper) note(id string, seq uint64, now time.Time, after time.Duration) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if e := sw.jobs[id]; e != nil && (e.seq == seq || seq == 0) {
		return
	}
	sw.jobs[id] = &swept{seq: seq, since: now, next: now.Add(after), wait: after}
}

// found adds a queued job read from the store, unless it is watched.
func (sw *sweeper) found(j *store.Job, after time.Duration) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if _, ok := sw.jobs[j.ID]; !ok {
		sw.jobs[j.ID] = &swept{seq: j.StreamSeq, since: j.Created, next: j.Created.Add(after), wait: after, saved: j.StreamSeq != 0}
	}
}

func (sw *sweeper) done(id string) {
	sw.mu.Lock()
	delete(sw.jobs, id)
	sw.mu.Unlock()
}

// due returns the jobs to check now, with their sequences.
func (sw *sweeper) due(now time.Time) map[string]uint64 {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	out := map[string]uint64{}
	for id, e := range sw.jobs {
		if !now.Before(e.next) {
			out[id] = e.seq
		}
	}
	return out
}

// unsaved returns the sequences to write to the records, marking them
// written.
func (sw *sweeper) unsaved(now time.Time) map[string]uint64 {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	out := map[string]uint64{}
	for id, e := range sw.jobs {
		if !e.saved && e.seq != 0 && now.Sub(e.since) >= seqSaveAfter {
			out[id], e.saved = e.seq, true
		}
	}
	return out
}

// later puts off the next check of a job: by its wait, doubled each time
// up to limit when grow is set (a job that waits in the stream for long).
func (sw *sweeper) later(id string, now time.Time, grow bool, limit time.Duration) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if e := sw.jobs[id]; e != nil {
		if grow {
			e.wait = min(2*e.wait, limit)
		}
		e.next = now.Add(e.wait)
	}
}

// Sweep watches this CA's queued jobs until ctx is done, and publishes
// again those whose message the stream lost (see the comment above). It
// returns ctx's error. One Sweep runs per CA, in serve; several front-ends
// sharing a store may each run theirs (a job republished twice at once is
// stored once: same message id).
func (s *Service) Sweep(ctx context.Context, q JobLocator, o SweepOptions) error {
	if o.After <= 0 {
		o.After = DefaultSweepAfter
	}
	if o.Rescan <= 0 {
		o.Rescan = DefaultSweepRescan
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	sw := &sweeper{after: o.After, jobs: map[string]*swept{}}
	if !s.sweep.CompareAndSwap(nil, sw) {
		return errors.New("enroll: a sweeper already runs for this CA")
	}
	defer s.sweep.Store(nil)
	scan := func() {
		jobs, err := s.jobs.Jobs(store.JobQueued)
		if err != nil {
			o.Log.Warn("sweeper: reading queued jobs", "error", err)
			return
		}
		for _, j := range jobs {
			sw.found(j, o.After)
		}
	}
	scan()
	scanned := time.Now()
	t := time.NewTicker(max(o.After/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		now := time.Now()
		if now.Sub(scanned) >= o.Rescan {
			scan()
			scanned = now
		}
		if seqs := sw.unsaved(now); len(seqs) > 0 {
			if err := s.jobs.SetStreamSeqs(seqs); err != nil {
				o.Log.Warn("sweeper: saving stream sequences", "error", err)
			}
		}
		for id, seq := range sw.due(now) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.sweepOne(ctx, q, sw, id, seq, o)
		}
	}
}

// sweepOne checks one queued job and publishes it again if the stream
// lost it.
func (s *Service) sweepOne(ctx context.Context, q JobLocator, sw *sweeper, id string, seq uint64, o SweepOptions) {
	log := o.Log.With("job", id)
	now := time.Now()
	if seq != 0 {
		held, err := q.JobStored(ctx, seq, id)
		if err != nil {
			log.Warn("sweeper: looking the job up in the stream", "error", err)
			sw.later(id, now, false, o.Rescan)
			return
		}
		if held {
			// Waiting for a worker, or in one's hands (AckWait brings it
			// back from a dead one): look again, less and less often.
			sw.later(id, now, true, o.Rescan)
			return
		}
	}
	// Checked after the stream: a job that left it by being signed has
	// its result stored by then, and the record may be finished too.
	j, err := s.jobs.Job(id)
	if errors.Is(err, store.ErrNotFound) {
		sw.done(id)
		return
	}
	if err != nil {
		log.Warn("sweeper: reading the job", "error", err)
		sw.later(id, now, false, o.Rescan)
		return
	}
	if j.State != store.JobQueued {
		sw.done(id)
		return
	}
	if _, err := q.LookupResult(ctx, s.caName, id); err == nil {
		sw.later(id, now, false, o.Rescan) // the recorder has it to record
		return
	} else if !errors.Is(err, queue.ErrNoResult) {
		log.Warn("sweeper: looking up the job's result", "error", err)
		sw.later(id, now, false, o.Rescan)
		return
	}
	if len(j.Payload) == 0 {
		log.Error("sweeper: a queued job has no payload to publish again")
		sw.done(id)
		return
	}
	kind := j.Kind
	if kind == jobspec.KindKeygen {
		kind = queue.KindIssue // a keygen job travels as an issue job
	}
	job := queue.Job{V: queue.JobVersion, ID: id, CA: s.caName, Kind: kind, Class: j.Class,
		Submitted: now.UTC(), Payload: j.Payload, Republished: true}
	var at queue.Published
	if seq != 0 {
		at, err = q.RepublishJob(ctx, job, seq) // the copy of the message lost at seq
	} else {
		// Where the stream put the job is not known (a crash after the
		// commit): under the job's id, a job still in the stream is a
		// duplicate and tells its sequence, checked at the next round.
		at, err = q.PublishJobAt(ctx, job)
	}
	if err != nil {
		log.Warn("sweeper: publishing the job again", "error", err)
		sw.later(id, now, false, o.Rescan)
		return
	}
	switch {
	case at.Duplicate && seq == 0:
		log.Debug("sweeper: found the job's stream sequence", "seq", at.Seq)
	case at.Duplicate:
		log.Info("sweeper: another front-end published the job again", "seq", at.Seq)
	default:
		log.Warn("sweeper: published again a queued job that the stream no longer held", "seq", at.Seq, "lost", seq)
	}
	sw.note(id, at.Seq, now, o.After)
	if err := s.jobs.SetStreamSeqs(map[string]uint64{id: at.Seq}); err == nil {
		sw.mu.Lock()
		if e := sw.jobs[id]; e != nil {
			e.saved = true
		}
		sw.mu.Unlock()
	}
}

// published tells the sweeper, when one runs, where a job was put (seq 0
// when the publish failed: the sweeper then publishes it later).
func (s *Service) published(id string, seq uint64) {
	if sw := s.sweep.Load(); sw != nil {
		sw.note(id, seq, time.Now(), sw.after)
	}
}

// swept tells the sweeper that a job is recorded.
func (s *Service) swept(id string) {
	if sw := s.sweep.Load(); sw != nil {
		sw.done(id)
	}
}
