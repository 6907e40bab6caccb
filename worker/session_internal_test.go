package worker

import (
	"crypto"
	"errors"
	"io"
	"sync"
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
	mu, closed := new(sync.Mutex), new(bool)
	signer := sessionSigner{slow, mu, closed, func(time.Duration) {}}
	s := &session{mu: mu, closed: closed, closer: closerFunc(func() error {
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
