package main

import (
	"fmt"
	"sync"
	"time"
)

// hsmModel makes signing cost wall time the way a network HSM does: a
// fixed latency per signature (the round trip and the card's own time)
// and a rate limit per token, a token bucket that every session of the
// token shares. Both run while the daemon holds no lock, so sessions
// overlap their latencies up to the token's rate, and this machine's CPU
// is not what limits them.
type hsmModel struct {
	latency time.Duration
	rate    float64 // signatures per second per token; 0: unlimited
	burst   int
	clock   clock
	mu      sync.Mutex
	tokens  map[uint64]*bucket // by slot id
}

// clock is time for the model; tests replace it so that they assert the
// waits exactly instead of timing them.
type clock interface {
	now() time.Time
	sleep(time.Duration)
}

type realClock struct{}

func (realClock) now() time.Time        { return time.Now() }
func (realClock) sleep(d time.Duration) { time.Sleep(d) }

// bucket is one token's limiter and counters. next is when the bucket is
// next empty-handed (GCRA: the theoretical arrival time).
type bucket struct {
	next       time.Time
	signatures uint64
	throttled  uint64 // signatures that waited for the bucket
	waited     time.Duration
	first      time.Time
	last       time.Time
}

// TokenStats is what the model counted for one token.
type TokenStats struct {
	Signatures uint64
	Throttled  uint64
	Waited     time.Duration
	// Span is from the first signature's start to the last one's end.
	Span time.Duration
}

func newHSMModel(latency time.Duration, rate float64, c clock) *hsmModel {
	if c == nil {
		c = realClock{}
	}
	// A burst of about 10 ms of the rate: enough that sessions starting
	// together do not queue behind each other, small enough that the
	// rate holds over any second.
	burst := max(1, int(rate/100))
	return &hsmModel{latency: latency, rate: rate, burst: burst, clock: c, tokens: map[uint64]*bucket{}}
}

// active reports whether signing is modelled at all.
func (m *hsmModel) active() bool { return m != nil && (m.latency > 0 || m.rate > 0) }

// sign spends the wall time of one signature on token slot: first its
// turn in the bucket, then the latency.
func (m *hsmModel) sign(slot uint64) {
	if !m.active() {
		return
	}
	var wait time.Duration
	m.mu.Lock()
	b := m.tokens[slot]
	if b == nil {
		b = &bucket{}
		m.tokens[slot] = b
	}
	now := m.clock.now()
	if b.signatures == 0 {
		b.first = now
	}
	b.signatures++
	if m.rate > 0 {
		interval := time.Duration(float64(time.Second) / m.rate)
		if b.next.Before(now) {
			b.next = now
		}
		// Up to burst signatures may start before their slot in the rate.
		if start := b.next.Add(-time.Duration(m.burst-1) * interval); start.After(now) {
			wait = start.Sub(now)
			b.throttled++
			b.waited += wait
		}
		b.next = b.next.Add(interval)
	}
	if end := now.Add(wait + m.latency); end.After(b.last) {
		b.last = end
	}
	m.mu.Unlock()
	if d := wait + m.latency; d > 0 {
		m.clock.sleep(d)
	}
}

// stats returns the counters of token slot.
func (m *hsmModel) stats(slot uint64) TokenStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.tokens[slot]
	if b == nil {
		return TokenStats{}
	}
	return TokenStats{Signatures: b.signatures, Throttled: b.throttled, Waited: b.waited, Span: b.last.Sub(b.first)}
}

// report is the line the daemon logs per token at exit: what a benchmark
// reads to say how busy the token was.
func (m *hsmModel) report(slot uint64) string {
	st := m.stats(slot)
	rate := 0.0
	if st.Span > 0 {
		rate = float64(st.Signatures) / st.Span.Seconds()
	}
	busy := ""
	if m.rate > 0 {
		busy = fmt.Sprintf(", busy %.3f of --max-rate", rate/m.rate)
	}
	return fmt.Sprintf("slot %d model: %d signatures, %d throttled (waited %s), %.0f/s over %s%s",
		slot, st.Signatures, st.Throttled, st.Waited.Round(time.Millisecond), rate, st.Span.Round(time.Millisecond), busy)
}
