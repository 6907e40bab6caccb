package eab

import (
	"encoding/base64"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	k, err := Add(dir, "", "first")
	if err != nil {
		t.Fatal(err)
	}
	if mac, err := base64.RawURLEncoding.DecodeString(k.HMAC); err != nil || len(mac) != 32 {
		t.Fatalf("HMAC %q: %v", k.HMAC, err)
	}
	if _, err := Add(dir, k.ID, ""); err == nil {
		t.Fatal("a key id was added twice")
	}
	if _, err := Add(dir, "bad id!", ""); err == nil {
		t.Fatal("a bad key id was accepted")
	}
	named, err := Add(dir, "web-team", "")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(Path(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	ks, err := List(dir)
	if err != nil || len(ks) != 2 {
		t.Fatalf("List: %v %v", ks, err)
	}
	if err := Remove(dir, named.ID); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir, named.ID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("removing twice: %v", err)
	}
	if err := Consume(dir, "nope", "acct", func([]byte) error { return nil }); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	bad := errors.New("bad MAC")
	if err := Consume(dir, k.ID, "acct", func([]byte) error { return bad }); !errors.Is(err, bad) {
		t.Fatalf("failed verification: %v", err)
	}
	// Single use, even when many accounts race for the key.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := Consume(dir, k.ID, "acct", func(mac []byte) error {
				if base64.RawURLEncoding.EncodeToString(mac) != k.HMAC {
					return bad
				}
				return nil
			})
			if err == nil {
				wins.Add(1)
			} else if !errors.Is(err, ErrUsed) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d accounts bound with one key", wins.Load())
	}
	ks, _ = List(dir)
	if len(ks) != 1 || ks[0].Used.IsZero() || ks[0].Account != "acct" {
		t.Fatalf("after use: %+v", ks)
	}
}

// Key ids are typed on command lines: none starts with '-', random or not.
func TestKeyIDsAreNotFlags(t *testing.T) {
	for i := 0; i < 2000; i++ { // a random id would start with '-' once in 64
		k, err := newKey("", "")
		if err != nil {
			t.Fatal(err)
		}
		if k.ID[0] == '-' || !kidRE.MatchString(k.ID) {
			t.Fatalf("random key id %q", k.ID)
		}
	}
	if _, err := newKey("-team", ""); err == nil {
		t.Fatal("a key id starting with '-' was accepted")
	}
}
