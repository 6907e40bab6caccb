package nonce

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

func openStore(t *testing.T, path string) *store.ACMEBolt {
	t.Helper()
	st, err := store.OpenACME(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestSingleUse(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "acme.db"))
	defer st.Close()
	s, err := New(st, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.Nonce(), s.Nonce()
	if a == b || len(a) < 22 {
		t.Fatalf("nonces %q %q", a, b)
	}
	if !s.Use(a) || s.Use(a) {
		t.Fatal("a nonce must be usable exactly once")
	}
	if s.Use("made-up") || s.Use("") {
		t.Fatal("an unknown nonce was accepted")
	}
	now := time.Now()
	s.now = func() time.Time { return now.Add(2 * time.Minute) }
	if s.Use(b) {
		t.Fatal("an expired nonce was accepted")
	}
}

func TestEviction(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "acme.db"))
	defer st.Close()
	s, _ := New(st, time.Hour, 100)
	first := s.Nonce()
	var last string
	for i := 0; i < 5000; i++ {
		last = s.Nonce()
		if i%2 == 0 {
			s.Use(last)
		}
	}
	if s.Len() > 100 {
		t.Fatalf("%d nonces outstanding, max 100", s.Len())
	}
	if s.Use(first) {
		t.Fatal("the oldest nonce survived eviction")
	}
	if len(s.queue)-s.head > 3*100+2048 {
		t.Fatalf("the issue queue grew to %d", len(s.queue)-s.head)
	}
}

func TestRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acme.db")
	st := openStore(t, path)
	s, _ := New(st, time.Hour, 0)
	kept, used := s.Nonce(), s.Nonce()
	if err := s.sync(false); err != nil { // kept and used reach the disk
		t.Fatal(err)
	}
	s.Use(used)
	unsynced := s.Nonce()
	if err := s.Close(); err != nil { // a clean shutdown
		t.Fatal(err)
	}
	st.Close()

	st = openStore(t, path)
	s, _ = New(st, time.Hour, 0)
	if !s.Use(kept) || !s.Use(unsynced) {
		t.Fatal("nonces outstanding at a clean shutdown were lost")
	}
	if s.Use(used) {
		t.Fatal("a nonce used before the shutdown came back")
	}
	lost := s.Nonce()
	s.sync(false)
	st.Close() // a crash: no final sync

	st = openStore(t, path)
	defer st.Close()
	s, _ = New(st, time.Hour, 0)
	if s.Use(lost) || s.Len() != 0 {
		t.Fatal("nonces survived a crash")
	}
}

func BenchmarkNonce(b *testing.B) {
	st := openStore(&testing.T{}, filepath.Join(b.TempDir(), "acme.db"))
	defer st.Close()
	s, _ := New(st, time.Hour, 0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !s.Use(s.Nonce()) {
				b.Fatal("nonce refused")
			}
		}
	})
}

// TestAbandon: nonces saved by Abandon (a shutdown with handlers still
// running) are not restored.
func TestAbandon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acme.db")
	st := openStore(t, path)
	s, _ := New(st, time.Hour, 0)
	n := s.Nonce()
	if err := s.Abandon(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = openStore(t, path)
	defer st.Close()
	s, _ = New(st, time.Hour, 0)
	if s.Use(n) {
		t.Fatal("a nonce saved by Abandon was restored")
	}
}
