package queue

import (
	"context"
	"fmt"
	"github.com/nats-io/nats.go/jetstream"
	"testing"
	"time"

	"github.com/qpki/qpki/internal/natstest"
)

// TestClusterSurvivesNodeLoss runs the streams at R3 on a three-node
// cluster, kills a node mid-run and keeps publishing and consuming.
func TestClusterSurvivesNodeLoss(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, err := Connect(ctx, Options{NATSURL: c.URL(), RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	st, err := q.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Replicas != 3 {
		t.Fatalf("replicas = %d, want 3 on a three-node cluster", st.Replicas)
	}
	info, err := q.jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("jobs stream is not R3: %+v", info.Cluster)
	}
	// Results are read from the leader: a follower's direct get could
	// miss one just stored (a lookup right after the publish failed so).
	for _, s := range []jetstream.Stream{q.results, q.dead} {
		if s.CachedInfo().Config.AllowDirect {
			t.Errorf("stream %s allows direct gets", s.CachedInfo().Config.Name)
		}
	}

	jc, err := q.Jobs(ctx, "root", ConsumeOptions{AckWait: 2 * time.Second, PollWait: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const total = 60
	done := make(chan map[string]int, 1)
	go func() {
		seen := map[string]int{}
		for len(seen) < total {
			d, err := jc.Next(ctx)
			if err != nil {
				t.Errorf("Next after %d jobs: %v", len(seen), err)
				break
			}
			// Results and acks ride over the loss of a node: retry the
			// publish until it is stored.
			for {
				err := q.PublishResult(ctx, Result{JobID: d.Job.ID, CA: "root", Kind: KindIssue, OK: true})
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Errorf("result of %s: %v", d.Job.ID, err)
					done <- seen
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			d.Ack()
			seen[d.Job.ID]++
		}
		done <- seen
	}()

	publish := func(i int) {
		t.Helper()
		for {
			err := q.PublishJob(ctx, testJob(fmt.Sprintf("c%d", i), ClassBatch))
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("publishing job %d: %v", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i := range total / 2 {
		publish(i)
	}
	// Kill the node the client is connected to, so that it must fail over.
	killed := -1
	for i, u := range c.URLs() {
		if u == q.nc.ConnectedUrl() {
			killed = i
		}
	}
	if killed < 0 {
		t.Fatalf("connected to %s, not a cluster node", q.nc.ConnectedUrl())
	}
	c.Kill(killed)
	for i := total / 2; i < total; i++ {
		publish(i)
	}
	seen := <-done
	if len(seen) != total {
		t.Fatalf("consumed %d of %d jobs", len(seen), total)
	}
	for i := range total {
		id := fmt.Sprintf("c%d", i)
		if seen[id] != 1 {
			t.Errorf("job %s consumed %d times", id, seen[id])
		}
		if r, err := q.LookupResult(ctx, "root", id); err != nil || !r.OK {
			t.Errorf("result of %s: %+v, %v", id, r, err)
		}
	}
	// A second result for a job is refused by the cluster too.
	if err := q.PublishResult(ctx, Result{JobID: "c0", CA: "root", Kind: KindIssue, Error: "late", Finished: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if r, _ := q.LookupResult(ctx, "root", "c0"); !r.OK {
		t.Fatal("the late failure replaced the first result")
	}
	// The lost node comes back on its ports and store and catches up.
	c.Restart(killed)
	c.WaitReady()
	if c.Server(killed) == nil {
		t.Fatal("node did not restart")
	}
}
