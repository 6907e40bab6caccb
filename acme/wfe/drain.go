package wfe

import (
	"sync"
	"time"
)

// gate counts the requests being served, so that at shutdown the nonces
// are saved only once the last handler is done: a nonce a handler
// redeems after the save would be restored as live at the next start
// (and could be replayed), one it issues would be lost.
type gate struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when closed and n reaches 0
}

func newGate() *gate { return &gate{idle: make(chan struct{})} }

// enter admits a request, unless the gate is closed.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.closed && g.n == 0 {
		close(g.idle)
	}
}

// close admits no more requests and waits up to timeout for those being
// served; false if some were still running.
func (g *gate) close(timeout time.Duration) bool {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		if g.n == 0 {
			close(g.idle)
		}
	}
	g.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-g.idle:
		return true
	case <-t.C:
		return false
	}
}

// Drain refuses new requests (503) and waits up to timeout for the ones
// being served to finish; false if some did not.
func (w *WFE) Drain(timeout time.Duration) bool { return w.gate.close(timeout) }
