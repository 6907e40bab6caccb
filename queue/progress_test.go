package queue

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// redeliveredNow is what the server counts: jobs of a class delivered and
// not acked that were delivered more than once.
func redeliveredNow(t testing.TB, q *Queue, ca, class string) int {
	t.Helper()
	c, err := q.jobs.Consumer(testContext(t), jobConsumerName(ca, class))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.NumRedelivered
}

// A job handed out and worked on for several AckWaits (a throttle, a slow
// HSM), and the jobs held behind it meanwhile, are never redelivered
// while their worker lives: the consumer keeps them in progress.
func TestSlowJobsAreKeptInProgress(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	const n = 20
	for i := range n {
		if err := q.PublishJob(ctx, testJob(fmt.Sprintf("slow-%d", i), ClassBatch)); err != nil {
			t.Fatal(err)
		}
	}
	jc, err := w.Jobs(ctx, "root", ConsumeOptions{AckWait: time.Second, PollWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	first, err := jc.Next(ctx) // the others of its fetch are held
	if err != nil {
		t.Fatal(err)
	}
	// Work on it for four AckWaits, watching the server's count.
	for range 8 {
		time.Sleep(500 * time.Millisecond)
		if r := redeliveredNow(t, q, "root", ClassBatch); r != 0 {
			t.Fatalf("%d jobs redelivered while their worker was slow", r)
		}
	}
	seen := map[string]bool{first.Job.ID: true}
	done := func(d *Delivery) {
		if err := w.PublishResult(ctx, Result{JobID: d.Job.ID, CA: "root", Kind: KindIssue, OK: true}); err != nil {
			t.Fatal(err)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	done(first)
	for len(seen) < n {
		d, err := jc.Next(ctx)
		if err != nil {
			t.Fatalf("got %d of %d jobs: %v", len(seen), n, err)
		}
		if seen[d.Job.ID] || d.NumDelivered != 1 {
			t.Fatalf("job %s delivered again (delivery %d)", d.Job.ID, d.NumDelivered)
		}
		seen[d.Job.ID] = true
		done(d)
	}
	if total, again := jc.Received(); total != n || again != 0 {
		t.Fatalf("received %d messages, %d of them redelivered; want %d and 0", total, again, n)
	}
}

// The jobs of a worker that died (its connection gone without an ack)
// come back to another worker after AckWait, however long it was keeping
// them in progress before.
func TestDeadWorkersJobsComeBack(t *testing.T) {
	dir := t.TempDir()
	q := startQueue(t, dir)
	w := workerQueue(t, q)
	ctx := testContext(t)
	opts := ConsumeOptions{AckWait: time.Second, PollWait: 200 * time.Millisecond}
	dying, err := Connect(ctx, Options{EmbeddedDataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	djc, err := dying.Jobs(ctx, "root", opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := q.PublishJob(ctx, testJob(fmt.Sprintf("orphan-%d", i), ClassInteractive)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := djc.Next(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // kept in progress past AckWait
	dying.nc.Close()            // kill -9: no ack, no nak, no more progress

	jc, err := w.Jobs(ctx, "root", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	seen := map[string]bool{}
	for len(seen) < 3 {
		d, err := jc.Next(ctx)
		if err != nil {
			t.Fatalf("got %d of the dead worker's 3 jobs: %v", len(seen), err)
		}
		seen[d.Job.ID] = true
		if err := w.PublishResult(ctx, Result{JobID: d.Job.ID, CA: "root", Kind: KindIssue, OK: true}); err != nil {
			t.Fatal(err)
		}
		d.Ack()
	}
}

// A delivery held past MaxHold (a signer that hangs) is no longer kept in
// progress: it goes to another worker.
func TestHungDeliveryGoesBack(t *testing.T) {
	q := startQueue(t, t.TempDir())
	ctx := testContext(t)
	opts := ConsumeOptions{AckWait: time.Second, MaxHold: 2 * time.Second, PollWait: 200 * time.Millisecond}
	hung, err := q.Jobs(ctx, "root", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	other, err := q.Jobs(ctx, "root", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := q.PublishJob(ctx, testJob("hung", ClassInteractive)); err != nil {
		t.Fatal(err)
	}
	if _, err := hung.Next(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := other.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Job.ID != "hung" || d.NumDelivered != 2 {
		t.Fatalf("got %s (delivery %d), want the hung job's second delivery", d.Job.ID, d.NumDelivered)
	}
	d.Ack()
}

// A job published again (by the sweeper) whose first copy was signed is
// acked at its first delivery, without reaching a worker: the worker
// checks for a result when a job id comes back, not only on redelivery.
func TestRepublishedJobWithResultIsAcked(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	jc, err := w.Jobs(ctx, "root", ConsumeOptions{PollWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	if err := w.PublishResult(ctx, Result{JobID: "again", CA: "root", Kind: KindIssue, OK: true, Payload: Payload(`1`)}); err != nil {
		t.Fatal(err)
	}
	j := testJob("again", ClassInteractive)
	j.Republished = true
	if err := q.PublishJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	if d, err := jc.Next(short); err == nil {
		t.Fatalf("Next handed out %s although its result is stored", d.Job.ID)
	}
	waitFor(t, func() bool { return streamMsgs(t, q.jobs) == 0 }, "the republished job to be acked")
}
