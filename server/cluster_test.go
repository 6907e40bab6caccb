package server_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/qpki/qpki/internal/natstest"
)

// Scale-out: a three-node NATS JetStream cluster (R3 streams), one serve
// process that runs no workers, and two worker processes. A batch runs
// while one NATS node and one worker are killed: every request ends with
// exactly one certificate, nothing lost, no serial repeated.
func TestClusterBatchSurvivesNodeAndWorkerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("long: a 5,000-certificate batch on a three-node cluster")
	}
	const n = 5000
	cl := natstest.StartCluster(t, 3)
	e := newEnv(t)
	nats := []string{"--nats-url", cl.URL()}
	e.start("serve", append([]string{"serve", "--ca-dir", e.caDir, "--data-dir", e.data, "--listen", "127.0.0.1:0", "--workers", "0"}, nats...)...)
	e.waitSocket()
	w1 := e.start("worker1", append([]string{"worker", "--ca-dir", e.caDir, "--workers", "2"}, nats...)...)
	e.start("worker2", append([]string{"worker", "--ca-dir", e.caDir, "--workers", "2"}, nats...)...)

	reqs := e.writeBatch(n)
	out := filepath.Join(e.dir, "certs")
	batch := exec.Command(qpkiBin, "batch", "submit", reqs, "--ca-dir", e.caDir, "--out", out)
	var blog bytes.Buffer
	batch.Stdout, batch.Stderr = &blog, &blog
	if err := batch.Start(); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, out, n/5)
	cl.Kill(1) // a NATS node, possibly a stream leader
	waitFiles(t, out, 2*n/5)
	w1.Process.Kill() // a worker, mid-job
	w1.Wait()
	if err := batch.Wait(); err != nil {
		t.Fatalf("batch: %v\n%s", err, tail(blog.String()))
	}
	if got := countFiles(out); got != n {
		t.Fatalf("%d certificates for %d requests", got, n)
	}
	e.stopAll(t)
	e.check(n, out)
	fmt.Fprintln(testingWriter{t}, tail(blog.String()))
}

type testingWriter struct{ t *testing.T }

func (w testingWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
