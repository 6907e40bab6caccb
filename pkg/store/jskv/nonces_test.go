package jskv_test

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/internal/natstest"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
)

func TestNonces(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	ca := freshCA()
	ctx := context.Background()
	// Two front-ends, each on a connection of its own.
	a, err := jskv.OpenNonces(ctx, connect(t, url), jskv.Options{CA: ca}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := jskv.OpenNonces(ctx, connect(t, url), jskv.Options{CA: ca}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n, err := a.Issue()
	if err != nil {
		t.Fatal(err)
	}
	if !b.Use(n) {
		t.Fatal("a nonce from front-end a is refused at b")
	}
	if b.Use(n) || a.Use(n) {
		t.Fatal("a nonce is accepted twice")
	}
	// Garbage, a forged tag and a different CA's key are refused.
	n2 := a.Nonce()
	raw, _ := base64.RawURLEncoding.DecodeString(n2)
	raw[len(raw)-1] ^= 1
	for _, bad := range []string{"", "x", n2 + "A", base64.RawURLEncoding.EncodeToString(raw)} {
		if ok, err := b.Redeem(bad); ok || err != nil {
			t.Fatalf("Redeem(%q) = %v, %v", bad, ok, err)
		}
	}
	other, err := jskv.OpenNonces(ctx, connect(t, url), jskv.Options{CA: freshCA()}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if other.Use(n2) {
		t.Fatal("another CA's front-end accepts the nonce")
	}
	if !a.Use(n2) {
		t.Fatal("the untouched nonce is refused")
	}
}

func TestNonceExpires(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	n, err := jskv.OpenNonces(context.Background(), connect(t, url), jskv.Options{CA: freshCA()}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	old := n.Nonce()
	fresh := n.Nonce()
	if !n.Use(fresh) {
		t.Fatal("fresh nonce refused")
	}
	time.Sleep(1500 * time.Millisecond)
	if n.Use(old) {
		t.Fatal("an expired nonce is accepted")
	}
}

// Front-ends on different nodes of a cluster race to redeem the same
// nonces: each is accepted exactly once.
func TestNonceRaceOnCluster(t *testing.T) {
	cl := natstest.StartCluster(t, 3)
	urls := cl.URLs()
	ca := freshCA()
	var fes []*jskv.Nonces
	for i := range 2 {
		n, err := jskv.OpenNonces(context.Background(), connect(t, urls[i]), jskv.Options{CA: ca, Replicas: 3}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		fes = append(fes, n)
	}
	const rounds = 50
	for range rounds {
		nonce, err := fes[0].Issue()
		if err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, fe := range fes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := fe.Redeem(nonce)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if w := wins.Load(); w != 1 {
			t.Fatalf("nonce redeemed %d times, want exactly once", w)
		}
	}
}

func TestRecords(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	ca := freshCA()
	r, err := jskv.OpenRecords(context.Background(), connect(t, url), jskv.Options{CA: ca}, jskv.BucketEAB)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ V int }
	if err := r.Create("a b/ü", rec{1}); err != nil {
		t.Fatal(err)
	}
	if err := r.Create("a b/ü", rec{2}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	var got rec
	rev, err := r.Get("a b/ü", &got)
	if err != nil || got.V != 1 {
		t.Fatalf("get: %v %v", got, err)
	}
	if err := r.Update("a b/ü", rec{3}, rev); err != nil {
		t.Fatal(err)
	}
	if err := r.Update("a b/ü", rec{4}, rev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("update at a stale revision: %v", err)
	}
	if err := r.Create("z", rec{9}); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := r.List(func(name string, _ []byte) error { names = append(names, name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0] != "a b/ü" && names[1] != "a b/ü" {
		t.Fatalf("list: %q", names)
	}
	if err := r.Delete("a b/ü"); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete("a b/ü"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := r.Get("a b/ü", &got); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := r.Get("never", &got); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
}

// BenchmarkNonces issues and redeems one shared nonce per iteration on
// an embedded single-node server.
func BenchmarkNonces(b *testing.B) {
	url := natstest.StartCluster(b, 1).URL()
	js := natstest.Connect(b, url)
	n, err := jskv.OpenNonces(context.Background(), js, jskv.Options{CA: freshCA()}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("issue", func(b *testing.B) {
		for b.Loop() {
			if _, err := n.Issue(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("issue+redeem", func(b *testing.B) {
		for b.Loop() {
			if !n.Use(n.Nonce()) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("reject-garbage", func(b *testing.B) {
		bad := n.Nonce()[:53] + "A"
		for b.Loop() {
			if n.Use(bad) {
				b.Fatal("accepted")
			}
		}
	})
}
