package queue

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// rawConn connects to the embedded server as user, collecting the
// server's asynchronous errors (a permission violation is one).
func rawConn(t *testing.T, url string, c credentials) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 16)
	nc, err := nats.Connect(url, nats.UserInfo(c.User, c.Password),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// violation publishes data on subject and waits for the server to refuse
// it as a permission violation.
func violation(t *testing.T, nc *nats.Conn, errs <-chan error, subject string) {
	t.Helper()
	if err := nc.Publish(subject, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("publish to %s: %v, want a permissions violation", subject, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("publish to %s was not refused", subject)
	}
}

// TestRolePermissions: on the embedded server the worker's credentials
// (those stored for qpki worker, and the in-process workers') cannot
// publish a job, declare or change a stream or delete a message; the
// front-end's cannot publish a result. Nothing refused reaches a stream.
func TestRolePermissions(t *testing.T) {
	dir := t.TempDir()
	q := startQueue(t, dir)
	ctx := testContext(t)
	stored, err := readCredentials(filepath.Join(natsDir(dir), credentialsName))
	if err != nil {
		t.Fatal(err)
	}
	if stored.User != workerUser {
		t.Fatalf("stored credentials are %q's, want the worker user's", stored.User)
	}
	job := testJob("j-perm", ClassInteractive)
	for _, c := range []credentials{stored, q.emb.localWorker} {
		nc, errs := rawConn(t, q.URL(), c)
		violation(t, nc, errs, job.Subject())
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, time.Second)
		if _, err := js.CreateOrUpdateStream(short, jetstream.StreamConfig{Name: "QPKI_EVIL", Subjects: []string{"qpki.jobs.x.>"}}); err == nil {
			t.Errorf("%s declared a stream", c.User)
		}
		if _, err := js.UpdateStream(short, jetstream.StreamConfig{Name: StreamResults, Subjects: []string{"qpki.results.>", "evil.>"}}); err == nil {
			t.Errorf("%s changed the results stream", c.User)
		}
		if err := js.DeleteStream(short, StreamJobs); err == nil {
			t.Errorf("%s deleted the jobs stream", c.User)
		}
		cancel()
	}
	// Through the queue API too: a worker's PublishJob fails.
	w := workerQueue(t, q)
	short, cancel := context.WithTimeout(ctx, time.Second)
	if err := w.PublishJob(short, job); err == nil {
		t.Error("a worker published a job")
	}
	cancel()
	if n := streamMsgs(t, q.jobs); n != 0 {
		t.Fatalf("jobs stream holds %d messages after the workers' attempts", n)
	}

	// The front-end cannot publish a result.
	nc, errs := rawConn(t, q.URL(), q.emb.frontend)
	violation(t, nc, errs, ResultSubject("root", "j-perm"))
	short, cancel = context.WithTimeout(ctx, time.Second)
	if err := q.PublishResult(short, Result{JobID: "j-perm", CA: "root", Kind: KindIssue, OK: true}); err == nil {
		t.Error("the front-end published a result")
	}
	cancel()
	if n := streamMsgs(t, q.results); n != 0 {
		t.Fatalf("results stream holds %d messages after the front-end's attempts", n)
	}

	// What each role is for still works: the front-end publishes the job,
	// a worker takes it and publishes its result, the front-end reads it.
	if err := q.PublishJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	jc, err := w.Jobs(ctx, "root", ConsumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := jc.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.PublishResult(ctx, Result{JobID: d.Job.ID, CA: "root", Kind: KindIssue, OK: true}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.LookupResult(ctx, "root", job.ID); err != nil {
		t.Fatal(err)
	}
}

// TestWorkersBindStreams: a worker does not declare the streams (that
// needs rights it has not); with no stream there, it waits and gives up,
// and creates none.
func TestWorkersBindStreams(t *testing.T) {
	dir := t.TempDir()
	q := startQueue(t, dir)
	ctx := testContext(t)
	if err := q.js.DeleteStream(ctx, StreamDead); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if w, err := Connect(short, Options{EmbeddedDataDir: dir}); err == nil {
		w.Close()
		t.Fatal("a worker connected with a stream missing")
	} else if !strings.Contains(err.Error(), StreamDead) {
		t.Fatalf("worker connect: %v, want it to name the missing stream", err)
	}
	if _, err := q.js.Stream(ctx, StreamDead); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("after the worker's attempt, %s: %v (want still absent)", StreamDead, err)
	}
	if _, err := Connect(ctx, Options{EmbeddedDataDir: dir, Role: RoleFrontend}); err == nil {
		t.Fatal("the stored worker credentials opened a front-end")
	}
}
