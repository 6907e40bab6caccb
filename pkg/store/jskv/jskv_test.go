package jskv_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/internal/natstest"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
	"github.com/qpki/qpki/pkg/store/storetest"
)

// connect opens a NATS connection of its own: each client of a test is
// another connection, as another front-end process would be.
func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	return natstest.Connect(t, url)
}

var caSeq atomic.Int32

// freshCA names a CA no other subtest uses: fresh buckets on a shared
// server.
func freshCA() string { return fmt.Sprintf("ca%d", caSeq.Add(1)) }

func storeOpener(url string, replicas int) storetest.Opener[storetest.CAStore] {
	return func(t *testing.T) func() storetest.CAStore {
		ca := freshCA()
		return func() storetest.CAStore {
			s, err := jskv.Open(context.Background(), connect(t, url), jskv.Options{CA: ca, Replicas: replicas})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
}

func acmeOpener(url string, replicas int) storetest.Opener[store.ACMEStore] {
	return func(t *testing.T) func() store.ACMEStore {
		ca := freshCA()
		return func() store.ACMEStore {
			s, err := jskv.OpenACME(context.Background(), connect(t, url), jskv.Options{CA: ca, Replicas: replicas, Instance: "fe1"})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
}

// The shared behavioural tests on one server; the two clients of the
// race tests are two connections.
func TestSuite(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	storetest.RunStore(t, storeOpener(url, 1))
	storetest.RunACME(t, acmeOpener(url, 1), true)
}

// The race tests again on a three-node cluster with R3 buckets, the two
// clients connected to different nodes.
func TestClusterRaces(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	cl := natstest.StartCluster(t, 3)
	urls := cl.URLs()
	n := 0
	opener := func(t *testing.T) func() storetest.CAStore {
		ca := freshCA()
		return func() storetest.CAStore {
			n++
			s, err := jskv.Open(context.Background(), connect(t, urls[n%3]), jskv.Options{CA: ca, Replicas: 3})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	storetest.RunStore(t, opener)
}

func TestBucketsAreReplicatedWithoutDirectGets(t *testing.T) {
	cl := natstest.StartCluster(t, 3)
	js := connect(t, cl.URL())
	ctx := context.Background()
	if _, err := jskv.Open(ctx, js, jskv.Options{CA: "issuing", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	// Opening again (another front-end) keeps the configuration.
	if _, err := jskv.Open(ctx, connect(t, cl.URLs()[2]), jskv.Options{CA: "issuing", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"CERTS", "SERIALS", "JOBS", "META"} {
		st, err := js.Stream(ctx, "KV_"+jskv.BucketName("issuing", b))
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		if cfg.Replicas != 3 || cfg.AllowDirect {
			t.Fatalf("%s: replicas %d, direct gets %v; want 3 and off", b, cfg.Replicas, cfg.AllowDirect)
		}
	}
}

func TestOptions(t *testing.T) {
	js := connect(t, natstest.StartCluster(t, 1).URL())
	for _, o := range []jskv.Options{{CA: ""}, {CA: "a.b"}, {CA: "x", Replicas: 7}} {
		if _, err := jskv.Open(context.Background(), js, o); err == nil {
			t.Errorf("Open(%+v) accepted", o)
		}
	}
	if _, err := jskv.OpenACME(context.Background(), js, jskv.Options{CA: "x"}); err == nil {
		t.Error("an ACME store without an instance name")
	}
}

// A front-end learns of jobs that another one's recorder finished.
func TestWatchFinished(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := jskv.Open(ctx, connect(t, url), jskv.Options{CA: "w"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := jskv.Open(ctx, connect(t, url), jskv.Options{CA: "w"})
	if err != nil {
		t.Fatal(err)
	}
	woken := make(chan string, 4)
	go a.WatchFinished(ctx, func(id string) { woken <- id })
	time.Sleep(100 * time.Millisecond) // the watcher is in place
	if _, _, err := b.CreateJob(&store.Job{ID: "j1", RequestHash: "h", State: store.JobQueued}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FinishJob(store.Finished{ID: "j1", State: store.JobFailed, Error: "no"}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-woken:
		if id != "j1" {
			t.Fatalf("woken for %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the finished job was not reported")
	}
	select {
	case id := <-woken:
		t.Fatalf("woken again for %q (a queued job is not finished)", id)
	case <-time.After(200 * time.Millisecond):
	}
}
