package queue

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ClassStatus counts the jobs of one class.
type ClassStatus struct {
	Pending     uint64 `json:"pending"`     // stored, waiting for a worker (or for a nak delay)
	InFlight    uint64 `json:"in_flight"`   // delivered to a worker (signing, or fetched and held), not yet acked
	Redelivered uint64 `json:"redelivered"` // of those in flight, delivered more than once
}

// CAStatus counts the jobs of one CA.
type CAStatus struct {
	Interactive ClassStatus `json:"interactive"`
	Batch       ClassStatus `json:"batch"`
}

// Status is a snapshot of the queue, for qpki queue status.
type Status struct {
	Time        time.Time           `json:"time"`
	Replicas    int                 `json:"replicas"`
	Interactive ClassStatus         `json:"interactive"`
	Batch       ClassStatus         `json:"batch"`
	CAs         map[string]CAStatus `json:"cas"`
	DeadLetters uint64              `json:"dead_letters"` // stored in QPKI_DEAD
	Results     uint64              `json:"results"`      // stored in QPKI_RESULTS
	// ResultsSeq counts every result ever stored; it only grows, so two
	// snapshots give the signing rate (see ResultRate).
	ResultsSeq uint64 `json:"results_seq"`
}

// ResultRate is the number of results stored per second between an
// earlier snapshot and s.
func (s Status) ResultRate(earlier Status) float64 {
	dt := s.Time.Sub(earlier.Time).Seconds()
	if dt <= 0 || s.ResultsSeq < earlier.ResultsSeq {
		return 0
	}
	return float64(s.ResultsSeq-earlier.ResultsSeq) / dt
}

// CANames returns the CAs in s.CAs, sorted.
func (s Status) CANames() []string {
	names := make([]string, 0, len(s.CAs))
	for n := range s.CAs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Status reads the streams and the job consumers.
func (q *Queue) Status(ctx context.Context) (Status, error) {
	st := Status{Time: time.Now(), Replicas: q.opts.Replicas, CAs: make(map[string]CAStatus)}
	// Jobs stored per subject: those waiting and those in flight alike,
	// since a work-queue stream keeps a job until it is acked.
	info, err := q.jobs.Info(ctx, jetstream.WithSubjectFilter(jobsPrefix+".>"))
	if err != nil {
		return st, fmt.Errorf("queue: status of %s: %w", StreamJobs, err)
	}
	stored := make(map[string]*[2]uint64) // ca → per class
	for subj, n := range info.State.Subjects {
		ca, _, class, ok := parseJobSubject(subj)
		if !ok {
			continue
		}
		i := classIndex(class)
		if i < 0 {
			continue
		}
		if stored[ca] == nil {
			stored[ca] = new([2]uint64)
		}
		stored[ca][i] += n
	}
	inFlight := make(map[string]*[2]ClassStatus)
	lister := q.jobs.ListConsumers(ctx)
	for ci := range lister.Info() {
		ca, class, ok := parseJobFilter(ci.Config.FilterSubject)
		i := classIndex(class)
		if !ok || i < 0 {
			continue
		}
		if inFlight[ca] == nil {
			inFlight[ca] = new([2]ClassStatus)
		}
		inFlight[ca][i].InFlight += uint64(ci.NumAckPending)
		inFlight[ca][i].Redelivered += uint64(ci.NumRedelivered)
	}
	if err := lister.Err(); err != nil {
		return st, fmt.Errorf("queue: status of the job consumers: %w", err)
	}
	cas := make(map[string]bool)
	for ca := range stored {
		cas[ca] = true
	}
	for ca := range inFlight {
		cas[ca] = true
	}
	for ca := range cas {
		var s [2]ClassStatus
		for i := range classes {
			if f := inFlight[ca]; f != nil {
				s[i] = f[i]
			}
			if n := stored[ca]; n != nil && n[i] > s[i].InFlight {
				s[i].Pending = n[i] - s[i].InFlight
			}
		}
		st.CAs[ca] = CAStatus{Interactive: s[0], Batch: s[1]}
		add(&st.Interactive, s[0])
		add(&st.Batch, s[1])
	}

	ri, err := q.results.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("queue: status of %s: %w", StreamResults, err)
	}
	st.Results, st.ResultsSeq = ri.State.Msgs, ri.State.LastSeq
	di, err := q.dead.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("queue: status of %s: %w", StreamDead, err)
	}
	st.DeadLetters = di.State.Msgs
	return st, nil
}

func add(dst *ClassStatus, s ClassStatus) {
	dst.Pending += s.Pending
	dst.InFlight += s.InFlight
	dst.Redelivered += s.Redelivered
}

func classIndex(class string) int {
	for i, c := range classes {
		if c == class {
			return i
		}
	}
	return -1
}

// parseJobFilter splits qpki.jobs.<ca>.*.<class>.
func parseJobFilter(filter string) (ca, class string, ok bool) {
	ca, kind, class, ok := parseJobSubject(filter)
	if !ok || kind != "*" || strings.ContainsAny(ca, "*>") {
		return "", "", false
	}
	return ca, class, true
}
