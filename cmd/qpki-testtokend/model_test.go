package main

import (
	"sync"
	"testing"
	"time"
)

// fakeClock stands still and records every sleep: the test asserts the
// waits the model asks for, not how long anything took.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) sleep(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
}

// --sign-latency and --max-rate: every C_Sign, from any session of the
// token, waits its turn in one bucket and then the latency. Signatures
// arriving at one instant from two sessions: the first burst go at once,
// each later one a rate interval after the one before.
func TestModelledHSMSharesOneBucketPerToken(t *testing.T) {
	s, _ := newTestServer(t, t.TempDir())
	fc := &fakeClock{t: time.Unix(1_000_000, 0)}
	const rate, latency = 1000.0, 2 * time.Millisecond // burst 10, interval 1 ms
	s.model = newHSMModel(latency, rate, fc)
	a, b := newClient(t, s, 1), newClient(t, s, 2)
	sa, sb := a.session(true), b.session(true)
	a.must(opLogin, sa, CKU_USER, testUserPIN)
	_, priv := a.genMLDSA(sa, true)
	b.must(opLogin, sb, CKU_USER, testUserPIN)
	// b finds the token key by handle: the same object on the same token.
	const n = 16
	for i := 0; i < n; i++ {
		cl, sess := a, sa
		if i%2 == 1 {
			cl, sess = b, sb
		}
		if rv, sig := cl.sign(sess, priv, []byte("m")); rv != CKR_OK || len(sig) == 0 {
			t.Fatalf("signature %d: CKR 0x%x", i, rv)
		}
	}
	if len(fc.sleeps) != n {
		t.Fatalf("%d sleeps for %d signatures", len(fc.sleeps), n)
	}
	for i, d := range fc.sleeps {
		want := latency
		if i >= 10 {
			want += time.Duration(i-9) * time.Millisecond
		}
		if d != want {
			t.Errorf("signature %d waited %s, want %s", i, d, want)
		}
	}
	st := s.model.stats(0)
	if st.Signatures != n || st.Throttled != n-10 || st.Waited != 21*time.Millisecond {
		t.Errorf("stats %+v, want %d signatures, %d throttled, 21ms waited", st, n, n-10)
	}
	if st.Span != 8*time.Millisecond { // the last one starts 6 ms late and takes 2 ms
		t.Errorf("span %s, want 8ms", st.Span)
	}
}

// Without the flags nothing is modelled: no waits at all.
func TestUnmodelledTokenDoesNotWait(t *testing.T) {
	s, _ := newTestServer(t, t.TempDir())
	fc := &fakeClock{}
	s.model = newHSMModel(0, 0, fc)
	cl := newClient(t, s, 1)
	sess := cl.session(true)
	cl.must(opLogin, sess, CKU_USER, testUserPIN)
	_, priv := cl.genMLDSA(sess, true)
	if rv, _ := cl.sign(sess, priv, []byte("m")); rv != CKR_OK || len(fc.sleeps) != 0 {
		t.Fatalf("CKR 0x%x, sleeps %v", rv, fc.sleeps)
	}
}

func TestModelFlagsAreBounded(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"--max-rate", "-1"}, {"--sign-latency", "-2ms"}, {"--sign-latency", "2h"}} {
		if err := run(append([]string{"--dir", dir, "--socket", dir + "/s"}, args...)); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// BenchmarkModelledHSM signs through the daemon's wire handler from 16
// sessions against the modelled network HSM (2 ms a signature, 2,000/s a
// token) and reports the rate and how busy the token was:
//
//	go test -run '^$' -bench ModelledHSM -benchtime 4000x ./cmd/qpki-testtokend/
func BenchmarkModelledHSM(b *testing.B) {
	s, _ := newTestServer(b, b.TempDir())
	s.model = newHSMModel(2*time.Millisecond, 2000, nil)
	const sessions = 16
	cls := make([]*client, sessions)
	hs := make([]uint64, sessions)
	var priv uint64
	for i := range cls {
		cls[i] = newClient(b, s, byte(i+1))
		hs[i] = cls[i].session(true)
		cls[i].must(opLogin, hs[i], CKU_USER, testUserPIN)
		if i == 0 {
			_, priv = cls[i].genMLDSA(hs[i], true)
		}
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var next sync.Mutex
	left := b.N
	for i := range cls {
		wg.Add(1)
		go func(cl *client, h uint64) {
			defer wg.Done()
			for {
				next.Lock()
				if left == 0 {
					next.Unlock()
					return
				}
				left--
				next.Unlock()
				if rv, _ := cl.sign(h, priv, []byte("m")); rv != CKR_OK {
					panic(rv)
				}
			}
		}(cls[i], hs[i])
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	st := s.model.stats(0)
	b.ReportMetric(float64(b.N)/el.Seconds(), "signs/s")
	b.ReportMetric(float64(b.N)/el.Seconds()/2000, "busy")
	b.ReportMetric(float64(st.Throttled)/float64(st.Signatures), "throttled-frac")
}
