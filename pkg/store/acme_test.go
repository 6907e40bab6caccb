package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func openACME(t *testing.T) *ACMEBolt {
	t.Helper()
	s, err := OpenACME(filepath.Join(t.TempDir(), ACMEFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestACMEAccounts(t *testing.T) {
	s := openACME(t)
	a := &ACMEAccount{ID: "a1", Thumbprint: "t1", Key: []byte(`{}`), Status: ACMEValid, Created: time.Now()}
	if got, created, err := s.CreateAccount(a); err != nil || !created || got.ID != "a1" {
		t.Fatalf("CreateAccount: %v %v %v", got, created, err)
	}
	// The same key finds the same account.
	if got, created, err := s.CreateAccount(&ACMEAccount{ID: "a2", Thumbprint: "t1"}); err != nil || created || got.ID != "a1" {
		t.Fatalf("second CreateAccount: %v %v %v", got, created, err)
	}
	s.CreateAccount(&ACMEAccount{ID: "b1", Thumbprint: "t2", Status: ACMEValid})
	if got, err := s.AccountByThumbprint("t2"); err != nil || got.ID != "b1" {
		t.Fatalf("AccountByThumbprint: %v %v", got, err)
	}
	// A roll-over onto another account's key is a conflict.
	other, err := s.UpdateAccount("a1", func(a *ACMEAccount) error { a.Thumbprint = "t2"; return nil })
	if !errors.Is(err, ErrConflict) || other.ID != "b1" {
		t.Fatalf("conflicting roll-over: %v %v", other, err)
	}
	if _, err := s.UpdateAccount("a1", func(a *ACMEAccount) error { a.Thumbprint = "t3"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AccountByThumbprint("t1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old key still finds the account: %v", err)
	}
	if got, err := s.AccountByThumbprint("t3"); err != nil || got.ID != "a1" {
		t.Fatalf("the new key: %v %v", got, err)
	}
	if _, err := s.Account("zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
}

func TestACMEOrders(t *testing.T) {
	s := openACME(t)
	now := time.Now().UTC()
	id := ACMEIdentifier{Type: "dns", Value: "a.example.com"}
	z := &ACMEAuthz{ID: "z1", AccountID: "a", Identifier: id, Status: ACMEPending, Expires: now.Add(time.Hour),
		Challenges: []ACMEChallenge{{ID: "c1", Type: "http-01", Token: "tok", Status: ACMEPending}}}
	o := &ACMEOrder{ID: "o1", AccountID: "a", Status: ACMEPending, Identifiers: []ACMEIdentifier{id}, Authzs: []string{"z1"},
		Expires: now.Add(time.Hour), Created: now, Replaces: "cert1"}
	if err := s.CreateOrder(o, []*ACMEAuthz{z}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LatestAuthz("a", id, false); err != nil || got.ID != "z1" {
		t.Fatalf("LatestAuthz: %v %v", got, err)
	}
	if _, err := s.LatestAuthz("a", id, true); !errors.Is(err, ErrNotFound) {
		t.Fatal("a wildcard authorization was found for a plain name")
	}
	if _, err := s.LatestAuthz("b", id, false); !errors.Is(err, ErrNotFound) {
		t.Fatal("another account's authorization was found")
	}
	authzs, _ := s.Authzs(o.Authzs)
	if st := o.CurrentStatus(authzs, now); st != ACMEPending {
		t.Fatalf("status %s, want pending", st)
	}
	s.UpdateAuthz("z1", func(a *ACMEAuthz) error { a.Status = ACMEValid; return nil })
	authzs, _ = s.Authzs(o.Authzs)
	if st := o.CurrentStatus(authzs, now); st != ACMEReady {
		t.Fatalf("status %s, want ready", st)
	}
	if st := o.CurrentStatus(authzs, now.Add(2*time.Hour)); st != ACMEInvalid {
		t.Fatalf("expired order is %s, want invalid", st)
	}
	// A live order already replaces cert1.
	o2 := &ACMEOrder{ID: "o2", AccountID: "a", Status: ACMEPending, Authzs: []string{"z1"}, Expires: now.Add(time.Hour), Created: now.Add(time.Second), Replaces: "cert1"}
	if err := s.CreateOrder(o2, nil); !errors.Is(err, ErrAlreadyReplaced) {
		t.Fatalf("second replacement: %v", err)
	}
	if _, err := s.UpdateOrder("o1", func(o *ACMEOrder) error { o.Status = ACMEInvalid; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOrder(o2, nil); err != nil {
		t.Fatalf("replacing after the first replacement failed: %v", err)
	}
	if _, err := s.UpdateOrder("o2", func(o *ACMEOrder) error {
		o.Status, o.CertSerial, o.CertNotAfter = ACMEValid, "abc", now.Add(24*time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateOrders([]string{"o2", "gone"}, func(o *ACMEOrder) error { o.Profile = "p"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Order("o2"); got.Profile != "p" || got.CertSerial != "abc" {
		t.Fatalf("after UpdateOrders: %+v", got)
	}
	// Pages of orders.
	for i := 0; i < 5; i++ {
		s.CreateOrder(&ACMEOrder{ID: "p" + string(rune('0'+i)), AccountID: "pager", Created: now.Add(time.Duration(i) * time.Second), Expires: now.Add(time.Hour)}, nil)
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

	// Expiry: the pending objects go after their retention, the valid
	// order (its certificate still live) stays.
	n, err := s.DeleteExpired(now.Add(acmeRetention+2*time.Hour), 1000)
	if err != nil || n == 0 {
		t.Fatalf("DeleteExpired: %d %v", n, err)
	}
	if _, err := s.Order("o1"); !errors.Is(err, ErrNotFound) {
		t.Fatal("an expired order was kept")
	}
	if _, err := s.Authz("z1"); !errors.Is(err, ErrNotFound) {
		t.Fatal("an expired authorization was kept")
	}
	if _, err := s.LatestAuthz("a", id, false); !errors.Is(err, ErrNotFound) {
		t.Fatal("the authorization index outlived the authorization")
	}
	if _, err := s.Order("o2"); err != nil {
		t.Fatalf("the valid order was deleted early: %v", err)
	}
	if ids, _, _ := s.AccountOrders("pager", "", 10); len(ids) != 0 {
		t.Fatalf("the account's order list kept %v", ids)
	}
}
