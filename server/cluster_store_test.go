package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/internal/natstest"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
	"github.com/qpki/qpki/queue"
)

// Two serve front-ends share one JetStream store (--store jetstream) on a
// three-node cluster: each takes half of a batch, the results of either
// may be recorded by the other's recorder, and yet every request gets
// one certificate, both front-ends list every certificate, no serial is
// repeated, and the audit stream exports as a chain that verifies. ACME
// nonces and EST users are shared too (checkSharedFrontendState).
func TestClusterTwoFrontendsShareJetStreamStore(t *testing.T) {
	n := 400
	if v := os.Getenv("QPKI_TEST_N"); v != "" {
		fmt.Sscan(v, &n)
	}
	cl := natstest.StartCluster(t, 3)
	e := newEnv(t)
	// The second front-end runs on "another machine": its own copy of
	// the CA dir (same name, so the same CA in queue and buckets) and
	// its own data dir.
	caDir2 := filepath.Join(e.dir, "fe2", filepath.Base(e.caDir))
	if err := os.MkdirAll(filepath.Dir(caDir2), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", e.caDir, caDir2).CombinedOutput(); err != nil {
		t.Fatalf("copy the CA dir: %v\n%s", err, out)
	}
	urls := cl.URLs()
	fronts := []struct{ caDir, data, url string }{
		{e.caDir, filepath.Join(e.dir, "data1"), urls[0]},
		{caDir2, filepath.Join(e.dir, "data2"), urls[1]},
	}
	// Both at once, as a rolling deploy starts them: they declare the same
	// streams, buckets and durable recorder consumer at the same instant.
	for i, f := range fronts {
		e.start(fmt.Sprintf("serve%d", i+1), "serve", "--store", "jetstream", "--nats-url", f.url, "--ca-dir", f.caDir,
			"--data-dir", f.data, "--listen", "127.0.0.1:0", "--workers", "0", "--est-config", estConfig(t, e.dir))
	}
	for _, f := range fronts {
		waitServe(t, e, f.caDir)
	}
	e.start("worker", "worker", "--ca-dir", e.caDir, "--workers", "2", "--nats-url", cl.URL())
	checkSharedFrontendState(t, e, cl.URL(), e.caDir, []string{"serve1.log", "serve2.log"})

	// Half of the batch through each front-end, at the same time.
	reqs := e.writeBatch(n)
	halves := splitBatch(t, reqs)
	outs := []string{filepath.Join(e.dir, "out1"), filepath.Join(e.dir, "out2")}
	var wg sync.WaitGroup
	for i, f := range fronts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(qpkiBin, "batch", "submit", halves[i], "--ca-dir", f.caDir, "--out", outs[i]).CombinedOutput()
			if err != nil {
				t.Errorf("batch through front-end %d: %v\n%s", i+1, err, tail(string(out)))
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		out, _ := exec.Command(qpkiBin, "queue", "status", "--ca-dir", e.caDir).CombinedOutput()
		t.Logf("queue status:\n%s", out)
		logQueuedJobs(t, cl.URL(), filepath.Base(e.caDir))
		dumpLogs(t, e)
		t.FailNow()
	}

	// Every request has its certificate; none shares a serial.
	delivered := map[string]string{} // serial → line
	for i := range n {
		path := filepath.Join(outs[i%2], fmt.Sprintf("line-%d.crt", i))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		block, _ := pem.Decode(data)
		if block == nil {
			t.Fatalf("line %d: no PEM", i)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("host-%d.example.com", i); cert.DNSNames[0] != want {
			t.Fatalf("line %d got the certificate of %s", i, cert.DNSNames[0])
		}
		s := store.FormatSerial(cert.SerialNumber)
		if prev, dup := delivered[s]; dup {
			t.Fatalf("serial %s delivered to line %d and %s", s, i, prev)
		}
		delivered[s] = fmt.Sprint(i)
	}

	// Both front-ends list every certificate of the shared index.
	for i, f := range fronts {
		out := e.run("cert", "list", "--ca-dir", f.caDir, "--json")
		var listed []struct {
			Serial string `json:"serial"`
		}
		if err := json.Unmarshal([]byte(out), &listed); err != nil {
			t.Fatalf("cert list of front-end %d: %v\n%s", i+1, err, tail(out))
		}
		seen := map[string]bool{}
		for _, c := range listed {
			if seen[c.Serial] {
				t.Fatalf("front-end %d lists serial %s twice", i+1, c.Serial)
			}
			seen[c.Serial] = true
		}
		for s, line := range delivered {
			if !seen[s] {
				t.Fatalf("front-end %d does not list serial %s (line %s)", i+1, s, line)
			}
		}
	}

	// The shared index itself: one record per serial, each delivered
	// certificate recorded as delivered.
	js := natstest.Connect(t, cl.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := jskv.Open(ctx, js, jskv.Options{CA: filepath.Base(e.caDir), Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.List(store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if extra := len(recs) - n; extra < 0 || extra > 4 {
		t.Fatalf("%d certificates in the shared index for %d requests (and two listeners)", len(recs), n)
	}
	if info, err := js.Stream(ctx, "KV_"+jskv.BucketName(filepath.Base(e.caDir), "CERTS")); err != nil || info.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("the certificate bucket is not R3: %v", err)
	}

	// The audit stream is the chain of record: exported, it verifies,
	// and holds each issuance once.
	exported := filepath.Join(e.dir, "audit-export.jsonl")
	e.run("audit", "export", "--nats-url", cl.URL(), "--ca", filepath.Base(e.caDir), "--out", exported)
	out := e.run("audit", "verify", "--in", exported)
	if !strings.Contains(out, "chain intact") {
		t.Fatalf("audit verify --in: %s", out)
	}
	out = e.run("audit", "verify", "--nats-url", cl.URL(), "--ca-dir", caDir2)
	if !strings.Contains(out, fmt.Sprintf("all %d certificates accounted for", len(recs))) {
		t.Fatalf("audit verify --nats-url: %s", out)
	}
	issued := map[string]int{}
	f, err := os.Open(exported)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		e, err := audit.ParseEntry(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if e.Event == audit.EventIssue {
			issued[fmt.Sprint(e.Fields["serial"])]++
		}
	}
	for s, line := range delivered {
		if issued[s] != 1 {
			t.Fatalf("serial %s (line %s) has %d issuance entries, want 1", s, line, issued[s])
		}
	}
}

// waitServe waits until a serve answers on its local socket.
func waitServe(t *testing.T, e *env, caDir string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := exec.Command(qpkiBin, "queue", "status", "--over", "1ms", "--ca-dir", caDir).CombinedOutput(); err == nil && bytes.Contains(out, []byte("results")) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	dumpLogs(t, e)
	t.Fatalf("serve for %s did not come up", caDir)
}

// logQueuedJobs logs the jobs the shared store still has queued, and
// whether the queue holds a result for each: to tell a job never signed
// from a result never recorded.
func logQueuedJobs(t *testing.T, url, caName string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := natstest.Connect(t, url)
	st, err := jskv.Open(ctx, js, jskv.Options{CA: caName, Replicas: 3})
	if err != nil {
		t.Logf("opening the store: %v", err)
		return
	}
	jobs, err := st.Jobs(store.JobQueued)
	if err != nil {
		t.Logf("listing queued jobs: %v", err)
		return
	}
	results, err := js.Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Logf("opening the results stream: %v", err)
		return
	}
	for _, j := range jobs {
		got := "no result"
		if m, err := results.GetLastMsgForSubject(ctx, queue.ResultSubject(caName, j.ID)); err == nil {
			got = fmt.Sprintf("result stored at %s: %.200s", m.Time.Format(time.RFC3339Nano), m.Data)
		}
		t.Logf("queued job %s key %s created %s: %s", j.ID, j.Key, j.Created.Format(time.RFC3339Nano), got)
	}
}

func dumpLogs(t *testing.T, e *env) {
	logs, _ := filepath.Glob(filepath.Join(e.dir, "*.log"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		t.Logf("== %s\n%s", filepath.Base(l), tail(string(data)))
	}
}

// splitBatch writes the even and the odd lines of a batch file to two
// files.
func splitBatch(t *testing.T, path string) [2]string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var parts [2]bytes.Buffer
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		parts[i%2].Write(append(line, '\n'))
	}
	var out [2]string
	for i := range parts {
		out[i] = fmt.Sprintf("%s.%d", path, i)
		if err := os.WriteFile(out[i], parts[i].Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
