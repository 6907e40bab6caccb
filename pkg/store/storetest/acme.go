package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

// RunACME runs the ACME store tests. Each client opened must be closed
// by the test before the next one is opened where the backend allows one
// client at a time (the nonce test reopens); the race tests hold two.
func RunACME(t *testing.T, opener Opener[store.ACMEStore], concurrentClients bool) {
	t.Run("Accounts", func(t *testing.T) { testACMEAccounts(t, opener(t)()) })
	t.Run("Orders", func(t *testing.T) { testACMEOrders(t, opener(t)()) })
	t.Run("Nonces", func(t *testing.T) { testACMENonces(t, opener(t)) })
	t.Run("EAB", func(t *testing.T) { testACMEEAB(t, opener(t)()) })
	t.Run("Races", func(t *testing.T) {
		open := opener(t)
		a := open()
		b := a
		if concurrentClients {
			b = open()
		}
		testACMERaces(t, a, b)
	})
}

func testACMEAccounts(t *testing.T, s store.ACMEStore) {
	a := &store.ACMEAccount{ID: "a1", Thumbprint: "t1", Key: []byte(`{}`), Status: store.ACMEValid, Created: time.Now()}
	if got, created, err := s.CreateAccount(a); err != nil || !created || got.ID != "a1" {
		t.Fatalf("CreateAccount: %v %v %v", got, created, err)
	}
	// The same key finds the same account.
	if got, created, err := s.CreateAccount(&store.ACMEAccount{ID: "a2", Thumbprint: "t1"}); err != nil || created || got.ID != "a1" {
		t.Fatalf("second CreateAccount: %v %v %v", got, created, err)
	}
	if _, _, err := s.CreateAccount(&store.ACMEAccount{ID: "a1", Thumbprint: "t9"}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("an account id reused with another key: %v", err)
	}
	s.CreateAccount(&store.ACMEAccount{ID: "b1", Thumbprint: "t2", Status: store.ACMEValid})
	if got, err := s.AccountByThumbprint("t2"); err != nil || got.ID != "b1" {
		t.Fatalf("AccountByThumbprint: %v %v", got, err)
	}
	// A roll-over onto another account's key is a conflict.
	other, err := s.UpdateAccount("a1", func(a *store.ACMEAccount) error { a.Thumbprint = "t2"; return nil })
	if !errors.Is(err, store.ErrConflict) || other.ID != "b1" {
		t.Fatalf("conflicting roll-over: %v %v", other, err)
	}
	if _, err := s.UpdateAccount("a1", func(a *store.ACMEAccount) error { a.Thumbprint = "t3"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AccountByThumbprint("t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the old key still finds the account: %v", err)
	}
	if got, err := s.AccountByThumbprint("t3"); err != nil || got.ID != "a1" {
		t.Fatalf("the new key: %v %v", got, err)
	}
	if _, err := s.Account("zz"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
	if _, err := s.UpdateAccount("zz", func(*store.ACMEAccount) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("updating an unknown account: %v", err)
	}
	boom := errors.New("refused")
	if _, err := s.UpdateAccount("a1", func(*store.ACMEAccount) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
}

func testACMEOrders(t *testing.T, s store.ACMEStore) {
	now := time.Now().UTC()
	// Identifier values with characters a key may not hold.
	id := store.ACMEIdentifier{Type: "dns", Value: "*.a.example.com"}
	ip := store.ACMEIdentifier{Type: "ip", Value: "2001:db8::1"}
	z := &store.ACMEAuthz{ID: "z1", AccountID: "a", Identifier: id, Status: store.ACMEPending, Expires: now.Add(time.Hour),
		Challenges: []store.ACMEChallenge{{ID: "c1", Type: "http-01", Token: "tok", Status: store.ACMEPending}}}
	zip := &store.ACMEAuthz{ID: "z/ip", AccountID: "a", Identifier: ip, Status: store.ACMEPending, Expires: now.Add(time.Hour)}
	o := &store.ACMEOrder{ID: "o1", AccountID: "a", Status: store.ACMEPending, Identifiers: []store.ACMEIdentifier{id}, Authzs: []string{"z1"},
		Expires: now.Add(time.Hour), Created: now, Replaces: "cert1"}
	if err := s.CreateOrder(o, []*store.ACMEAuthz{z, zip}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LatestAuthz("a", id, false); err != nil || got.ID != "z1" {
		t.Fatalf("LatestAuthz: %v %v", got, err)
	}
	pending := func(acct string, at time.Time, limit, want int) {
		t.Helper()
		if n, err := s.PendingAuthzs(acct, at, limit); err != nil || n != want {
			t.Fatalf("PendingAuthzs(%s, +%v, %d) = %d %v, want %d", acct, at.Sub(now), limit, n, err, want)
		}
	}
	pending("a", now, 100, 2)
	pending("a", now, 1, 1)
	pending("a", now.Add(2*time.Hour), 100, 0) // expired
	pending("b", now, 100, 0)
	if got, err := s.LatestAuthz("a", ip, false); err != nil || got.ID != "z/ip" {
		t.Fatalf("LatestAuthz(ip): %v %v", got, err)
	}
	if _, err := s.LatestAuthz("a", id, true); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a wildcard authorization was found for a plain name")
	}
	if _, err := s.LatestAuthz("b", id, false); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("another account's authorization was found")
	}
	authzs, _ := s.Authzs(o.Authzs)
	if st := o.CurrentStatus(authzs, now); st != store.ACMEPending {
		t.Fatalf("status %s, want pending", st)
	}
	if _, err := s.Authzs([]string{"z1", "nope"}); err == nil {
		t.Fatal("Authzs with an unknown id")
	}
	checked := now.Add(-9 * time.Hour).Truncate(time.Second)
	s.UpdateAuthz("z1", func(a *store.ACMEAuthz) error { a.Status, a.CAAChecked = store.ACMEValid, checked; return nil })
	authzs, _ = s.Authzs(o.Authzs)
	if !authzs[0].CAAChecked.Equal(checked) {
		t.Fatalf("CAA check time %v, want %v", authzs[0].CAAChecked, checked)
	}
	pending("a", now, 100, 1) // z1 is no longer pending
	s.UpdateAuthz("z/ip", func(a *store.ACMEAuthz) error { a.CAAChecked = now; return nil })
	pending("a", now, 100, 1) // still pending
	s.UpdateAuthz("z/ip", func(a *store.ACMEAuthz) error { a.Status = store.ACMEDeactivated; return nil })
	pending("a", now, 100, 0)
	if st := o.CurrentStatus(authzs, now); st != store.ACMEReady {
		t.Fatalf("status %s, want ready", st)
	}
	if st := o.CurrentStatus(authzs, now.Add(2*time.Hour)); st != store.ACMEInvalid {
		t.Fatalf("expired order is %s, want invalid", st)
	}
	if c := authzs[0].Challenge("c1"); c == nil || c.Token != "tok" {
		t.Fatalf("challenge: %+v", c)
	}
	// A live order already replaces cert1.
	o2 := &store.ACMEOrder{ID: "o2", AccountID: "a", Status: store.ACMEPending, Authzs: []string{"z1"}, Expires: now.Add(time.Hour), Created: now.Add(time.Second), Replaces: "cert1"}
	if err := s.CreateOrder(o2, nil); !errors.Is(err, store.ErrAlreadyReplaced) {
		t.Fatalf("second replacement: %v", err)
	}
	if _, err := s.UpdateOrder("o1", func(o *store.ACMEOrder) error { o.Status = store.ACMEInvalid; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOrder(o2, nil); err != nil {
		t.Fatalf("replacing after the first replacement failed: %v", err)
	}
	if _, err := s.UpdateOrder("o2", func(o *store.ACMEOrder) error {
		o.Status, o.CertSerial, o.CertNotAfter = store.ACMEValid, "abc", now.Add(24*time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateOrders([]string{"o2", "gone"}, func(o *store.ACMEOrder) error { o.Profile = "p"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Order("o2"); got.Profile != "p" || got.CertSerial != "abc" {
		t.Fatalf("after UpdateOrders: %+v", got)
	}
	if _, err := s.UpdateOrder("gone", func(*store.ACMEOrder) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("updating an unknown order: %v", err)
	}
	// Pages of orders.
	for i := range 5 {
		s.CreateOrder(&store.ACMEOrder{ID: "p" + string(rune('0'+i)), AccountID: "pager", Created: now.Add(time.Duration(i) * time.Second), Expires: now.Add(time.Hour)}, nil)
	}
	var all []string
	cursor := ""
	for pages := 0; ; pages++ {
		ids, next, err := s.AccountOrders("pager", cursor, 2)
		if err != nil || pages > 5 {
			t.Fatal(err)
		}
		all = append(all, ids...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 5 || all[0] != "p0" || all[4] != "p4" {
		t.Fatalf("paged orders %v", all)
	}
	if ids, next, err := s.AccountOrders("nobody", "", 10); err != nil || len(ids) != 0 || next != "" {
		t.Fatalf("orders of an account without any: %v %q %v", ids, next, err)
	}

	// Expiry: the pending objects go after their retention, the valid
	// order (its certificate still live) stays.
	n, err := s.DeleteExpired(now.Add(store.ACMERetention+2*time.Hour), 1000)
	if err != nil || n == 0 {
		t.Fatalf("DeleteExpired: %d %v", n, err)
	}
	if _, err := s.Order("o1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("an expired order was kept")
	}
	if _, err := s.Authz("z1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("an expired authorization was kept")
	}
	if _, err := s.LatestAuthz("a", id, false); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the authorization index outlived the authorization")
	}
	if _, err := s.Order("o2"); err != nil {
		t.Fatalf("the valid order was deleted early: %v", err)
	}
	if ids, _, _ := s.AccountOrders("pager", "", 10); len(ids) != 0 {
		t.Fatalf("the account's order list kept %v", ids)
	}
}

// Nonces saved at a clean shutdown come back; after a crash none do.
func testACMENonces(t *testing.T, open func() store.ACMEStore) {
	now := time.Now()
	s := open()
	if got, err := s.RestoreNonces(now); err != nil || len(got) != 0 {
		t.Fatalf("fresh store: %v %v", got, err)
	}
	exp := now.Add(time.Hour)
	if err := s.SyncNonces([]store.ACMENonce{{Value: "n1", Expires: exp}, {Value: "n2", Expires: exp}, {Value: "old", Expires: now.Add(-time.Minute)}}, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncNonces([]store.ACMENonce{{Value: "n3", Expires: exp}}, []string{"n2"}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncNonces(nil, nil, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open()
	got, err := s.RestoreNonces(now)
	if err != nil || len(got) != 2 {
		t.Fatalf("after a clean stop: %v %v, want n1 and n3", got, err)
	}
	for _, n := range got {
		if n.Value != "n1" && n.Value != "n3" {
			t.Fatalf("restored %q", n.Value)
		}
	}
	s.SyncNonces([]store.ACMENonce{{Value: "n4", Expires: exp}}, nil, false)
	s.Close() // a crash: no final sync
	s = open()
	defer s.Close()
	if got, err := s.RestoreNonces(now); err != nil || len(got) != 0 {
		t.Fatalf("after a crash: %v %v, want none", got, err)
	}
}

// Two clients race on the same key, the same order, the same
// replacement: one account per key, no lost order update, one live
// replacing order.
func testACMERaces(t *testing.T, a, b store.ACMEStore) {
	const n = 16
	clients := []store.ACMEStore{a, b}
	run := func(f func(i int, s store.ACMEStore)) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				f(i, clients[i%2])
			}()
		}
		close(start)
		wg.Wait()
	}
	var createdN atomic.Int32
	ids := make([]string, n)
	run(func(i int, s store.ACMEStore) {
		got, created, err := s.CreateAccount(&store.ACMEAccount{ID: fmt.Sprintf("acct%d", i), Thumbprint: "same-key", Status: store.ACMEValid})
		if err != nil {
			t.Errorf("CreateAccount: %v", err)
			return
		}
		if created {
			createdN.Add(1)
		}
		ids[i] = got.ID
	})
	if createdN.Load() != 1 {
		t.Fatalf("%d accounts created for one key", createdN.Load())
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("one key gave accounts %v", ids)
		}
	}

	// Different account keys race for one external account key: it
	// binds one account, and the others are not created at all.
	if err := a.AddEABKey(store.EABKey{ID: "race-kid", HMAC: "x", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	createdN.Store(0)
	run(func(i int, s store.ACMEStore) {
		_, created, err := s.CreateAccount(&store.ACMEAccount{ID: fmt.Sprintf("eab%d", i), Thumbprint: fmt.Sprintf("key%d", i), Status: store.ACMEValid, EABKeyID: "race-kid", Created: time.Now()})
		switch {
		case err == nil && created:
			createdN.Add(1)
		case errors.Is(err, store.ErrEABUsed):
			if _, err := s.AccountByThumbprint(fmt.Sprintf("key%d", i)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("an account refused for a used key exists: %v", err)
			}
		default:
			t.Errorf("CreateAccount with a raced key: created %v, %v", created, err)
		}
	})
	if createdN.Load() != 1 {
		t.Fatalf("%d accounts bound by one external account key", createdN.Load())
	}

	now := time.Now()
	if err := a.CreateOrder(&store.ACMEOrder{ID: "race", AccountID: ids[0], Status: store.ACMEPending, Expires: now.Add(time.Hour), Created: now}, nil); err != nil {
		t.Fatal(err)
	}
	run(func(i int, s store.ACMEStore) {
		_, err := s.UpdateOrder("race", func(o *store.ACMEOrder) error {
			o.Identifiers = append(o.Identifiers, store.ACMEIdentifier{Type: "dns", Value: fmt.Sprintf("h%d", i)})
			return nil
		})
		if err != nil {
			t.Errorf("UpdateOrder: %v", err)
		}
	})
	if o, err := b.Order("race"); err != nil || len(o.Identifiers) != n {
		t.Fatalf("after %d concurrent updates the order has %d identifiers (%v): updates were lost", n, len(o.Identifiers), err)
	}

	var replacing atomic.Int32
	run(func(i int, s store.ACMEStore) {
		err := s.CreateOrder(&store.ACMEOrder{ID: fmt.Sprintf("r%d", i), AccountID: ids[0], Status: store.ACMEPending,
			Expires: now.Add(time.Hour), Created: now, Replaces: "old-cert"}, nil)
		switch {
		case err == nil:
			replacing.Add(1)
		case !errors.Is(err, store.ErrAlreadyReplaced):
			t.Errorf("CreateOrder: %v", err)
		}
	})
	if replacing.Load() != 1 {
		t.Fatalf("%d live orders replace one certificate", replacing.Load())
	}
}

// External account keys: added once, used up by the account created with
// them in the same write, and by no other.
func testACMEEAB(t *testing.T, s store.ACMEStore) {
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Second)
	for _, id := range []string{"k2", "k1"} {
		if err := s.AddEABKey(store.EABKey{ID: id, HMAC: "mac-" + id, Note: "n", Created: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddEABKey(store.EABKey{ID: "k1", HMAC: "other"}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate key id: %v", err)
	}
	keys, err := s.EABKeys()
	if err != nil || len(keys) != 2 || keys[0].ID != "k1" || keys[1].HMAC != "mac-k2" {
		t.Fatalf("EABKeys: %+v %v", keys, err)
	}
	if _, _, err := s.CreateAccount(&store.ACMEAccount{ID: "x", Thumbprint: "tx", Status: store.ACMEValid, EABKeyID: "nope", Created: now}); !errors.Is(err, store.ErrEABUnknown) {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := s.AccountByThumbprint("tx"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("an account refused for an unknown key was created")
	}
	if _, created, err := s.CreateAccount(&store.ACMEAccount{ID: "a1", Thumbprint: "t1", Status: store.ACMEValid, EABKeyID: "k1", Created: now}); err != nil || !created {
		t.Fatalf("CreateAccount with k1: %v %v", created, err)
	}
	k, err := s.EABKey("k1")
	if err != nil || !k.Used.Equal(now) || k.Account != "a1" || k.Thumbprint != "t1" {
		t.Fatalf("k1 after use: %+v %v", k, err)
	}
	if _, _, err := s.CreateAccount(&store.ACMEAccount{ID: "a2", Thumbprint: "t2", Status: store.ACMEValid, EABKeyID: "k1", Created: now}); !errors.Is(err, store.ErrEABUsed) {
		t.Fatalf("second use of k1: %v", err)
	}
	if _, err := s.AccountByThumbprint("t2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("an account refused for a used key was created")
	}
	// The existing account of a key is returned, and k2 stays unused.
	if got, created, err := s.CreateAccount(&store.ACMEAccount{ID: "a3", Thumbprint: "t1", Status: store.ACMEValid, EABKeyID: "k2", Created: now}); err != nil || created || got.ID != "a1" {
		t.Fatalf("existing account: %+v %v %v", got, created, err)
	}
	if k, err := s.EABKey("k2"); err != nil || !k.Used.IsZero() {
		t.Fatalf("k2 used by an account that was not created: %+v %v", k, err)
	}
	if err := s.RemoveEABKey("k2"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveEABKey("k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := s.EABKey("k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removed key: %v", err)
	}
}
