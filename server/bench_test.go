package server_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/internal/cpuclock"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
)

// p256CA makes a root and an issuing CA whose key is ecdsa-p256 (the
// built-in issuing profile uses P-384).
func p256CA(b *testing.B, dir string) string {
	raw, err := profile.Builtin("ec/issuing-ca")
	if err != nil {
		b.Fatal(err)
	}
	raw = regexp.MustCompile(`(?m)^algorithm: .*$`).ReplaceAll(raw, []byte("algorithm: ecdsa-p256"))
	raw = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(raw, []byte("name: bench/issuing-ca-p256"))
	prof := filepath.Join(dir, "p256.yaml")
	os.WriteFile(prof, raw, 0o644)
	root, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "root"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Bench Root"}})
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	if _, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "sub"), Profile: prof, Parent: root, Vars: map[string]any{"cn": "Bench Sub"}}); err != nil {
		b.Fatal(err)
	}
	return filepath.Join(dir, "sub")
}

// BenchmarkPipeline measures end-to-end batch issuance, from Submit to the
// durable result, through the embedded queue with an ecdsa-p256 file key,
// next to the raw signer rate with the same number of sessions.
func BenchmarkPipeline(b *testing.B) {
	for _, sessions := range []int{1, 2} {
		b.Run(fmt.Sprintf("file-p256/sessions=%d", sessions), func(b *testing.B) {
			dir := b.TempDir()
			caDir := p256CA(b, dir)
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0)) // StartCore raises it, as in qpki serve
			core, err := server.StartCore(context.Background(), server.Config{CADir: caDir, DataDir: filepath.Join(dir, "data"), Workers: sessions})
			if err != nil {
				b.Fatal(err)
			}
			defer core.Stop()
			csrs := make([][]byte, 64)
			for i := range csrs {
				csrs[i] = benchCSR(b, fmt.Sprintf("h%d.example.com", i))
			}
			raw := rawRate(b, core.CA, sessions)
			var seq atomic.Int64
			b.ResetTimer()
			cpu0 := cpuclock.Used()
			start := time.Now()
			var wg sync.WaitGroup
			work := make(chan int)
			for w := 0; w < benchClients; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range work {
						id, err := core.Enroll.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrs[i%len(csrs)],
							Key: fmt.Sprintf("b-%d-%d", seq.Add(1), i), Class: queue.ClassBatch})
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
			el := time.Since(start)
			cpu := cpuclock.Used() - cpu0
			b.StopTimer()
			rate := float64(b.N) / el.Seconds()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(rate, "certs/s")
			b.ReportMetric(raw, "raw-signs/s")
			b.ReportMetric(rate/raw, "ratio")
			b.ReportMetric(float64(ms.Sys)/(1<<20), "MB-sys")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/cert")
			b.ReportMetric(100*cpu.Seconds()/el.Seconds(), "%cpu")
			b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
		})
	}
}

// rawRate is the CA key's signing rate with n goroutines, each with its
// own session, over a TBS-sized digest.
func rawRate(b *testing.B, c *ca.CA, n int) float64 {
	const per = 2000
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < n; g++ {
		iss, closer, err := c.Issuer("", ca.KeyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer closer.Close()
			d := sha256.Sum256([]byte("tbs"))
			for i := 0; i < per; i++ {
				if _, err := iss.Signer.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n*per) / time.Since(start).Seconds()
}

func benchCSR(b testing.TB, name string) []byte {
	priv, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
	s, _ := algo.NewSigner(priv, algo.ECDSAP256)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, s)
	if err != nil {
		panic(err)
	}
	return der
}

// benchClients is how many callers submit and wait at once: 256, or
// BENCH_CLIENTS (32 is an EST benchmark's load).
var benchClients = func() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_CLIENTS")); err == nil && n > 0 {
		return n
	}
	return 256
}()
