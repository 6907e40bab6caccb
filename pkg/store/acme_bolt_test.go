package store

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestPendingIndexBuiltForOlderStores: an acme.db written before the
// pending index existed gets it at open, so its pending authorizations
// count against the account's limit.
func TestPendingIndexBuiltForOlderStores(t *testing.T) {
	path := filepath.Join(t.TempDir(), ACMEFile)
	s, err := OpenACME(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	z := func(id, status string) *ACMEAuthz {
		return &ACMEAuthz{ID: id, AccountID: "a", Identifier: ACMEIdentifier{Type: "dns", Value: id + ".example"}, Status: status, Expires: now.Add(time.Hour)}
	}
	o := &ACMEOrder{ID: "o", AccountID: "a", Status: ACMEPending, Authzs: []string{"p1", "p2", "v"}, Expires: now.Add(time.Hour), Created: now}
	if err := s.CreateOrder(o, []*ACMEAuthz{z("p1", ACMEPending), z("p2", ACMEPending), z("v", ACMEValid)}); err != nil {
		t.Fatal(err)
	}
	// As an earlier version left it: no pending index.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketACMEPending) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenACME(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.PendingAuthzs("a", now, 100); err != nil || n != 2 {
		t.Fatalf("pending after the upgrade: %d %v, want 2", n, err)
	}
}
