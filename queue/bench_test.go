package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkJobRoundTrip measures small jobs through the embedded server:
// publish, Next, PublishResult (durable), Ack — what one certificate
// costs the queue, without the signing.
func BenchmarkJobRoundTrip(b *testing.B) {
	for _, workers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			benchRoundTrip(b, workers)
		})
	}
}

func benchRoundTrip(b *testing.B, workers int) {
	q, err := Start(context.Background(), Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	w := workerQueue(b, q) // only workers publish results
	jc, err := w.Jobs(ctx, "bench", ConsumeOptions{MaxAckPending: 1024})
	if err != nil {
		b.Fatal(err)
	}
	payload := Payload(`{"profile":"ec/tls-server","pubkey":"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}`)
	n := b.N
	var next atomic.Int64
	var done atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range 4 { // publishers, as front-ends would be
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				err := q.PublishJob(ctx, Job{ID: fmt.Sprintf("p%d-%d", p, i), CA: "bench", Kind: KindIssue, Class: ClassBatch, Payload: payload})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Load() < int64(n) {
				wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
				d, err := jc.Next(wctx)
				wcancel()
				if err != nil {
					continue
				}
				err = w.PublishResult(ctx, Result{JobID: d.Job.ID, CA: "bench", Kind: KindIssue, OK: true, Payload: Payload(`{"serial":"01"}`)})
				if err != nil {
					b.Error(err)
					return
				}
				d.Ack()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "jobs/s")
}

// BenchmarkPublishJob measures PublishJob alone (4 publishers).
func BenchmarkPublishJob(b *testing.B) {
	q, err := Start(context.Background(), Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	var next atomic.Int64
	payload := Payload(`{"profile":"ec/tls-server"}`)
	b.SetParallelism(1)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			if err := q.PublishJob(ctx, Job{ID: fmt.Sprintf("j%d", i), CA: "bench", Kind: KindIssue, Class: ClassBatch, Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}
