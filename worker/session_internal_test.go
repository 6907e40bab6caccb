package worker

import (
	"crypto"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// slowSigner signs after a pause, and records whether its session was
// closed while it was signing.
type slowSigner struct {
	algo.Signer
	signing, closedUnder atomic.Bool
	started              chan struct{}
}

func (s *slowSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	s.signing.Store(true)
	close(s.started)
	time.Sleep(50 * time.Millisecond)
	s.signing.Store(false)
	return []byte("sig"), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// A session closes only between signatures (SoftHSM crashes when a
// session closes under C_Sign), and refuses to sign once closed.
func TestSessionClosesBetweenSignatures(t *testing.T) {
	slow := &slowSigner{started: make(chan struct{})}
	g := &gate{busy: func(time.Duration) {}}
	signer := newSessionSigner(slow, g)
	s := &session{gate: g, closer: closerFunc(func() error {
		if slow.signing.Load() {
			slow.closedUnder.Store(true)
		}
		return nil
	})}
	done := make(chan error)
	go func() {
		_, err := signer.Sign(nil, nil, crypto.SHA256)
		done <- err
	}()
	<-slow.started
	s.close()
	if slow.closedUnder.Load() {
		t.Fatal("the session was closed while a signature was in progress")
	}
	if err := <-done; err != nil {
		t.Fatalf("the signature in progress failed: %v", err)
	}
	if _, err := signer.Sign(nil, nil, crypto.SHA256); !errors.Is(err, errSessionClosed) {
		t.Fatalf("sign after close: %v, want errSessionClosed", err)
	}
}

func testSession() *session {
	return &session{gate: &gate{}, closer: closerFunc(func() error { return nil })}
}

// The goroutines of a worker session that all see its signer fail reopen
// it once between them, and the session given up is closed: failures do
// not multiply sessions.
func TestGroupReopensOnce(t *testing.T) {
	a := testSession()
	g := &group{cur: a}
	opens := 0
	open := func() (*session, error) { opens++; return testSession(), nil }
	noLog := func(error) {}
	b := g.reopen(a, open, noLog)
	c := g.reopen(a, open, noLog) // a sibling that saw the same failure
	if opens != 1 || b == a || c != b || g.current() != b {
		t.Fatalf("opens %d, sessions a=%p b=%p c=%p current=%p", opens, a, b, c, g.current())
	}
	if !a.gate.closed {
		t.Fatal("the session given up was not closed")
	}
	var logged error
	d := g.reopen(b, func() (*session, error) { return nil, errors.New("token gone") }, func(err error) { logged = err })
	if d != b || logged == nil || b.gate.closed {
		t.Fatalf("a failed reopen: got %p (want %p), logged %v, closed %v", d, b, logged, b.gate.closed)
	}
}

// batchSigner signs in batches, one batch at a time, holding the first
// until release is closed; a signature is "sig:" and the digest.
type batchSigner struct {
	algo.Signer
	release  chan struct{}
	batches  chan int
	inBatch  atomic.Int32
	overlaps atomic.Int32
}

func (b *batchSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("Sign called on a batch signer")
}

func (b *batchSigner) SignBatch(reqs []algo.SignRequest) {
	if b.inBatch.Add(1) > 1 {
		b.overlaps.Add(1)
	}
	defer b.inBatch.Add(-1)
	<-b.release
	for i := range reqs {
		reqs[i].Sig = append([]byte("sig:"), reqs[i].Digest...)
	}
	b.batches <- len(reqs)
}

// The signatures that wait for a batch signer's session go in batches,
// one at a time, and each caller gets its own signature.
func TestSessionSignsInBatches(t *testing.T) {
	bs := &batchSigner{release: make(chan struct{}), batches: make(chan int, 200)}
	g := &gate{busy: func(time.Duration) {}}
	signer := newSessionSigner(bs, g)
	const n = 100
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			d := []byte{byte(i), byte(i >> 8)}
			sig, err := signer.Sign(nil, d, crypto.SHA256)
			if err == nil && string(sig) != "sig:"+string(d) {
				err = errors.New("got another caller's signature")
			}
			errs <- err
		}()
	}
	// Let the callers queue behind the first batch, which holds the turn.
	deadline := time.Now().Add(10 * time.Second)
	for {
		signer.queue.mu.Lock()
		waiting := len(signer.queue.calls)
		signer.queue.mu.Unlock()
		if waiting >= n-1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(bs.release)
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	total, biggest := 0, 0
	for total < n {
		k := <-bs.batches
		total += k
		biggest = max(biggest, k)
	}
	if total != n {
		t.Errorf("%d signatures in the batches, want %d", total, n)
	}
	if biggest != maxBatch {
		t.Errorf("largest batch %d, want %d (callers were waiting)", biggest, maxBatch)
	}
	if bs.overlaps.Load() != 0 {
		t.Error("two batches ran at once on one session")
	}
	(&session{gate: g}).close()
	if _, err := signer.Sign(nil, []byte{1}, crypto.SHA256); !errors.Is(err, errSessionClosed) {
		t.Fatalf("sign after close: %v, want errSessionClosed", err)
	}
}

type panicBatchSigner struct{ algo.Signer }

func (panicBatchSigner) SignBatch([]algo.SignRequest) { panic("token driver bug") }

// A signer that panics in a batch leaves no caller of that batch waiting:
// each is marked done, with an error.
func TestBatchPanicReleasesCallers(t *testing.T) {
	g := &gate{busy: func(time.Duration) {}}
	signer := newSessionSigner(panicBatchSigner{}, g)
	other := &signCall{req: algo.SignRequest{Digest: []byte{2}}}
	signer.queue.add(other) // queued ahead, so taken in the same batch
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the signer's panic did not reach its caller")
			}
		}()
		signer.Sign(nil, []byte{1}, crypto.SHA256)
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !other.done || other.req.Err == nil {
		t.Fatalf("the other call of the batch: done %v, err %v", other.done, other.req.Err)
	}
}
