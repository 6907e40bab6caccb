package enroll_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cose"
	"github.com/qpki/qpki/pkg/store"
)

// BenchmarkCOSE measures CWTs per second signed through the queue (real
// embedded NATS JetStream, enroll's checks and bbolt job records, two
// worker sessions, the batching recorder) next to the raw rates of the
// same CA key in the same run: cose.Sign alone, on one core and on all.
//
//	go test -run '^$' -bench COSE -benchtime 2000x ./enroll/
func BenchmarkCOSE(b *testing.B) {
	for _, alg := range []string{"ecdsa-p256", "ml-dsa-65"} {
		b.Run(alg, func(b *testing.B) {
			p := startCOSEPipeline(b, alg, 2)
			iss, closer, err := p.ca.Issuer("", ca.KeyOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer closer.Close()
			chain, err := p.ca.Chain("")
			if err != nil {
				b.Fatal(err)
			}
			claims := func(i int) *cose.Claims {
				return &cose.Claims{Issuer: "qpki", Subject: fmt.Sprintf("device-%d", i), Audience: []string{"api"},
					Expiry: time.Now().Add(time.Hour), Extra: map[string]any{"role": "reader"}}
			}
			signers := []cose.Signer{iss.Signer}
			chains := [][]*x509.Certificate{chain}

			b.Run("raw-sign", func(b *testing.B) {
				i := 0
				for b.Loop() {
					i++
					if _, err := cose.Sign(rand.Reader, cose.SignRequest{Type: cose.TypeCWT, Claims: claims(i)}, signers, chains); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "CWT/s")
			})
			b.Run("raw-sign-parallel", func(b *testing.B) {
				var n atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := int(n.Add(1))
						if _, err := cose.Sign(rand.Reader, cose.SignRequest{Type: cose.TypeCWT, Claims: claims(i)}, signers, chains); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "CWT/s")
			})
			b.Run("queue", func(b *testing.B) { benchQueue(b, p, claims) })
			// Software keys allow more sessions than cores: the pipeline
			// waits on JetStream acknowledgements and fsyncs, not the CPU.
			b.Run("queue-8-sessions", func(b *testing.B) {
				p8 := startCOSEPipeline(b, alg, 8)
				b.ResetTimer()
				benchQueue(b, p8, claims)
			})
		})
	}
}

var benchRound atomic.Int64

// benchQueue submits b.N CWT jobs from 64 goroutines, as front-ends
// serving many clients would, then waits for every token.
func benchQueue(b *testing.B, p *pipeline, claims func(int) *cose.Claims) {
	round := benchRound.Add(1)
	ctx := context.Background()
	ids := make([]string, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				id, err := p.svc.SubmitCOSE(ctx, fmt.Sprintf("bench-%d-%d", round, i), cose.SignRequest{Type: cose.TypeCWT, Claims: claims(i)}, "")
				if err != nil {
					b.Error(err)
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "submitted/s")
	for _, id := range ids {
		if id == "" {
			b.FailNow()
		}
		if res := waitFor(b, p.svc, id); res.State != store.JobDone {
			b.Fatalf("job %s: %+v", id, res)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "CWT/s")
}
