package server_test

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/qpki/qpki/internal/natstest"
)

// BenchmarkClusterBatch is the operating issue's figure: a batch issued by
// one process (serve with its own workers, embedded NATS) next to serve
// without workers plus one and two `qpki worker` processes on a
// three-node NATS cluster (R3 streams), in the same run. Every process
// shares the same two cores here, so the cluster figures show the cost of
// replication rather than the gain of more machines.
//
//	go test -run '^$' -bench ClusterBatch -benchtime 3000x ./server/
func BenchmarkClusterBatch(b *testing.B) {
	for _, mode := range []struct {
		name    string
		workers int // worker processes on the cluster; 0: one process
	}{{"single-process", 0}, {"cluster-1-worker", 1}, {"cluster-2-workers", 2}} {
		b.Run(mode.name, func(b *testing.B) {
			e := newEnv(b)
			reqs := e.writeBatch(b.N)
			if mode.workers == 0 {
				e.startServe(2)
			} else {
				cl := natstest.StartCluster(b, 3)
				nats := []string{"--nats-url", cl.URL()}
				e.start("serve", append([]string{"serve", "--ca-dir", e.caDir, "--data-dir", e.data, "--listen", "127.0.0.1:0", "--workers", "0"}, nats...)...)
				e.waitSocket()
				for i := 0; i < mode.workers; i++ {
					e.start("worker", append([]string{"worker", "--ca-dir", e.caDir, "--workers", "2"}, nats...)...)
				}
			}
			defer e.stopAll(b)
			out := filepath.Join(e.dir, "certs")
			b.ResetTimer()
			start := time.Now()
			if msg, err := exec.Command(qpkiBin, "batch", "submit", reqs, "--ca-dir", e.caDir, "--out", out).CombinedOutput(); err != nil {
				b.Fatalf("batch: %v\n%s", err, tail(string(msg)))
			}
			el := time.Since(start)
			b.StopTimer()
			if got := countFiles(out); got != b.N {
				b.Fatalf("%d certificates for %d requests", got, b.N)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "certs/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
