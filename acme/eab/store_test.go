package eab_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/qpki/qpki/acme/eab"
	"github.com/qpki/qpki/internal/natstest"
	"github.com/qpki/qpki/pkg/store/jskv"
)

// sharedKeys opens the EAB bucket of CA ca on a connection of its own, as
// another front-end process would.
func sharedKeys(t *testing.T, url, ca string, replicas int) eab.Store {
	t.Helper()
	js := natstest.Connect(t, url)
	r, err := jskv.OpenRecords(context.Background(), js, jskv.Options{CA: ca, Replicas: replicas}, jskv.BucketEAB)
	if err != nil {
		t.Fatal(err)
	}
	return eab.Shared(r)
}

func TestStores(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	for name, st := range map[string]eab.Store{
		"dir":    eab.Dir(t.TempDir()),
		"shared": sharedKeys(t, url, "storetest", 1),
	} {
		t.Run(name, func(t *testing.T) {
			k, err := st.Add("team-a", "web")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Add("team-a", ""); err == nil {
				t.Fatal("duplicate kid accepted")
			}
			if _, err := st.Add("bad kid", ""); err == nil {
				t.Fatal("bad kid accepted")
			}
			r, err := st.Add("", "")
			if err != nil || r.ID == "" {
				t.Fatalf("random kid: %v %q", err, r.ID)
			}
			ks, err := st.List()
			if err != nil || len(ks) != 2 {
				t.Fatalf("list: %v %v", ks, err)
			}
			verr := errors.New("bad MAC")
			if err := st.Consume("team-a", "acct1", func(mac []byte) error { return verr }); !errors.Is(err, verr) {
				t.Fatalf("failed verification: %v", err)
			}
			var got string
			if err := st.Consume("team-a", "acct1", func(mac []byte) error { got = string(mac); return nil }); err != nil {
				t.Fatal(err)
			}
			if got == "" {
				t.Fatal("verify got no MAC key")
			}
			if err := st.Consume("team-a", "acct2", func([]byte) error { return nil }); !errors.Is(err, eab.ErrUsed) {
				t.Fatalf("second use: %v", err)
			}
			if err := st.Consume("nobody", "acct2", func([]byte) error { return nil }); !errors.Is(err, eab.ErrUnknownKey) {
				t.Fatalf("unknown kid: %v", err)
			}
			ks, _ = st.List()
			for _, x := range ks {
				if x.ID == k.ID && (x.Account != "acct1" || x.Used.IsZero()) {
					t.Fatalf("used key listed as %+v", x)
				}
			}
			if err := st.Remove(r.ID); err != nil {
				t.Fatal(err)
			}
			if err := st.Remove(r.ID); !errors.Is(err, eab.ErrUnknownKey) {
				t.Fatalf("second remove: %v", err)
			}
		})
	}
}

// Two front-ends on different cluster nodes bind new accounts with the
// same key at once: exactly one account gets it.
func TestStoreConsumeRaceOnCluster(t *testing.T) {
	cl := natstest.StartCluster(t, 3)
	urls := cl.URLs()
	a := sharedKeys(t, urls[0], "race", 3)
	b := sharedKeys(t, urls[1], "race", 3)
	for i := range 20 {
		k, err := a.Add(fmt.Sprint("k", i), "")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for j, st := range []eab.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[j] = st.Consume(k.ID, fmt.Sprint("acct", j), func([]byte) error { return nil })
			}()
		}
		close(start)
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, eab.ErrUsed):
				t.Fatal(err)
			}
		}
		if ok != 1 {
			t.Fatalf("key %s bound %d accounts, want 1 (%v)", k.ID, ok, errs)
		}
	}
}
