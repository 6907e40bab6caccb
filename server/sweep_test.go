package server_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
	"github.com/qpki/qpki/worker"
)

type countSigned struct{ n atomic.Int64 }

func (c *countSigned) Signed(_, _ string, _ time.Duration, err error) {
	if err == nil {
		c.n.Add(1)
	}
}
func (c *countSigned) SignerBusy(string, time.Duration) {}

// A job whose message the stream lost (deleted from the real JetStream
// stream, as a power loss of the embedded server would lose it) is
// published again by serve's sweeper and signed, once; a job whose
// message stays is signed once too.
func TestSweeperRecoversLostJob(t *testing.T) {
	dir := t.TempDir()
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Sweep Root"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	core, err := server.StartCore(context.Background(), server.Config{CADir: filepath.Join(dir, "ca"), DataDir: filepath.Join(dir, "data"),
		Workers: 0, Sweep: enroll.SweepOptions{After: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	submit := func(name string) string {
		id, err := core.Enroll.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server",
			CSR: benchCSR(nil, name), Key: name})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	lost, kept := submit("lost.example.com"), submit("kept.example.com")
	jobs, err := core.Queue.JetStream().Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	// The lost job is the first message.
	m, err := jobs.GetMsg(ctx, 1)
	if err != nil || m.Header.Get(jetstream.MsgIDHeader) != lost {
		t.Fatalf("first message: %v %v", m, err)
	}
	if err := jobs.DeleteMsg(ctx, 1); err != nil {
		t.Fatal(err)
	}

	// A worker comes up after the loss (a restarted worker).
	signed := &countSigned{}
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		wq, err := core.Queue.WorkerQueue(wctx) // the worker user, as qpki worker signs in
		if err != nil {
			t.Error(err)
			return
		}
		defer wq.Close()
		worker.Run(wctx, core.CA, wq, worker.Options{QueueName: server.QueueName(core.CA), Observer: signed})
	}()
	defer func() { wcancel(); wg.Wait() }()
	for _, id := range []string{kept, lost} {
		res, err := core.Enroll.Wait(ctx, id)
		if err != nil || res.State != store.JobDone || res.Cert == nil {
			t.Fatalf("job %s: %+v %v", id, res, err)
		}
	}
	results, err := core.Queue.JetStream().Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{kept, lost} {
		info, err := results.Info(ctx, jetstream.WithSubjectFilter(queue.ResultSubject(server.QueueName(core.CA), id)))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[queue.ResultSubject(server.QueueName(core.CA), id)]; n != 1 {
			t.Fatalf("job %s: %d results", id, n)
		}
	}
	// Once the stream is empty no copy is left to sign.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, err := jobs.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs left in the stream", info.State.Msgs)
		}
	}
	if n := signed.n.Load(); n != 2 {
		t.Fatalf("%d signatures for 2 jobs", n)
	}
}
