package server_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// Recovery after kill -9, measured on the real binary (QPKI_BIN runs
// another build, e.g. an older commit's, through the same steps):
//
//	go test -run '^$' -bench Recovery -benchtime 1x ./server/
//	QPKI_BIN=/tmp/qpki-old go test -run '^$' -bench Recovery -benchtime 1x ./server/
//
// Each case first times an uninterrupted batch of recoveryBatch
// certificates, then a second one during which it kills serve (with its
// embedded NATS and recorder) or the worker process, at a third of the
// batch, and starts it again at once. It reports the uninterrupted rate,
// the rate of the part after the restart (resumed-certs/s: the
// certificates still missing at the kill, over the time from the restart
// to the end of the batch) and the time from the restart to the end of
// the batch. The rate=400 cases throttle the signer (--rate 400), so that
// the signer, not the batch client, sets the pace, as an HSM does: the
// killed process then holds jobs that must move to its successor.

const recoveryBatch = 2000

func BenchmarkRecovery(b *testing.B) {
	for _, rate := range []string{"0", "400"} {
		b.Run("KillServe/rate="+rate, func(b *testing.B) {
			for range b.N {
				benchKill(b, true, rate)
			}
		})
		b.Run("KillWorker/rate="+rate, func(b *testing.B) {
			for range b.N {
				benchKill(b, false, rate)
			}
		})
	}
}

func benchKill(b *testing.B, serve bool, rate string) {
	e := newEnv(b)
	args := []string{"serve", "--ca-dir", e.caDir, "--data-dir", e.data, "--listen", "127.0.0.1:0"}
	if help, _ := exec.Command(qpkiBin, "serve", "--help").CombinedOutput(); bytes.Contains(help, []byte("--ocsp ")) {
		// Builds with an OCSP responder pre-sign every certificate's
		// status at start, which an older build does not: the same work
		// for both.
		args = append(args, "--ocsp=false")
	}
	if serve {
		args = append(args, "--workers", "2", "--rate", rate)
	} else {
		args = append(args, "--workers", "0")
	}
	startServe := func() *exec.Cmd {
		cmd := e.start("serve", args...)
		e.waitSocket()
		return cmd
	}
	startWorker := func(name string) *exec.Cmd {
		return e.start(name, "worker", "--ca-dir", e.caDir, "--data-dir", e.data, "--workers", "2", "--rate", rate)
	}
	srv := startServe()
	var wrk *exec.Cmd
	if !serve {
		wrk = startWorker("worker")
	}

	// Uninterrupted.
	warm := e.writeNamedBatch("warm", recoveryBatch)
	start := time.Now()
	e.run("batch", "submit", warm, "--ca-dir", e.caDir, "--out", filepath.Join(e.dir, "warm-certs"))
	uninterrupted := float64(recoveryBatch) / time.Since(start).Seconds()

	// Killed at a third.
	reqs := e.writeNamedBatch("kill", recoveryBatch)
	out := filepath.Join(e.dir, "certs")
	batch := exec.Command(qpkiBin, "batch", "submit", reqs, "--ca-dir", e.caDir, "--out", out)
	var blog bytes.Buffer
	batch.Stdout, batch.Stderr = &blog, &blog
	if err := batch.Start(); err != nil {
		b.Fatal(err)
	}
	waitFilesTB(b, out, recoveryBatch/3)
	var before int
	var restarted time.Time
	if serve {
		srv.Process.Kill()
		srv.Wait()
		batch.Wait() // its server died
		before = countFiles(out)
		restarted = time.Now()
		startServe()
		batch = exec.Command(qpkiBin, "batch", "submit", reqs, "--ca-dir", e.caDir, "--out", out)
		batch.Stdout, batch.Stderr = &blog, &blog
		if err := batch.Start(); err != nil {
			b.Fatal(err)
		}
	} else {
		wrk.Process.Kill()
		wrk.Wait()
		before = countFiles(out)
		restarted = time.Now()
		startWorker("worker2")
	}
	if err := batch.Wait(); err != nil {
		b.Fatalf("batch: %v\n%s", err, tail(blog.String()))
	}
	resumed := time.Since(restarted)
	if n := countFiles(out); n != recoveryBatch {
		b.Fatalf("%d certificates for %d requests", n, recoveryBatch)
	}
	b.ReportMetric(uninterrupted, "uninterrupted-certs/s")
	b.ReportMetric(float64(recoveryBatch-before)/resumed.Seconds(), "resumed-certs/s")
	b.ReportMetric(resumed.Seconds(), "s-to-finish")
	b.ReportMetric(0, "ns/op")
	e.stopAll(b)
	e.checkWith(recoveryBatch, out, recoveryBatch+3)
}

// writeNamedBatch writes n requests whose ids and names start with
// prefix, to a file of that name.
func (e *env) writeNamedBatch(prefix string, n int) string {
	path := filepath.Join(e.dir, prefix+".jsonl")
	var buf bytes.Buffer
	for i := range n {
		name := fmt.Sprintf("%s-%d.example.com", prefix, i)
		if prefix == "kill" {
			name = fmt.Sprintf("host-%d.example.com", i) // what check expects
		}
		priv, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
		s, _ := algo.NewSigner(priv, algo.ECDSAP256)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, s)
		if err != nil {
			e.t.Fatal(err)
		}
		id := fmt.Sprintf("%s-%d", prefix, i)
		if prefix == "kill" {
			id = fmt.Sprintf("line-%d", i)
		}
		line, _ := json.Marshal(map[string]any{"id": id, "profile": "ec/tls-server",
			"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
		buf.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func waitFilesTB(t testing.TB, dir string, n int) {
	deadline := time.Now().Add(3 * time.Minute)
	for countFiles(dir) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d certificates after 3 minutes", countFiles(dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
