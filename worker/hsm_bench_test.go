package worker_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/internal/cpuclock"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/hsm/hsmtest"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
)

// BenchmarkPipelineHSM measures end-to-end issuance, from Submit to the
// durable result, through the embedded queue as `qpki serve` runs it
// (server.StartCore: recorder, worker.Run), with the issuing CA's key in
// the HSM (SoftHSM2, or the token HSM_CONFIG names), for ecdsa-p256,
// ecdsa-p384 and rsa-3072 keys and 1 and 2 worker sessions. Next to it,
// in the same run, the raw rate of the HSM signer itself with the same
// number of sessions (the mean of one second before and one after), and
// the ratio of the two.
//
//	go test -run '^$' -bench PipelineHSM -benchtime 2000x ./worker/
func BenchmarkPipelineHSM(b *testing.B) {
	tgt := hsmtest.Use(b, "worker-hsm")
	for _, k := range []struct {
		alg     algo.Algorithm
		profile string
	}{
		{algo.ECDSAP256, "p256"},
		{algo.ECDSAP384, "ec/issuing-ca"},
		{algo.RSA3072, "rsa/issuing-ca"},
	} {
		dir := b.TempDir()
		caDir := benchIssuingCA(b, dir, k.profile, tgt.Config)
		for _, sessions := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/sessions=%d", k.alg, sessions), func(b *testing.B) {
				core, err := server.StartCore(context.Background(), server.Config{CADir: caDir, DataDir: b.TempDir(), Workers: sessions})
				if err != nil {
					b.Fatal(err)
				}
				defer core.Stop()
				// The raw rate is measured before and after the run, and
				// the two averaged: this machine's speed drifts, and a
				// single measurement made the ratio swing by a third.
				rawBefore := rawSignerRate(b, core.CA, sessions, time.Second)
				csrs := make([][]byte, 64)
				for i := range csrs {
					csrs[i] = csrFor(b, fmt.Sprintf("h%d.example.com", i))
				}
				var seq atomic.Int64
				run := uniqueLabel("run") // the CA's store outlives a round: keys must not repeat
				work := make(chan int)
				var wg sync.WaitGroup
				signer := "pkcs11:" + hsmBenchToken(b, tgt.Config)
				busy0 := core.Metrics.SignerBusySeconds(signer)
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuclock.Used()
				for w := 0; w < 256; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range work {
							id, err := core.Enroll.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrs[i%len(csrs)],
								Key: fmt.Sprintf("%s-%d-%d", run, seq.Add(1), i), Class: queue.ClassBatch})
							if err != nil {
								b.Error(err)
								return
							}
							ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
							res, err := core.Enroll.Wait(ctx, id)
							cancel()
							if err != nil || res.Err() != nil {
								b.Error(err, res)
								return
							}
						}
					}()
				}
				for i := 0; i < b.N; i++ {
					work <- i
				}
				close(work)
				wg.Wait()
				el, cpu := time.Since(start), cpuclock.Used()-cpu0
				b.StopTimer()
				rawAfter := rawSignerRate(b, core.CA, sessions, time.Second)
				raw := (rawBefore + rawAfter) / 2
				b.ReportMetric(math.Abs(rawAfter-rawBefore)/raw, "raw-drift")
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/cert")
				b.ReportMetric(100*cpu.Seconds()/el.Seconds(), "%cpu")
				rate := float64(b.N) / el.Seconds()
				// The share of the time each session was signing: near 1,
				// the queue keeps the signer fed, and a rate below the raw
				// one comes from signing itself being slower under load.
				busy := (core.Metrics.SignerBusySeconds(signer) - busy0) / el.Seconds() / float64(sessions)
				b.ReportMetric(busy, "busy")
				b.ReportMetric(rate, "certs/s")
				b.ReportMetric(raw, "raw-signs/s")
				b.ReportMetric(rate/raw, "ratio")
			})
		}
	}
}

// benchIssuingCA makes a root with a key file and an issuing CA whose key
// is generated in the HSM: with profile, or ec/issuing-ca made P-256 for
// "p256".
func benchIssuingCA(b *testing.B, dir, prof, cfg string) string {
	b.Helper()
	if prof == "p256" {
		raw, err := profile.Builtin("ec/issuing-ca")
		if err != nil {
			b.Fatal(err)
		}
		raw = regexp.MustCompile(`(?m)^algorithm: .*$`).ReplaceAll(raw, []byte("algorithm: ecdsa-p256"))
		raw = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(raw, []byte("name: bench/issuing-ca-p256"))
		prof = filepath.Join(dir, "p256.yaml")
		if err := os.WriteFile(prof, raw, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	root, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "root"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "HSM Bench Root"}})
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	label := uniqueLabel("bench")
	sub, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "sub"), Profile: prof, Parent: root, Vars: map[string]any{"cn": "HSM Bench Issuing"},
		Key: ca.KeySpec{HSMConfig: cfg, Label: label}})
	if err != nil {
		b.Fatal(err)
	}
	sub.Close()
	destroyAfter(b, cfg, label)
	return sub.Dir
}

func destroyAfter(b *testing.B, cfg, label string) {
	b.Cleanup(func() {
		tok, err := hsmOpen(cfg)
		if err != nil {
			return
		}
		defer tok.Close()
		if k, err := tok.FindKey(label, nil); err == nil {
			tok.DestroyKey(k)
		}
	})
}

// rawSignerRate is the CA key's signatures per second through the HSM
// signer alone, with n goroutines, each with its own issuer (as each
// worker session has), over a digest of the size the CA signs.
func rawSignerRate(b *testing.B, c *ca.CA, n int, d time.Duration) float64 {
	b.Helper()
	var total atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for g := 0; g < n; g++ {
		iss, closer, err := c.Issuer("", ca.KeyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		h := algo.HashFor(iss.Signer.Algorithm())
		digest := make([]byte, h.Size())
		rand.Read(digest)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer closer.Close()
			for time.Now().Before(deadline) {
				if _, err := iss.Signer.Sign(rand.Reader, digest, h); err != nil {
					b.Error(err)
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(total.Load()) / time.Since(start).Seconds()
}

func hsmOpen(cfg string) (*hsm.Token, error) { return hsm.OpenFile(cfg) }

// hsmBenchToken is the token label in an HSM config, as the worker's
// metrics name the signer.
func hsmBenchToken(b *testing.B, path string) string {
	cfg, err := hsm.LoadConfig(path)
	if err != nil {
		b.Fatal(err)
	}
	return cfg.PKCS11.Token
}
