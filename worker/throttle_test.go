package worker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/worker"
)

// signCounter counts signatures, per job kind, as metrics would.
type signCounter struct{ ok, failed atomic.Int64 }

func (s *signCounter) Signed(_, _ string, _ time.Duration, err error) {
	if err != nil {
		s.failed.Add(1)
		return
	}
	s.ok.Add(1)
}

func (s *signCounter) SignerBusy(string, time.Duration) {}

// A throttled worker (--rate) with a queue of jobs that wait many
// AckWaits for their turn: no job is delivered twice, none signed twice,
// none dead-lettered. The rate and AckWait are scaled down from --rate 1
// and the default 5 s so that 64 jobs wait up to 16 AckWaits, more than
// --rate 1 gives them, in 16 seconds.
func TestThrottledJobsAreDeliveredOnce(t *testing.T) {
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(t.TempDir(), "ca"), Profile: "ec/root-ca",
		Vars: map[string]any{"cn": "Throttle Root"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := queue.Start(ctx, queue.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	wq, err := q.WorkerQueue(ctx) // the worker user, as in qpki serve
	if err != nil {
		t.Fatal(err)
	}
	defer wq.Close()
	svc, err := enroll.New(c, q)
	if err != nil {
		t.Fatal(err)
	}
	name := enroll.QueueName(c)

	const n = 64
	ids := make([]string, n)
	for i := range ids {
		host := fmt.Sprintf("throttled-%d.example.com", i)
		if ids[i], err = svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, host), Key: host, Class: queue.ClassBatch}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		q.Results(ctx, name, svc.Record)
	}()
	signed := &signCounter{}
	ready := make(chan error, 1)
	go func() {
		defer wg.Done()
		err := worker.Run(ctx, c, wq, worker.Options{Sessions: 2, Rate: 4, QueueName: name, Ready: ready, Observer: signed,
			Consume: queue.ConsumeOptions{AckWait: time.Second}})
		if err != nil {
			t.Error(err)
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	cons, err := q.JetStream().Consumer(ctx, queue.StreamJobs, "qpki-jobs-"+name+"-batch")
	if err != nil {
		t.Fatal(err)
	}
	// Watch the server's count of redelivered jobs while the batch runs.
	for i, id := range ids {
		for {
			wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			res, err := svc.Wait(wctx, id)
			wcancel()
			if info, ierr := cons.Info(ctx); ierr != nil {
				t.Fatal(ierr)
			} else if info.NumRedelivered != 0 {
				t.Fatalf("%d jobs redelivered", info.NumRedelivered)
			}
			if err == enroll.ErrPending {
				continue
			}
			if err != nil || res.State != store.JobDone {
				t.Fatalf("job %d: %v %+v", i, err, res)
			}
			break
		}
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Delivered.Consumer counts every delivery, redeliveries included.
	if info.Delivered.Consumer != n || info.NumRedelivered != 0 {
		t.Fatalf("%d deliveries (%d redelivered) for %d jobs", info.Delivered.Consumer, info.NumRedelivered, n)
	}
	if got := signed.ok.Load(); got != n || signed.failed.Load() != 0 {
		t.Fatalf("%d signatures (%d failed) for %d jobs", got, signed.failed.Load(), n)
	}
}
