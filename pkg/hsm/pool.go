package hsm

import (
	"errors"
	"sync"

	"github.com/miekg/pkcs11"
)

var errTokenClosed = errors.New("hsm: token is closed")

// pool bounds the sessions open on one token and keeps idle ones for reuse.
// A caller holds its session for a whole operation, so concurrent signers
// never share a session and need no lock while the token works.
type pool struct {
	mu     sync.Mutex
	cond   *sync.Cond
	limit  int
	inUse  int
	idle   []pkcs11.SessionHandle
	closed bool
	peak   int // most sessions in use at once, for tests
}

func newPool(limit int) *pool {
	p := &pool{limit: limit}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// get waits for room under the limit. It returns an idle session when one
// is available and fresh is false; otherwise ok is false and the caller
// opens a new session.
func (p *pool) get(fresh bool) (s pkcs11.SessionHandle, ok bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.closed && p.inUse >= p.limit {
		p.cond.Wait()
	}
	if p.closed {
		return 0, false, errTokenClosed
	}
	p.inUse++
	p.peak = max(p.peak, p.inUse)
	if !fresh && len(p.idle) > 0 {
		s = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		return s, true, nil
	}
	return 0, false, nil
}

// put gives back the room taken by get. keep returns s to the idle list;
// the result reports whether it was kept (a closed pool keeps nothing).
func (p *pool) put(s pkcs11.SessionHandle, keep bool) (kept bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse--
	if keep && !p.closed {
		p.idle = append(p.idle, s)
		kept = true
	}
	p.cond.Signal()
	return kept
}

// drain empties the idle list and returns what was in it.
func (p *pool) drain() []pkcs11.SessionHandle {
	p.mu.Lock()
	defer p.mu.Unlock()
	idle := p.idle
	p.idle = nil
	return idle
}

// grow raises the limit (never lowers it).
func (p *pool) grow(limit int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if limit > p.limit {
		p.limit = limit
		p.cond.Broadcast()
	}
}

// close refuses further gets and returns the idle sessions.
func (p *pool) close() []pkcs11.SessionHandle {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.cond.Broadcast()
	return idle
}
