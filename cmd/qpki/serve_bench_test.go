package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkServeBatch runs the real `qpki serve` process and submits a
// batch of b.N certificates to it with `qpki batch submit`, reporting the
// rate and serve's peak resident memory (VmHWM), the figure the
// signing-pipeline issue bounds at 300 MB:
//
//	go test -run '^$' -bench ServeBatch -benchtime 5000x ./cmd/qpki/
func BenchmarkServeBatch(b *testing.B) { serveBatch(b, "--out", "certs") }

// BenchmarkServeBatchJSONL is BenchmarkServeBatch writing one --out-jsonl
// file instead of a file per certificate.
func BenchmarkServeBatchJSONL(b *testing.B) { serveBatch(b, "--out-jsonl", "out.jsonl") }

func serveBatch(b *testing.B, out ...string) {
	d := b.TempDir()
	qpki := func(args ...string) {
		b.Helper()
		cmd := exec.Command(qpkiBin, args...)
		cmd.Dir = d
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("qpki %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	qpki("ca", "init", "--profile", "ec/root-ca", "--var", "cn=Bench Root", "--ca-dir", "ca")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "bench.example.com"}, DNSNames: []string{"bench.example.com"}}, key)
	if err != nil {
		b.Fatal(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f, err := os.Create(filepath.Join(d, "requests.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	enc := json.NewEncoder(f)
	for i := 0; i < b.N; i++ {
		enc.Encode(map[string]any{"id": fmt.Sprintf("line-%d", i), "profile": "ec/tls-server", "csr": csr})
	}
	f.Close()

	serve := exec.Command(qpkiBin, "serve", "--ca-dir", "ca", "--data-dir", "data", "--listen", "127.0.0.1:0", "--workers", "2")
	serve.Dir = d
	if err := serve.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(d, "ca", "qpki.sock")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("serve did not open its socket")
		}
	}
	b.ResetTimer()
	start := time.Now()
	qpki(append([]string{"batch", "submit", "requests.jsonl", "--ca-dir", "ca"}, out...)...)
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "certs/s")
	b.ReportMetric(peakRSS(b, serve.Process.Pid), "MB-rss-peak")
}

// peakRSS reads a process's peak resident set size in MiB.
func peakRSS(b *testing.B, pid int) float64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmHWM in /proc status")
	return 0
}
