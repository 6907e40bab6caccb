package worker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/testtoken"
	"github.com/qpki/qpki/worker"
)

// A slow HSM (an SLH-DSA-SHA2-256s key in the PKCS#11 test token: about
// a second a signature) behind one session: the jobs that wait for the
// session, in the batched signing path, wait several AckWaits, and are
// still delivered and signed once each.
func TestSlowHSMJobsAreDeliveredOnce(t *testing.T) {
	d := testtoken.Shared(t)
	cfg := d.Config(t, testtoken.SharedToken)
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(t.TempDir(), "ca"), Profile: "slh/root-ca",
		Vars: map[string]any{"cn": "Slow HSM Root"}, Key: ca.KeySpec{HSMConfig: cfg, Label: uniqueLabel("worker-slow")}})
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
	svc, err := enroll.New(c, q)
	if err != nil {
		t.Fatal(err)
	}
	name := enroll.QueueName(c)
	const n = 4
	ids := make([]string, n)
	for i := range ids {
		host := fmt.Sprintf("slow-%d.example.com", i)
		if ids[i], err = svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, host), Key: host}); err != nil {
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
		err := worker.Run(ctx, c, q, worker.Options{Sessions: 1, QueueName: name, Ready: ready, Observer: signed,
			Consume: queue.ConsumeOptions{AckWait: time.Second}})
		if err != nil {
			t.Error(err)
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		res, err := svc.Wait(wctx, id)
		wcancel()
		if err != nil || res.State != store.JobDone {
			t.Fatalf("job %d: %v %+v", i, err, res)
		}
	}
	cons, err := q.JetStream().Consumer(ctx, queue.StreamJobs, "qpki-jobs-"+name+"-interactive")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != n {
		t.Fatalf("%d deliveries for %d jobs", info.Delivered.Consumer, n)
	}
	if got := signed.ok.Load(); got != n {
		t.Fatalf("%d signatures for %d jobs", got, n)
	}
}
