package enroll_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// streamJobs returns the jobs QPKI_JOBS holds, by job id, with their
// sequences.
func streamJobs(t *testing.T, q *queue.Queue) map[string][]uint64 {
	t.Helper()
	ctx := context.Background()
	s, err := q.JetStream().Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]uint64{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		j, err := queue.DecodeJob(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if mid := m.Header.Get(jetstream.MsgIDHeader); mid != j.ID && !strings.HasPrefix(mid, j.ID+"~lost-") {
			t.Fatalf("message %d: job %s under message id %s", seq, j.ID, m.Header.Get(jetstream.MsgIDHeader))
		}
		out[j.ID] = append(out[j.ID], seq)
	}
	return out
}

func deleteJobMsg(t *testing.T, q *queue.Queue, id string) {
	t.Helper()
	seqs := streamJobs(t, q)[id]
	if len(seqs) != 1 {
		t.Fatalf("job %s: %d messages in the stream", id, len(seqs))
	}
	s, err := q.JetStream().Stream(context.Background(), queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(context.Background(), seqs[0]); err != nil {
		t.Fatal(err)
	}
}

// The sweeper publishes again the queued jobs whose message the stream
// lost, and only those: not one the stream holds (under the sequence it
// knows, or found as a duplicate when it knows none), nor one whose
// result is stored and waits for the recorder.
func TestSweeperRepublishesLostJobsOnly(t *testing.T) {
	dir := t.TempDir()
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Sweep Root"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := queue.Start(ctx, queue.Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	svc, err := enroll.New(c, q) // no worker, no recorder: jobs stay queued
	if err != nil {
		t.Fatal(err)
	}
	submit := func(name string) string {
		id, err := svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, name+".example.com"), Key: name})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// Before the sweeper runs (as before a restart): no sequence noted.
	restartLost, restartHeld := submit("restart-lost"), submit("restart-held")
	deleteJobMsg(t, q, restartLost)

	const after = 300 * time.Millisecond
	swept := make(chan error, 1)
	go func() { swept <- svc.Sweep(ctx, q, enroll.SweepOptions{After: after}) }()
	time.Sleep(50 * time.Millisecond) // the first scan
	lost, signed, held := submit("lost"), submit("signed"), submit("held")
	heldSeq := streamJobs(t, q)[held]
	deleteJobMsg(t, q, lost)
	// Signed: a worker stored its result and acked; the recorder lags.
	wq, err := q.WorkerQueue(ctx) // only workers publish results
	if err != nil {
		t.Fatal(err)
	}
	defer wq.Close()
	if err := wq.PublishResult(ctx, queue.Result{JobID: signed, CA: enroll.QueueName(c), Kind: queue.KindIssue, Error: "not recorded yet"}); err != nil {
		t.Fatal(err)
	}
	deleteJobMsg(t, q, signed)

	deadline := time.Now().Add(20 * time.Second)
	for {
		got := streamJobs(t, q)
		if len(got[lost]) == 1 && len(got[restartLost]) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lost jobs not published again: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(10 * after) // every job checked several times
	got := streamJobs(t, q)
	want := map[string]int{lost: 1, restartLost: 1, held: 1, restartHeld: 1}
	for id, n := range want {
		if len(got[id]) != n {
			t.Errorf("job %s: %d messages, want %d", id, len(got[id]), n)
		}
	}
	if len(got[signed]) != 0 {
		t.Errorf("the signed job was published again (%v)", got[signed])
	}
	if got[held][0] != heldSeq[0] {
		t.Errorf("the held job moved from %d to %d", heldSeq[0], got[held][0])
	}
	s, _ := q.JetStream().Stream(ctx, queue.StreamJobs)
	for _, id := range []string{lost, restartLost} {
		m, err := s.GetMsg(ctx, got[id][0])
		if err != nil {
			t.Fatal(err)
		}
		if j, _ := queue.DecodeJob(m.Data); !j.Republished {
			t.Errorf("job %s published again unmarked", id)
		}
		if rec, err := svc.Job(id); err != nil || rec.StreamSeq != got[id][0] || rec.State != store.JobQueued {
			t.Errorf("job %s: record %+v (%v), want stream sequence %d", id, rec, err, got[id][0])
		}
	}
	cancel()
	<-swept
}
