package store_test

import (
	"path/filepath"
	"testing"

	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/storetest"
)

// The shared behavioural tests, on bbolt. A bbolt file has one client
// (its file lock): the "two clients" of the race tests are one handle
// used from many goroutines.
func TestBoltSuite(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T) func() storetest.CAStore {
		s, err := store.OpenBolt(filepath.Join(t.TempDir(), "ca.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return func() storetest.CAStore { return s }
	})
}

func TestACMEBoltSuite(t *testing.T) {
	storetest.RunACME(t, func(t *testing.T) func() store.ACMEStore {
		path := filepath.Join(t.TempDir(), store.ACMEFile)
		return func() store.ACMEStore {
			s, err := store.OpenACME(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}, false)
}
