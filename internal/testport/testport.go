// Package testport hands tests a loopback TCP port to pass to a program
// that listens on it later (a NATS node of a test cluster, the port an
// ACME client answers http-01 on).
//
// Asking the kernel for port 0 gives a port from the ephemeral range, the
// same range outgoing connections take their local ports from: on a busy
// test machine one of those can take the port between the test's pick and
// the program's listen ("address already in use"). So the port comes from
// below that range, where only listeners that name a port go.
package testport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

const (
	low  = 20000
	high = 32767 // Linux's ephemeral range starts at 32768
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free returns a loopback TCP port that was free a moment ago and that
// this process has not handed out before.
func Free(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		p := low + rand.IntN(high-low+1)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		return p
	}
	t.Fatal("testport: no free port")
	return 0
}
