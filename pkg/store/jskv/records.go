package jskv

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/pkg/store"
)

// Bucket name suffixes of the front-end state that several serve
// processes share: EST HTTP Basic users and ACME external account keys.
const (
	BucketESTUsers = "ESTUSERS"
	BucketEAB      = "EAB"
)

// Records is a bucket of small JSON records by name, for front-end state
// that needs no more than compare-and-set on one record: Create claims a
// name, Update replaces the record read at a revision.
type Records struct {
	ops
	kv jetstream.KeyValue
}

// OpenRecords binds to (creating when missing) bucket QPKI_<o.CA>_<suffix>.
func OpenRecords(ctx context.Context, js jetstream.JetStream, o Options, suffix string) (*Records, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if !caName.MatchString(suffix) {
		return nil, fmt.Errorf("jskv: bucket suffix %q", suffix)
	}
	kv, err := openBucket(ctx, js, BucketName(o.CA, suffix), o.Replicas)
	if err != nil {
		return nil, err
	}
	return &Records{ops: ops{o.Timeout}, kv: kv}, nil
}

func recordKey(name string) string { return "r." + token(name) }

// Get decodes the record into v and returns its revision, or
// store.ErrNotFound.
func (r *Records) Get(name string, v any) (rev uint64, err error) {
	err = r.do(func(ctx context.Context) error {
		rev, err = getJSON(ctx, r.kv, recordKey(name), v)
		return err
	})
	return rev, err
}

// Create stores a new record, or fails with store.ErrAlreadyExists.
func (r *Records) Create(name string, v any) error {
	val, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.do(func(ctx context.Context) error {
		_, err := r.kv.Create(ctx, recordKey(name), val)
		if conflict(err) {
			return store.ErrAlreadyExists
		}
		return err
	})
}

// Update replaces the record read at rev, or fails with
// store.ErrConflict when another writer changed (or removed) it since.
func (r *Records) Update(name string, v any, rev uint64) error {
	val, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.do(func(ctx context.Context) error {
		_, err := r.kv.Update(ctx, recordKey(name), val, rev)
		if conflict(err) {
			return store.ErrConflict
		}
		return err
	})
}

// Delete removes a record, or fails with store.ErrNotFound.
func (r *Records) Delete(name string) error {
	return r.do(func(ctx context.Context) error {
		for {
			e, err := r.kv.Get(ctx, recordKey(name))
			if notFound(err) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			err = r.kv.Delete(ctx, recordKey(name), jetstream.LastRevision(e.Revision()))
			if err == nil || !conflict(err) {
				return err
			}
			if err := pause(ctx); err != nil {
				return err
			}
		}
	})
}

// List calls fn with every record's name and JSON value.
func (r *Records) List(fn func(name string, value []byte) error) error {
	type rec struct {
		name  string
		value []byte
	}
	var all []rec
	err := r.do(func(ctx context.Context) error {
		all = all[:0]
		return scan(ctx, r.kv, "r.>", func(k string, v []byte, _ uint64) error {
			name, err := untoken(k[len("r."):])
			if err != nil {
				return fmt.Errorf("jskv: key %q: %w", k, err)
			}
			all = append(all, rec{name, v})
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, e := range all {
		if err := fn(e.name, e.value); err != nil {
			return err
		}
	}
	return nil
}
