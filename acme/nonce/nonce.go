// Package nonce issues and redeems ACME anti-replay nonces (RFC 8555
// §6.5): each is random, used at most once, and expires.
//
// The live set is held in memory and written to the ACME store in the
// background: nonces issued and redeemed between two writes never reach
// the disk. A clean shutdown saves the outstanding nonces, which the next
// start restores; after a crash they are all dropped (some may have been
// redeemed unrecorded), and clients get badNonce and retry with a fresh
// one, as RFC 8555 §6.5 has them do.
package nonce

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

// Source issues and redeems nonces: a Service, the default, holds them
// in this process; front-ends sharing a NATS cluster use a shared one
// (jskv.Nonces), so that a nonce from one is good at another.
type Source interface {
	// Nonce issues a new nonce.
	Nonce() string
	// Use redeems a nonce: true the first time for a live nonce, false
	// for an unknown, expired or reused one.
	Use(nonce string) bool
}

var _ Source = (*Service)(nil)

// Persister is the part of the ACME store nonces use.
type Persister interface {
	RestoreNonces(now time.Time) ([]store.ACMENonce, error)
	SyncNonces(issued []store.ACMENonce, used []string, final bool) error
}

// Defaults.
const (
	DefaultLifetime = time.Hour
	DefaultMax      = 200_000
	syncEvery       = time.Second
)

// Service issues and redeems nonces.
type Service struct {
	st       Persister
	lifetime time.Duration
	max      int
	now      func() time.Time

	mu    sync.Mutex
	live  map[string]int64 // nonce → expiry (unix nanoseconds)
	queue []entry          // issue order, for expiry and eviction
	head  int
	// Changes since the last sync: issued maps nonces not yet written
	// (redeeming one of those needs no write at all).
	issued map[string]int64
	used   []string
}

type entry struct {
	nonce string
	exp   int64
}

// New restores the nonces of a clean shutdown and returns the service.
// lifetime and max of 0 take the defaults.
func New(st Persister, lifetime time.Duration, max int) (*Service, error) {
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	if max <= 0 {
		max = DefaultMax
	}
	s := &Service{st: st, lifetime: lifetime, max: max, now: time.Now,
		live: map[string]int64{}, issued: map[string]int64{}}
	saved, err := st.RestoreNonces(s.now())
	if err != nil {
		return nil, err
	}
	for _, n := range saved {
		exp := n.Expires.UnixNano()
		s.live[n.Value] = exp
		s.queue = append(s.queue, entry{n.Value, exp})
	}
	return s, nil
}

// Nonce issues a new nonce.
func (s *Service) Nonce() string {
	var b [16]byte
	rand.Read(b[:])
	n := base64.RawURLEncoding.EncodeToString(b[:])
	exp := s.now().Add(s.lifetime).UnixNano()
	s.mu.Lock()
	s.live[n] = exp
	s.issued[n] = exp
	s.queue = append(s.queue, entry{n, exp})
	if len(s.live) > s.max {
		s.trim(0)
	}
	s.mu.Unlock()
	return n
}

// Use redeems a nonce: true the first time for a live nonce, false for an
// unknown, expired or reused one.
func (s *Service) Use(n string) bool {
	if len(n) == 0 || len(n) > 64 {
		return false
	}
	now := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.live[n]
	if !ok {
		return false
	}
	delete(s.live, n)
	if _, unsynced := s.issued[n]; unsynced {
		delete(s.issued, n)
	} else {
		s.used = append(s.used, n)
	}
	return now < exp
}

// trim drops expired nonces and, past the maximum, the oldest ones. The
// caller holds mu.
func (s *Service) trim(now int64) {
	for s.head < len(s.queue) {
		e := s.queue[s.head]
		exp, live := s.live[e.nonce]
		if live && exp == e.exp && exp > now && len(s.live) <= s.max {
			break
		}
		if live && exp == e.exp {
			delete(s.live, e.nonce)
			if _, unsynced := s.issued[e.nonce]; unsynced {
				delete(s.issued, e.nonce)
			} else {
				s.used = append(s.used, e.nonce)
			}
		}
		s.queue[s.head] = entry{}
		s.head++
	}
	// Compact when redeemed entries dominate the queue.
	if s.head > 1024 && s.head > len(s.queue)/2 || len(s.queue)-s.head > 2*len(s.live)+1024 {
		q := make([]entry, 0, len(s.live)+1024)
		for _, e := range s.queue[s.head:] {
			if exp, ok := s.live[e.nonce]; ok && exp == e.exp {
				q = append(q, e)
			}
		}
		s.queue, s.head = q, 0
	}
}

// Run syncs the nonce set to the store every second until ctx is done.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(syncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sync(false)
		}
	}
}

// Close saves the outstanding nonces and marks the shutdown clean.
func (s *Service) Close() error { return s.sync(true) }

// Abandon saves the changes without marking the shutdown clean: the next
// start restores no nonce, as after a crash.
func (s *Service) Abandon() error { return s.sync(false) }

func (s *Service) sync(final bool) error {
	s.mu.Lock()
	s.trim(s.now().UnixNano())
	issued := make([]store.ACMENonce, 0, len(s.issued))
	for n, exp := range s.issued {
		issued = append(issued, store.ACMENonce{Value: n, Expires: time.Unix(0, exp)})
	}
	used := s.used
	s.issued, s.used = map[string]int64{}, nil
	s.mu.Unlock()
	if len(issued) == 0 && len(used) == 0 && !final {
		return nil
	}
	err := s.st.SyncNonces(issued, used, final)
	if err != nil {
		// Put the changes back for the next attempt.
		s.mu.Lock()
		for _, n := range issued {
			if _, ok := s.live[n.Value]; ok {
				s.issued[n.Value] = n.Expires.UnixNano()
			}
		}
		s.used = append(s.used, used...)
		s.mu.Unlock()
	}
	return err
}

// Len is the number of outstanding nonces.
func (s *Service) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}
