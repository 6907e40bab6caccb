// Package natstest runs NATS JetStream clusters in-process for tests:
// real nats-servers on loopback, joined by routes, each with its own file
// store under t.TempDir().
package natstest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/qpki/qpki/internal/testport"
)

// Cluster is a running test cluster. Its nodes can be killed and
// restarted on the same ports and store.
type Cluster struct {
	t     testing.TB
	name  string
	mu    sync.Mutex
	opts  []*server.Options
	nodes []*server.Server // nil when the node is down
}

// StartCluster starts n servers (n ≥ 1) clustered with JetStream, waits
// until they have elected a JetStream leader, and shuts them down when
// the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: cluster of %d nodes", n)
	}
	c := &Cluster{t: t, name: "qpki-test", opts: make([]*server.Options, n), nodes: make([]*server.Server, n)}
	// Cluster ports are chosen up front so that every node starts with
	// routes to all the others, as a configured cluster would.
	clusterPorts := make([]int, n)
	storeDirs := make([]string, n)
	for i := range clusterPorts {
		clusterPorts[i] = freePort(t)
		storeDirs[i] = t.TempDir()
	}
	// Registered after the TempDirs, so it runs before their removal.
	t.Cleanup(c.Shutdown)
	for i := range n {
		o := &server.Options{
			ServerName: "n" + strconv.Itoa(i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   storeDirs[i],
			NoSigs:     true,
			NoLog:      true,
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: c.name, Host: "127.0.0.1", Port: clusterPorts[i]}
			var routes []string
			for j, p := range clusterPorts {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
				}
			}
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
		s := c.start(o)
		// Pin the client port so that a restart comes back at the same place.
		o.Port = s.Addr().(*net.TCPAddr).Port
		c.opts[i] = o
		c.nodes[i] = s
	}
	c.WaitReady()
	return c
}

func (c *Cluster) start(o *server.Options) *server.Server {
	c.t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		c.t.Fatalf("natstest: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("natstest: server %s not ready", o.ServerName)
	}
	return s
}

// WaitReady waits until the running nodes agree on a JetStream leader.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c.ready() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("natstest: JetStream cluster did not elect a leader")
}

func (c *Cluster) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	leader := false
	for _, s := range c.nodes {
		if s == nil {
			continue
		}
		if len(c.nodes) > 1 && !s.JetStreamIsCurrent() {
			return false
		}
		if len(c.nodes) == 1 || s.JetStreamIsLeader() {
			leader = true
		}
	}
	return leader
}

// URL is the client URLs of all nodes, comma-separated, as nats.Connect
// and queue.Options.NATSURL take them.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// URLs are the client URLs of all nodes, running or not.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return urls
}

// Server returns node i, or nil when it is down.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Kill shuts node i down.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	s := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts node i again on its ports and store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	running := c.nodes[i] != nil
	c.mu.Unlock()
	if running {
		return
	}
	s := c.start(c.opts[i].Clone())
	c.mu.Lock()
	c.nodes[i] = s
	c.mu.Unlock()
}

// Shutdown stops every node; the test's cleanup calls it.
func (c *Cluster) Shutdown() {
	for i := range c.nodes {
		c.Kill(i)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int { return testport.Free(t) }
