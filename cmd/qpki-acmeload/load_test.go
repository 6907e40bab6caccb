package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/acme"
	"github.com/qpki/qpki/internal/cpuclock"
	"github.com/qpki/qpki/internal/testport"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/server"
)

// qpkiServer is an in-process `qpki serve` with an ecdsa-p256 issuing CA
// (as compare.sh sets up) whose validations go to httpPort.
type qpkiServer struct {
	srv     *server.Server
	dirURL  string
	rootPEM string
	roots   *x509.CertPool
}

func startQPKI(tb testing.TB, httpPort int) *qpkiServer {
	tb.Helper()
	dir := tb.TempDir()
	root, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "root"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Load Root"}})
	if err != nil {
		tb.Fatal(err)
	}
	defer root.Close()
	// The built-in ec/issuing-ca is P-384; the benchmark's CA key is P-256.
	yaml, err := profile.Builtin("ec/issuing-ca")
	if err != nil {
		tb.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(yaml), "\n") {
		switch {
		case strings.HasPrefix(l, "algorithm:"):
			l = "algorithm: ecdsa-p256"
		case strings.HasPrefix(l, "name:"):
			l = "name: bench/issuing-ca-p256"
		}
		lines = append(lines, l)
	}
	p256 := filepath.Join(dir, "p256.yaml")
	if err := os.WriteFile(p256, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		tb.Fatal(err)
	}
	sub, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Profile: p256, Parent: root, Vars: map[string]any{"cn": "Load Issuing P-256"}})
	if err != nil {
		tb.Fatal(err)
	}
	sub.Close()
	data := filepath.Join(dir, "data")
	front, err := acme.New(acme.Config{DataDir: data, Profiles: []string{"ec/tls-server"}, HTTPPort: httpPort, ResolveTo: "127.0.0.1"})
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := server.Start(context.Background(), server.Config{CADir: filepath.Join(dir, "ca"), DataDir: data, Listen: "127.0.0.1:0", Workers: 2}, front)
	if err != nil {
		front.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Shutdown)
	select {
	case <-srv.HTTPSReady():
	case <-time.After(time.Minute):
		tb.Fatal("HTTPS listener did not start")
	}
	roots, err := srv.Core.CA.Bundle("root", "")
	if err != nil {
		tb.Fatal(err)
	}
	s := &qpkiServer{srv: srv, dirURL: "https://" + srv.Addr + acme.DirectoryPath, rootPEM: filepath.Join(dir, "root.pem"), roots: x509.NewCertPool()}
	s.roots.AddCert(roots[0])
	if err := os.WriteFile(s.rootPEM, ca.EncodeCerts(roots...), 0o644); err != nil {
		tb.Fatal(err)
	}
	return s
}

func freeAddr(tb testing.TB) (string, int) {
	p := testport.Free(tb)
	return "127.0.0.1:" + strconv.Itoa(p), p
}

// TestRun runs the load generator briefly against qpki: every flow
// completes, and the report counts them.
func TestRun(t *testing.T) {
	addr, port := freeAddr(t)
	s := startQPKI(t, port)
	out := filepath.Join(t.TempDir(), "report.json")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = f
	err = run(config{dirURL: s.dirURL, caFile: s.rootPEM, accounts: 4, duration: time.Second, warmup: 200 * time.Millisecond,
		httpListen: addr, suffix: "test.example.com", poll: 5 * time.Millisecond, label: "qpki", asJSON: true})
	os.Stdout = stdout
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report %s: %v", data, err)
	}
	if r.Orders == 0 || r.Failed != 0 || r.OrdersPerSecond <= 0 || r.Finalize.P50 <= 0 || r.Total.P99 < r.Finalize.P99 {
		t.Fatalf("report %+v", r)
	}
}

// BenchmarkFlows runs b.N full flows (newOrder → http-01 → finalize →
// download) against an in-process qpki with 32 concurrent accounts, for
// profiling: go test -run '^$' -bench Flows -cpuprofile cpu.out
func BenchmarkFlows(b *testing.B) {
	addr, port := freeAddr(b)
	s := startQPKI(b, port)
	accounts := 32
	if v, err := strconv.Atoi(os.Getenv("ACMELOAD_ACCOUNTS")); err == nil && v > 0 {
		accounts = v
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots},
		MaxIdleConnsPerHost: 4 * accounts}}
	tokens := &sync.Map{}
	stop, err := serveHTTP01(addr, tokens)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	ctx := context.Background()
	d, err := fetchDirectory(hc, s.dirURL)
	if err != nil {
		b.Fatal(err)
	}
	accts := make([]*account, accounts)
	for i := range accts {
		if accts[i], err = newAccount(ctx, hc, d); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var mu sync.Mutex
	var finalize []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuclock.Used()
	for i, a := range accts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				tm, err := a.flow(ctx, "o"+strconv.FormatInt(n, 10)+".a"+strconv.Itoa(i)+".bench.example.com", tokens, 5*time.Millisecond)
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				finalize = append(finalize, tm.valid.Sub(tm.finalize))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	l := summarize(finalize)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "orders/s")
	b.ReportMetric(l.P99, "p99-finalize-ms")
	// CPU per order (server and client together) varies less than
	// orders/s on a shared machine.
	b.ReportMetric(float64(cpuclock.Used()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/order")
}
