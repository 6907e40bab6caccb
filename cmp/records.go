package cmp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qpki/qpki/pkg/store"
)

// Records is the protocol state CMP keeps (shared secrets and
// transactions): small JSON records with compare-and-set, the shape of
// jskv.Records, so that with --store jetstream several serve processes
// share them.
type Records interface {
	Get(name string, v any) (rev uint64, err error)
	Create(name string, v any) error
	Update(name string, v any, rev uint64) error
	Delete(name string) error
	List(fn func(name string, value []byte) error) error
}

// Bucket suffixes of the shared JetStream state.
const (
	BucketSecrets      = "CMPSECRETS"
	BucketTransactions = "CMPTX"
)

// DBPath is the bbolt file of a data dir's CMP state.
func DBPath(dataDir string) string { return filepath.Join(dataDir, "cmp.db") }

// fileRecords is one bucket of the data dir's cmp.db. The file is opened
// for each operation, so that `qpki cmp secret add` can write while serve
// runs; the mutex keeps this process's operations from waiting on their
// own file lock.
type fileRecords struct {
	path   string
	bucket []byte
}

var fileLocks sync.Map // path -> *sync.Mutex

// FileRecords returns bucket name of the bbolt file at path.
func FileRecords(path, bucket string) Records {
	return &fileRecords{path: path, bucket: []byte(bucket)}
}

func (f *fileRecords) do(write bool, fn func(b *bolt.Bucket) error) error {
	mu, _ := fileLocks.LoadOrStore(f.path, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if write {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			return err
		}
	} else if _, err := os.Stat(f.path); errors.Is(err, os.ErrNotExist) {
		return store.ErrNotFound // nothing written yet
	}
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	if !write {
		return db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(f.bucket)
			if b == nil {
				return store.ErrNotFound
			}
			return fn(b)
		})
	}
	return db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(f.bucket)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

// A value is its revision (8 bytes) and its JSON.
func decodeValue(raw []byte) (uint64, []byte, error) {
	if len(raw) < 8 {
		return 0, nil, errors.New("cmp: corrupt record")
	}
	return binary.BigEndian.Uint64(raw), raw[8:], nil
}

func encodeValue(rev uint64, v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint64(nil, rev), js...), nil
}

func (f *fileRecords) Get(name string, v any) (uint64, error) {
	var rev uint64
	err := f.do(false, func(b *bolt.Bucket) error {
		raw := b.Get([]byte(name))
		if raw == nil {
			return store.ErrNotFound
		}
		r, js, err := decodeValue(raw)
		if err != nil {
			return err
		}
		rev = r
		return json.Unmarshal(js, v)
	})
	return rev, err
}

func (f *fileRecords) Create(name string, v any) error {
	return f.do(true, func(b *bolt.Bucket) error {
		if b.Get([]byte(name)) != nil {
			return store.ErrAlreadyExists
		}
		seq, _ := b.NextSequence()
		val, err := encodeValue(seq, v)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), val)
	})
}

func (f *fileRecords) Update(name string, v any, rev uint64) error {
	return f.do(true, func(b *bolt.Bucket) error {
		raw := b.Get([]byte(name))
		if raw == nil {
			return store.ErrConflict
		}
		if r, _, err := decodeValue(raw); err != nil || r != rev {
			return store.ErrConflict
		}
		seq, _ := b.NextSequence()
		val, err := encodeValue(seq, v)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), val)
	})
}

func (f *fileRecords) Delete(name string) error {
	return f.do(true, func(b *bolt.Bucket) error {
		if b.Get([]byte(name)) == nil {
			return store.ErrNotFound
		}
		return b.Delete([]byte(name))
	})
}

func (f *fileRecords) List(fn func(name string, value []byte) error) error {
	err := f.do(false, func(b *bolt.Bucket) error {
		return b.ForEach(func(k, raw []byte) error {
			_, js, err := decodeValue(raw)
			if err != nil {
				return err
			}
			return fn(string(k), js)
		})
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
