package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startQueue(t testing.TB, dir string) *Queue {
	t.Helper()
	q, err := Start(testContext(t), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// workerQueue is q's in-process worker connection, as the worker user:
// only it may publish results.
func workerQueue(t testing.TB, q *Queue) *Queue {
	t.Helper()
	w, err := q.WorkerQueue(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func testJob(id, class string) Job {
	return Job{ID: id, CA: "root", Kind: KindIssue, Class: class, Payload: Payload(`{"csr":"x"}`)}
}

func streamMsgs(t testing.TB, s jetstream.Stream) uint64 {
	t.Helper()
	info, err := s.Info(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestStartDeclaresStreamsIdempotently(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	q, err := Start(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.PublishJob(ctx, testJob("j1", ClassBatch)); err != nil {
		t.Fatal(err)
	}
	// A second embedded server on the same store is refused while the
	// first runs.
	if _, err := Start(ctx, Options{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Start on a locked dir: err = %v", err)
	}
	q.Close()

	q, err = Start(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatalf("Start again on the same dir: %v", err)
	}
	defer q.Close()
	for _, want := range q.streamConfigs() {
		s, err := q.js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", want.Name, err)
		}
		got := s.CachedInfo().Config
		if got.Retention != want.Retention || got.Storage != jetstream.FileStorage ||
			got.Duplicates != want.Duplicates || got.MaxMsgSize != want.MaxMsgSize ||
			got.MaxMsgsPerSubject != want.MaxMsgsPerSubject || got.DiscardNewPerSubject != want.DiscardNewPerSubject {
			t.Errorf("stream %s config = %+v, want %+v", want.Name, got, want)
		}
	}
	if got := streamMsgs(t, q.jobs); got != 1 {
		t.Errorf("jobs after restart = %d, want 1", got)
	}
	// Declaring again on the running server changes nothing.
	if err := q.declareStreams(ctx); err != nil {
		t.Fatalf("declaring again: %v", err)
	}
}

func TestDuplicateJobIsStoredOnce(t *testing.T) {
	q := startQueue(t, t.TempDir())
	ctx := testContext(t)
	for range 2 {
		if err := q.PublishJob(ctx, testJob("dup-1", ClassInteractive)); err != nil {
			t.Fatal(err)
		}
	}
	if got := streamMsgs(t, q.jobs); got != 1 {
		t.Fatalf("stream holds %d jobs, want 1", got)
	}
}

func TestPublishJobRejectsBadJobs(t *testing.T) {
	q := startQueue(t, t.TempDir())
	ctx := testContext(t)
	big := testJob("big", ClassBatch)
	big.Payload = Payload(`"` + strings.Repeat("a", DefaultMaxMsgSize) + `"`)
	for name, j := range map[string]Job{
		"wildcard ca":   {ID: "a", CA: "root.*", Kind: KindIssue, Class: ClassBatch, Payload: Payload(`{}`)},
		"dot in id":     {ID: "a.b", CA: "root", Kind: KindIssue, Class: ClassBatch, Payload: Payload(`{}`)},
		"unknown kind":  {ID: "a", CA: "root", Kind: "sms", Class: ClassBatch, Payload: Payload(`{}`)},
		"unknown class": {ID: "a", CA: "root", Kind: KindIssue, Class: "urgent", Payload: Payload(`{}`)},
		"no payload":    {ID: "a", CA: "root", Kind: KindIssue, Class: ClassBatch},
		"version 2":     {V: 2, ID: "a", CA: "root", Kind: KindIssue, Class: ClassBatch, Payload: Payload(`{}`)},
		"too large":     big,
	} {
		if err := q.PublishJob(ctx, j); err == nil {
			t.Errorf("%s: PublishJob accepted %+v", name, j.ID)
		}
	}
	if got := streamMsgs(t, q.jobs); got != 0 {
		t.Fatalf("stream holds %d jobs, want 0", got)
	}
}

func TestInteractiveOvertakesBatch(t *testing.T) {
	q := startQueue(t, t.TempDir())
	ctx := testContext(t)
	for i := range 50 {
		if err := q.PublishJob(ctx, testJob(fmt.Sprintf("b%d", i), ClassBatch)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := q.PublishJob(ctx, testJob(fmt.Sprintf("i%d", i), ClassInteractive)); err != nil {
			t.Fatal(err)
		}
	}
	jc, err := q.Jobs(ctx, "root", ConsumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	for i := range 55 {
		d, err := jc.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := ClassBatch
		if i < 5 {
			want = ClassInteractive
		}
		if d.Job.Class != want {
			t.Fatalf("job %d is %s (%s), want %s", i, d.Job.ID, d.Job.Class, want)
		}
		if d.NumDelivered != 1 {
			t.Errorf("job %s delivered %d times", d.Job.ID, d.NumDelivered)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return streamMsgs(t, q.jobs) == 0 }, "acked jobs to leave the work queue")
}

func TestNextWaitsForJobsAndPrefersInteractive(t *testing.T) {
	q := startQueue(t, t.TempDir())
	ctx := testContext(t)
	jc, err := q.Jobs(ctx, "root", ConsumeOptions{PollWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()

	// Nothing queued: Next waits until ctx ends.
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	if d, err := jc.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on an empty queue = %v, %v", d, err)
	}

	// Several idle callers; jobs published while they wait reach them.
	got := make(chan string, 8)
	for range 4 {
		go func() {
			d, err := jc.Next(ctx)
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			d.Ack()
			got <- d.Job.ID
		}()
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	for i := range 4 {
		if err := q.PublishJob(ctx, testJob(fmt.Sprintf("w%d", i), ClassBatch)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for range 4 {
		select {
		case id := <-got:
			if !strings.HasPrefix(id, "w") || seen[id] {
				t.Fatalf("waiting Next got %q (seen %v)", id, seen)
			}
			seen[id] = true
		case <-ctx.Done():
			t.Fatal("waiting callers did not get the jobs")
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("idle callers took %v to get jobs", el)
	}
}

func TestRetryMovesJobToDeadLetters(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	jc, err := w.Jobs(ctx, "root", ConsumeOptions{MaxDeliver: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	if err := q.PublishJob(ctx, testJob("poison", ClassBatch)); err != nil {
		t.Fatal(err)
	}
	for attempt := uint64(1); attempt <= 3; attempt++ {
		d, err := jc.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.Job.ID != "poison" || d.NumDelivered != attempt {
			t.Fatalf("delivery %d: job %s, NumDelivered %d", attempt, d.Job.ID, d.NumDelivered)
		}
		if d.LastAttempt() != (attempt == 3) {
			t.Fatalf("delivery %d: LastAttempt = %v", attempt, d.LastAttempt())
		}
		if err := d.Retry(ctx, fmt.Errorf("HSM busy (attempt %d)", attempt), 0); err != nil {
			t.Fatal(err)
		}
	}
	dl, err := q.LookupDeadLetter(ctx, "root", "poison")
	if err != nil {
		t.Fatal(err)
	}
	if dl.Job == nil || dl.Job.ID != "poison" || dl.Error != "HSM busy (attempt 3)" || dl.Deliveries != 3 {
		t.Fatalf("dead letter = %+v", dl)
	}
	res, err := q.LookupResult(ctx, "root", "poison")
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || !res.DeadLetter || !strings.Contains(res.Error, "HSM busy (attempt 3)") {
		t.Fatalf("failure result = %+v", res)
	}
	all, err := q.DeadLetters(ctx, "", 10)
	if err != nil || len(all) != 1 || all[0].Job == nil || all[0].Job.ID != "poison" {
		t.Fatalf("DeadLetters = %+v, %v", all, err)
	}
	waitFor(t, func() bool { return streamMsgs(t, q.jobs) == 0 }, "the dead job to leave the work queue")
	st, err := q.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DeadLetters != 1 || st.Batch.Pending != 0 || st.Batch.InFlight != 0 {
		t.Fatalf("status = %+v", st)
	}
}

func TestJobWithoutDecisionIsDeadLettered(t *testing.T) {
	q := startQueue(t, t.TempDir())
	ctx := testContext(t)
	jc, err := q.Jobs(ctx, "root", ConsumeOptions{MaxDeliver: 2, PollWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	if err := q.PublishJob(ctx, testJob("crashy", ClassInteractive)); err != nil {
		t.Fatal(err)
	}
	// Two deliveries that end without a result, as when the worker dies.
	for range 2 {
		d, err := jc.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d.Nak(0)
	}
	// The third delivery is settled by Next itself.
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	if d, err := jc.Next(short); err == nil {
		t.Fatalf("Next handed out %s after MaxDeliver", d.Job.ID)
	}
	dl, err := q.LookupDeadLetter(ctx, "root", "crashy")
	if err != nil {
		t.Fatal(err)
	}
	if dl.Deliveries != 3 || !strings.Contains(dl.Error, "no result after 2 deliveries") {
		t.Fatalf("dead letter = %+v", dl)
	}
}

func TestMalformedJobIsDeadLettered(t *testing.T) {
	q := startQueue(t, t.TempDir())
	ctx := testContext(t)
	// A job published by another route, whose body disagrees with its
	// subject, and one that is not a job at all.
	j := testJob("sneaky", ClassBatch)
	j.V, j.Submitted = JobVersion, time.Now()
	data, _ := json.Marshal(j)
	if _, err := q.js.Publish(ctx, JobSubject("root", KindIssue, ClassInteractive), data); err != nil {
		t.Fatal(err)
	}
	if _, err := q.js.Publish(ctx, JobSubject("root", KindCRL, ClassInteractive), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if err := q.PublishJob(ctx, testJob("good", ClassBatch)); err != nil {
		t.Fatal(err)
	}
	jc, err := q.Jobs(ctx, "root", ConsumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	d, err := jc.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Job.ID != "good" {
		t.Fatalf("Next = %s, want the one good job", d.Job.ID)
	}
	dls, err := q.DeadLetters(ctx, "root", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[1].Job == nil || dls[1].Job.ID != "sneaky" || dls[0].Raw == nil || dls[0].Job != nil {
		t.Fatalf("dead letters = %+v", dls)
	}
	// The misplaced job borrowed no result.
	if _, err := q.LookupResult(ctx, "root", "sneaky"); !errors.Is(err, ErrNoResult) {
		t.Fatalf("misplaced job got a result: %v", err)
	}
}

func TestResultPublishedAndLookedUp(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	if _, err := q.LookupResult(ctx, "root", "j1"); !errors.Is(err, ErrNoResult) {
		t.Fatalf("LookupResult before publish: %v", err)
	}
	first := Result{JobID: "j1", CA: "root", Kind: KindIssue, OK: true, Payload: Payload(`{"cert":"first"}`)}
	if err := w.PublishResult(ctx, first); err != nil {
		t.Fatal(err)
	}
	// A second result for the same job (a redelivery that signed again)
	// is dropped, within the duplicate window and past it alike.
	second := first
	second.Payload = Payload(`{"cert":"second"}`)
	if err := w.PublishResult(ctx, second); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(Result{V: 1, JobID: "j1", CA: "root", Kind: KindIssue, OK: true, Payload: Payload(`{"cert":"third"}`), Finished: time.Now()})
	_, err := w.js.PublishMsg(ctx, &nats.Msg{Subject: ResultSubject("root", "j1"), Data: data}, jetstream.WithMsgID("another-id"))
	if !isSubjectFull(err) {
		t.Fatalf("publishing a second result past de-duplication: err = %v, want the per-subject limit", err)
	}
	if err := w.publishOnce(ctx, StreamResults, ResultSubject("root", "j1"), "yet-another-id", data); err != nil {
		t.Fatalf("publishOnce on a full subject: %v", err)
	}
	got, err := q.LookupResult(ctx, "root", "j1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.OK || string(got.Payload) != `{"cert":"first"}` || got.V != ResultVersion || got.Finished.IsZero() {
		t.Fatalf("LookupResult = %+v", got)
	}
	if n := streamMsgs(t, q.results); n != 1 {
		t.Fatalf("results stream holds %d messages, want 1", n)
	}
	if _, err := q.LookupResult(ctx, "root", "j>"); err == nil {
		t.Fatal("LookupResult accepted a wildcard job id")
	}
	if err := w.PublishResult(ctx, Result{JobID: "j2", CA: "root", Kind: KindIssue}); err == nil {
		t.Fatal("PublishResult accepted a failure without an error")
	}
}

func TestRedeliveryWithStoredResultIsAcked(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	jc, err := w.Jobs(ctx, "root", ConsumeOptions{PollWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	if err := q.PublishJob(ctx, testJob("done", ClassBatch)); err != nil {
		t.Fatal(err)
	}
	d, err := jc.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.PublishResult(ctx, Result{JobID: "done", CA: "root", Kind: KindIssue, OK: true, Payload: Payload(`1`)}); err != nil {
		t.Fatal(err)
	}
	d.Nak(0) // the worker "died" before its ack
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	if d, err := jc.Next(short); err == nil {
		t.Fatalf("Next handed out %s although its result is stored", d.Job.ID)
	}
	waitFor(t, func() bool { return streamMsgs(t, q.jobs) == 0 }, "the finished job to be acked")
}

func TestRestartKeepsUnackedJobs(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	q, err := Start(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	w := workerQueue(t, q)
	for i := range 10 {
		if err := q.PublishJob(ctx, testJob(fmt.Sprintf("r%d", i), ClassBatch)); err != nil {
			t.Fatal(err)
		}
	}
	jc, err := w.Jobs(ctx, "root", ConsumeOptions{AckWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Take three without acking, ack a fourth, then stop.
	for i := range 4 {
		d, err := jc.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			if err := w.PublishResult(ctx, Result{JobID: d.Job.ID, CA: "root", Kind: KindIssue, OK: true}); err != nil {
				t.Fatal(err)
			}
			d.Ack()
		}
	}
	w.Close()
	q.Close()

	q = startQueue(t, dir)
	w = workerQueue(t, q)
	jc, err = w.Jobs(ctx, "root", ConsumeOptions{AckWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 9 {
		d, err := jc.Next(ctx)
		if err != nil {
			t.Fatalf("after restart, got %d of 9 jobs: %v", len(seen), err)
		}
		if seen[d.Job.ID] {
			t.Fatalf("job %s delivered twice after restart", d.Job.ID)
		}
		seen[d.Job.ID] = true
		d.Ack()
	}
	if seen["r3"] {
		t.Fatal("the acked job came back")
	}
}

func TestEmbeddedCredentials(t *testing.T) {
	dir := t.TempDir()
	q := startQueue(t, dir)
	ctx := testContext(t)
	path := filepath.Join(dir, "nats", "credentials.json")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials mode = %04o, want 0600", st.Mode().Perm())
	}
	if !strings.HasPrefix(q.URL(), "nats://127.0.0.1:") {
		t.Fatalf("embedded URL = %q, want loopback", q.URL())
	}
	// A client without the credentials, or with wrong ones, is refused.
	if nc, err := nats.Connect(q.URL()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was accepted")
	}
	if nc, err := nats.Connect(q.URL(), nats.UserInfo("qpki", "wrong-password-123")); err == nil {
		nc.Close()
		t.Fatal("a client with a wrong password was accepted")
	}

	// Another process connects through the data dir alone.
	other, err := Connect(ctx, Options{EmbeddedDataDir: dir, Name: "qpki-worker"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if other.Embedded() || other.URL() != q.URL() {
		t.Fatalf("client URL = %q, want %q", other.URL(), q.URL())
	}
	jc, err := other.Jobs(ctx, "root", ConsumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.PublishJob(ctx, testJob("x1", ClassInteractive)); err != nil {
		t.Fatal(err)
	}
	d, err := jc.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.PublishResult(ctx, Result{JobID: d.Job.ID, CA: "root", Kind: KindIssue, OK: true}); err != nil {
		t.Fatal(err)
	}
	d.Ack()
	if r, err := q.LookupResult(ctx, "root", "x1"); err != nil || !r.OK {
		t.Fatalf("result seen by the server process = %+v, %v", r, err)
	}

	// A credentials file that others can read is refused.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := Connect(ctx, Options{EmbeddedDataDir: dir}); err == nil {
		c.Close()
		t.Fatal("Connect accepted a world-readable credentials file")
	}
	// The same credentials survive a restart.
	os.Chmod(path, 0o600)
	before, _ := os.ReadFile(path)
	q.Close()
	startQueue(t, dir)
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("credentials changed across a restart")
	}
}

func TestResultsRecorder(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	for i := range 20 {
		ca := "root"
		if i%2 == 1 {
			ca = "sub"
		}
		if err := w.PublishResult(ctx, Result{JobID: fmt.Sprintf("r%d", i), CA: ca, Kind: KindIssue, OK: true}); err != nil {
			t.Fatal(err)
		}
	}
	// One CA only, with a handler that fails once: the failed result
	// comes back.
	rctx, cancel := context.WithCancel(ctx)
	got := map[string]int{}
	failed := false
	done := make(chan error, 1)
	go func() {
		done <- q.Results(rctx, "root", func(r Result) error {
			if r.CA != "root" {
				t.Errorf("recorder for root got a result of %s", r.CA)
			}
			if r.JobID == "r4" && !failed {
				failed = true
				return errors.New("store busy")
			}
			got[r.JobID]++
			if len(got) == 10 {
				cancel()
			}
			return nil
		})
	}()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Results returned %v", err)
	}
	if len(got) != 10 || got["r4"] != 1 {
		t.Fatalf("recorded %v", got)
	}

	// All CAs in batches: everything arrives, each result once.
	rctx, cancel = context.WithCancel(ctx)
	all := map[string]int{}
	go func() {
		done <- q.ResultBatches(rctx, "", 8, func(rs []Result) error {
			if len(rs) == 0 || len(rs) > 8 {
				t.Errorf("batch of %d", len(rs))
			}
			for _, r := range rs {
				all[r.JobID]++
			}
			if len(all) == 20 {
				cancel()
			}
			return nil
		})
	}()
	<-done
	if len(all) != 20 {
		t.Fatalf("recorded %d of 20", len(all))
	}
}

func TestStatus(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	for i := range 4 {
		q.PublishJob(ctx, testJob(fmt.Sprintf("b%d", i), ClassBatch))
	}
	for i := range 3 {
		q.PublishJob(ctx, testJob(fmt.Sprintf("i%d", i), ClassInteractive))
	}
	j := testJob("other", ClassBatch)
	j.CA = "sub"
	q.PublishJob(ctx, j)
	jc, err := w.Jobs(ctx, "root", ConsumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	d, err := jc.Next(ctx) // one interactive job in flight
	if err != nil {
		t.Fatal(err)
	}
	w.PublishResult(ctx, Result{JobID: d.Job.ID, CA: "root", Kind: KindIssue, OK: true})
	before, err := q.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A worker fetches several jobs at a time and holds those it has not
	// started: they count as in flight too.
	root := before.CAs["root"]
	if in := root.Interactive; in.Pending+in.InFlight != 3 || in.InFlight < 1 || root.Batch != (ClassStatus{Pending: 4}) {
		t.Fatalf("root status = %+v", root)
	}
	if before.CAs["sub"].Batch.Pending != 1 || before.Batch.Pending != 5 || before.Interactive.InFlight < 1 {
		t.Fatalf("status = %+v", before)
	}
	if before.Results != 1 || before.DeadLetters != 0 || before.Replicas != 1 {
		t.Fatalf("status = %+v", before)
	}
	if names := before.CANames(); len(names) != 2 || names[0] != "root" {
		t.Fatalf("CANames = %v", names)
	}
	w.PublishResult(ctx, Result{JobID: "zz", CA: "root", Kind: KindIssue, OK: true})
	time.Sleep(20 * time.Millisecond)
	after, err := q.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := after.ResultRate(before); r <= 0 {
		t.Fatalf("ResultRate = %v", r)
	}
}

func TestCloseStopsWaitingNext(t *testing.T) {
	q := startQueue(t, t.TempDir())
	ctx := testContext(t)
	jc, err := q.Jobs(ctx, "root", ConsumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := jc.Next(ctx)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	q.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Close took %v", el)
	}
	if err := q.PublishJob(ctx, testJob("late", ClassBatch)); !errors.Is(err, ErrClosed) {
		t.Fatalf("PublishJob after Close = %v", err)
	}
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDeadLetterOfLargestJob(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	j := testJob("huge", ClassBatch)
	j.Payload = Payload(`"` + strings.Repeat("a", DefaultMaxMsgSize-400) + `"`)
	if err := q.PublishJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	jc, err := w.Jobs(ctx, "root", ConsumeOptions{MaxDeliver: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	d, err := jc.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Retry(ctx, errors.New(strings.Repeat("e", 10000)), 0); err != nil {
		t.Fatal(err)
	}
	dl, err := q.LookupDeadLetter(ctx, "root", "huge")
	if err != nil {
		t.Fatal(err)
	}
	if dl.Job == nil || !strings.HasPrefix(string(dl.Job.Payload), `"omitted: `) || len(dl.Error) > maxErrorLen+8 {
		t.Fatalf("dead letter: payload %.40s, error of %d bytes", dl.Job.Payload, len(dl.Error))
	}
	if r, err := q.LookupResult(ctx, "root", "huge"); err != nil || !r.DeadLetter {
		t.Fatalf("result = %+v, %v", r, err)
	}
}

// TestWorkerSurvivesServerRestart: a worker connected through the data
// dir reconnects when the serving process restarts the embedded server,
// which comes back on the same port.
func TestWorkerSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	q, err := Start(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	url := q.URL()
	worker, err := Connect(ctx, Options{EmbeddedDataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	jc, err := worker.Jobs(ctx, "root", ConsumeOptions{PollWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()

	q = startQueue(t, dir)
	if q.URL() != url {
		t.Fatalf("restarted on %s, was %s", q.URL(), url)
	}
	if err := q.PublishJob(ctx, testJob("after-restart", ClassInteractive)); err != nil {
		t.Fatal(err)
	}
	d, err := jc.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.PublishResult(ctx, Result{JobID: d.Job.ID, CA: "root", Kind: KindIssue, OK: true}); err != nil {
		t.Fatal(err)
	}
	d.Ack()
	if _, err := q.LookupResult(ctx, "root", "after-restart"); err != nil {
		t.Fatal(err)
	}
}

// The recorder outlives its consumer: deleted under it (as another
// front-end re-declaring it can), it subscribes again and records on.
func TestRecorderResubscribes(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- q.ResultBatches(rctx, "root", 8, func(rs []Result) error {
			for _, r := range rs {
				got <- r.JobID
			}
			return nil
		})
	}()
	// A new consumer starts from the first result again: recording is
	// idempotent, so results seen before may come back.
	want := func(id string) {
		t.Helper()
		for {
			select {
			case g := <-got:
				if g == id {
					return
				}
				continue
			case err := <-done:
				t.Fatalf("recorder stopped: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatalf("%s not recorded", id)
			}
		}
	}
	if err := w.PublishResult(ctx, Result{JobID: "before", CA: "root", Kind: KindIssue, OK: true}); err != nil {
		t.Fatal(err)
	}
	want("before")
	if err := q.results.DeleteConsumer(ctx, resultConsumerName("root")); err != nil {
		t.Fatal(err)
	}
	if err := w.PublishResult(ctx, Result{JobID: "after", CA: "root", Kind: KindIssue, OK: true}); err != nil {
		t.Fatal(err)
	}
	want("after")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("recorder: %v", err)
	}
}

// DeadLetters lists the newest first, up to the limit, for one CA or all,
// however far back the CA's letters lie among the others'.
func TestDeadLettersNewestFirst(t *testing.T) {
	q := startQueue(t, t.TempDir())
	w := workerQueue(t, q)
	ctx := testContext(t)
	kill := func(ca, id string) {
		jc, err := w.Jobs(ctx, ca, ConsumeOptions{MaxDeliver: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer jc.Close()
		j := testJob(id, ClassBatch)
		j.CA = ca
		if err := q.PublishJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		d, err := jc.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Retry(ctx, errors.New("signer down"), 0); err != nil {
			t.Fatal(err)
		}
	}
	kill("other", "o-0")
	for i := range 3 {
		kill("root", fmt.Sprintf("r-%d", i))
	}
	for i := 1; i <= 20; i++ {
		kill("other", fmt.Sprintf("o-%d", i))
	}
	ids := func(dls []DeadLetter) (out []string) {
		for _, d := range dls {
			out = append(out, d.Job.ID)
		}
		return out
	}
	for _, c := range []struct {
		ca    string
		limit int
		want  string
	}{
		{"root", 2, "r-2 r-1"},
		{"root", 10, "r-2 r-1 r-0"},
		{"", 3, "o-20 o-19 o-18"},
		{"other", 100, "o-20 o-19 o-18 o-17 o-16 o-15 o-14 o-13 o-12 o-11 o-10 o-9 o-8 o-7 o-6 o-5 o-4 o-3 o-2 o-1 o-0"},
	} {
		dls, err := q.DeadLetters(ctx, c.ca, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ids(dls), " "); got != c.want {
			t.Errorf("DeadLetters(%q, %d) = %s, want %s", c.ca, c.limit, got, c.want)
		}
	}
}
