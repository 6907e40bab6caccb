package eab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
)

// The key file of earlier versions, in the data dir, and its lock.
const (
	FileName = "acme-eab.json"
	lockName = "acme-eab.lock"
	maxFile  = 16 << 20
	// migratedSuffix is added to the file's name once its keys are in
	// the store: a key removed later is not imported again.
	migratedSuffix = ".migrated"
)

// Path is the key file of a data dir.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// MigrateFile moves the keys of <data-dir>/acme-eab.json (used or not)
// into the store and renames the file acme-eab.json.migrated; it
// returns how many keys it added. Without the file it does nothing.
func MigrateFile(dataDir string, st store.ACMEStore) (int, error) {
	n := 0
	err := withLock(dataDir, func() error {
		path := Path(dataDir)
		fi, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Size() > maxFile {
			return fmt.Errorf("%s: file too large", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var f struct {
			Keys []Key `json:"keys"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("%s is corrupt: %v", path, err)
		}
		for _, k := range f.Keys {
			if n, err = add(st, k, n); err != nil {
				return err
			}
		}
		return os.Rename(path, path+migratedSuffix)
	})
	return n, err
}

// MigrateRecords moves the keys of the EAB bucket of earlier versions
// (serve --store jetstream) into the store, deleting each from the
// bucket once it is in.
func MigrateRecords(r *jskv.Records, st store.ACMEStore) (int, error) {
	var keys []Key
	err := r.List(func(_ string, v []byte) error {
		var k Key
		if err := json.Unmarshal(v, &k); err != nil {
			return fmt.Errorf("external account key record: %v", err)
		}
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		if n, err = add(st, k, n); err != nil {
			return n, err
		}
		if err := r.Delete(k.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, err
		}
	}
	return n, nil
}

// add adds a migrated key unless the store has it already.
func add(st store.ACMEStore, k Key, n int) (int, error) {
	if !ValidID(k.ID) {
		return n, fmt.Errorf("external account key id %q is not valid", k.ID)
	}
	switch err := st.AddEABKey(k); {
	case err == nil:
		return n + 1, nil
	case errors.Is(err, store.ErrAlreadyExists):
		return n, nil
	default:
		return n, err
	}
}

func withLock(dataDir string, fn func() error) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	l, err := os.OpenFile(filepath.Join(dataDir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := lock(l); err != nil {
		return fmt.Errorf("locking %s: %v", lockName, err)
	}
	defer unlock(l)
	return fn()
}
