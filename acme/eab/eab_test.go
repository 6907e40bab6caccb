package eab_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qpki/qpki/acme/eab"
	"github.com/qpki/qpki/internal/natstest"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
)

// Key ids are typed on command lines: none starts with '-', random or not.
func TestKeyIDsAreNotFlags(t *testing.T) {
	for i := 0; i < 2000; i++ { // a random id would start with '-' once in 64
		k, err := eab.NewKey("", "")
		if err != nil {
			t.Fatal(err)
		}
		if k.ID[0] == '-' || !eab.ValidID(k.ID) {
			t.Fatalf("random key id %q", k.ID)
		}
		if mac, err := eab.MACKey(&k); err != nil || len(mac) != 32 {
			t.Fatalf("HMAC %q: %v", k.HMAC, err)
		}
	}
	for _, bad := range []string{"-team", "bad kid", "a/b"} {
		if _, err := eab.NewKey(bad, ""); err == nil {
			t.Fatalf("key id %q accepted", bad)
		}
	}
}

func openBolt(t *testing.T, dir string) *store.ACMEBolt {
	t.Helper()
	st, err := store.OpenACME(filepath.Join(dir, store.ACMEFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestSocket: the key socket of a running serve adds, lists and removes
// the keys of its store; only its owner may connect.
func TestSocket(t *testing.T) {
	dir := t.TempDir()
	keys := eab.InStore(openBolt(t, dir))
	srv, err := eab.ServeSocket(dir, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fi, err := os.Stat(eab.SocketPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v %v", fi.Mode(), err)
	}
	r := eab.Remote(dir)
	k, err := r.Add("team-a", "web")
	if err != nil || k.ID != "team-a" || k.HMAC == "" {
		t.Fatalf("add: %+v %v", k, err)
	}
	if _, err := r.Add("team-a", ""); err == nil {
		t.Fatal("duplicate kid accepted")
	}
	if _, err := r.Add("bad kid", ""); err == nil {
		t.Fatal("bad kid accepted")
	}
	if ks, err := keys.List(); err != nil || len(ks) != 1 || ks[0].HMAC != k.HMAC || ks[0].Note != "web" {
		t.Fatalf("the store holds %+v %v", ks, err)
	}
	if ks, err := r.List(); err != nil || len(ks) != 1 || ks[0].ID != "team-a" {
		t.Fatalf("list: %+v %v", ks, err)
	}
	if err := r.Remove("team-a"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove("team-a"); !errors.Is(err, eab.ErrUnknownKey) {
		t.Fatalf("second remove: %v", err)
	}
	srv.Close()
	if _, err := os.Stat(eab.SocketPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}
}

// TestMigrateFile: the keys of acme-eab.json move into the store, used
// ones used, once; the file is renamed.
func TestMigrateFile(t *testing.T) {
	dir := t.TempDir()
	used := time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)
	old := map[string][]eab.Key{"keys": {
		{ID: "a", HMAC: "bWFj", Note: "n", Created: used.Add(-time.Hour)},
		{ID: "b", HMAC: "bWFj", Created: used.Add(-time.Hour), Used: used, Account: "acct1"},
	}}
	data, _ := json.Marshal(old)
	os.WriteFile(eab.Path(dir), data, 0o600)
	st := openBolt(t, dir)
	if n, err := eab.MigrateFile(dir, st); err != nil || n != 2 {
		t.Fatalf("migrate: %d %v", n, err)
	}
	ks, err := st.EABKeys()
	if err != nil || len(ks) != 2 || ks[0].Note != "n" || !ks[1].Used.Equal(used) || ks[1].Account != "acct1" {
		t.Fatalf("migrated %+v %v", ks, err)
	}
	if _, err := os.Stat(eab.Path(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file is still there: %v", err)
	}
	if _, err := os.Stat(eab.Path(dir) + ".migrated"); err != nil {
		t.Fatal(err)
	}
	if n, err := eab.MigrateFile(dir, st); err != nil || n != 0 {
		t.Fatalf("second migration: %d %v", n, err)
	}
	os.WriteFile(eab.Path(dir), []byte("{not json"), 0o600)
	if _, err := eab.MigrateFile(dir, st); err == nil {
		t.Fatal("a corrupt file migrated")
	}
}

// TestMigrateRecords: the keys of the EAB bucket of earlier versions
// move into the shared ACME bucket.
func TestMigrateRecords(t *testing.T) {
	js := natstest.Connect(t, natstest.StartCluster(t, 1).URL())
	ctx := context.Background()
	o := jskv.Options{CA: "migrate", Replicas: 1, Instance: "test"}
	r, err := jskv.OpenRecords(ctx, js, o, jskv.BucketEAB)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := eab.NewKey("old", "bucket")
	if err := r.Create(k.ID, &k); err != nil {
		t.Fatal(err)
	}
	st, err := jskv.OpenACME(ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := eab.MigrateRecords(r, st); err != nil || n != 1 {
		t.Fatalf("migrate: %d %v", n, err)
	}
	got, err := st.EABKey("old")
	if err != nil || got.HMAC != k.HMAC {
		t.Fatalf("migrated %+v %v", got, err)
	}
	if n, err := eab.MigrateRecords(r, st); err != nil || n != 0 {
		t.Fatalf("second migration: %d %v", n, err)
	}
}
