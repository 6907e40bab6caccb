package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ACMEFile is the ACME store's file name in the data dir.
const ACMEFile = "acme.db"

var (
	bucketACMEAccounts    = []byte("acme_accounts")     // id → account
	bucketACMEAccountKeys = []byte("acme_account_keys") // thumbprint → id
	bucketACMEOrders      = []byte("acme_orders")       // id → order
	bucketACMEAcctOrders  = []byte("acme_account_orders")
	bucketACMEAuthzs      = []byte("acme_authzs")    // id → authz
	bucketACMEAuthzIndex  = []byte("acme_authz_idx") // account|type|value|wildcard → latest authz id
	bucketACMEReplaced    = []byte("acme_replaced")  // ARI cert id → order id
	bucketACMEExpiry      = []byte("acme_expiry")    // deletion time|kind|id → nil
	bucketACMENonces      = []byte("acme_nonces")    // nonce → expiry
	bucketACMEMeta        = []byte("acme_meta")
	bucketACMEPending     = []byte("acme_pending") // account|authz id → expiry of a pending authz
	bucketACMEEAB         = []byte("acme_eab")     // key id → external account key
	keyNoncesClean        = []byte("nonces_clean")

	acmeBuckets = [][]byte{bucketACMEAccounts, bucketACMEAccountKeys, bucketACMEOrders, bucketACMEAcctOrders,
		bucketACMEAuthzs, bucketACMEAuthzIndex, bucketACMEReplaced, bucketACMEExpiry,
		bucketACMENonces, bucketACMEMeta, bucketACMEPending, bucketACMEEAB}
)

// Kinds of object in the expiry index.
const (
	expireOrder = 'o'
	expireAuthz = 'a'
)

// ACMEBolt is the ACME store in its own bbolt file (<data-dir>/acme.db),
// apart from the CA's store: ACME traffic never contends with the
// recorder for the CA store's write lock.
type ACMEBolt struct {
	db *bolt.DB
}

var _ ACMEStore = (*ACMEBolt)(nil)

// OpenACME opens or creates an ACME store file.
func OpenACME(path string) (*ACMEBolt, error) {
	// The freelist is rebuilt at open rather than written at every
	// commit: commits are what ACME traffic does most.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open ACME store %s: %w", path, err)
	}
	// Concurrent requests share transactions (one fsync each); a short
	// delay keeps a lone request fast.
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		indexPending := tx.Bucket(bucketACMEPending) == nil && tx.Bucket(bucketACMEAuthzs) != nil
		for _, b := range acmeBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if indexPending {
			return buildPendingIndex(tx) // a store of an earlier version
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open ACME store %s: %w", path, err)
	}
	return &ACMEBolt{db: db}, nil
}

func (s *ACMEBolt) Close() error { return s.db.Close() }

// get decodes the JSON record under key, or returns ErrNotFound.
func get(tx *bolt.Tx, bucket []byte, key string, v any) error {
	data := tx.Bucket(bucket).Get([]byte(key))
	if data == nil {
		return ErrNotFound
	}
	return json.Unmarshal(data, v)
}

func put(tx *bolt.Tx, bucket []byte, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), data)
}

func expiryKey(t time.Time, kind byte, id string) []byte {
	k := make([]byte, 9, 9+len(id))
	binary.BigEndian.PutUint64(k, uint64(max(t.Unix(), 0)))
	k[8] = kind
	return append(k, id...)
}

// reindex moves an object's entry in the expiry index.
func reindex(tx *bolt.Tx, kind byte, id string, old, now time.Time) error {
	b := tx.Bucket(bucketACMEExpiry)
	if !old.IsZero() && !old.Equal(now) {
		if err := b.Delete(expiryKey(old, kind, id)); err != nil {
			return err
		}
	}
	return b.Put(expiryKey(now, kind, id), nil)
}

func authzIndexKey(accountID string, id ACMEIdentifier, wildcard bool) []byte {
	w := "-"
	if wildcard {
		w = "*"
	}
	return []byte(accountID + "\x00" + id.Type + "\x00" + id.Value + "\x00" + w)
}

func pendingKey(a *ACMEAuthz) []byte { return []byte(a.AccountID + "\x00" + a.ID) }

// indexPending keeps the pending index of an authorization that was old
// (nil when new) and is now a.
func indexPending(tx *bolt.Tx, old, a *ACMEAuthz) error {
	b := tx.Bucket(bucketACMEPending)
	if a.Status == ACMEPending {
		return b.Put(pendingKey(a), binary.BigEndian.AppendUint64(nil, uint64(max(a.Expires.UnixNano(), 0))))
	}
	if old != nil && old.Status == ACMEPending {
		return b.Delete(pendingKey(old))
	}
	return nil
}

func buildPendingIndex(tx *bolt.Tx) error {
	return tx.Bucket(bucketACMEAuthzs).ForEach(func(k, v []byte) error {
		a := new(ACMEAuthz)
		if err := json.Unmarshal(v, a); err != nil {
			return nil // left to DeleteExpired
		}
		return indexPending(tx, nil, a)
	})
}

func (s *ACMEBolt) PendingAuthzs(accountID string, now time.Time, limit int) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := []byte(accountID + "\x00")
		c := tx.Bucket(bucketACMEPending).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < limit; k, v = c.Next() {
			if len(v) == 8 && now.Before(time.Unix(0, int64(binary.BigEndian.Uint64(v)))) {
				n++
			}
		}
		return nil
	})
	return n, err
}

func acctOrderKey(accountID string, created time.Time, orderID string) []byte {
	k := append([]byte(accountID), 0)
	k = binary.BigEndian.AppendUint64(k, uint64(max(created.UnixNano(), 0)))
	return append(k, orderID...)
}

// batch runs fn in a shared write transaction. fn reports refusals
// through the variables it captures and returns nil, so that one
// caller's refusal does not roll back the others' writes.
func (s *ACMEBolt) batch(fn func(tx *bolt.Tx) error) error { return s.db.Batch(fn) }

func (s *ACMEBolt) CreateAccount(a *ACMEAccount) (*ACMEAccount, bool, error) {
	if a.ID == "" || a.Thumbprint == "" {
		return nil, false, errors.New("store: account without id or key thumbprint")
	}
	var existing *ACMEAccount
	var refused error
	err := s.batch(func(tx *bolt.Tx) error {
		existing, refused = nil, nil
		if id := tx.Bucket(bucketACMEAccountKeys).Get([]byte(a.Thumbprint)); id != nil {
			existing = new(ACMEAccount)
			return get(tx, bucketACMEAccounts, string(id), existing)
		}
		if tx.Bucket(bucketACMEAccounts).Get([]byte(a.ID)) != nil {
			return fmt.Errorf("account %s: %w", a.ID, ErrAlreadyExists)
		}
		if a.EABKeyID != "" {
			k := new(EABKey)
			switch err := get(tx, bucketACMEEAB, a.EABKeyID, k); {
			case errors.Is(err, ErrNotFound):
				refused = ErrEABUnknown
				return nil
			case err != nil:
				return err
			case !k.Used.IsZero():
				refused = ErrEABUsed
				return nil
			}
			k.Used, k.Account, k.Thumbprint = a.Created.UTC().Truncate(time.Second), a.ID, a.Thumbprint
			if err := put(tx, bucketACMEEAB, k.ID, k); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketACMEAccountKeys).Put([]byte(a.Thumbprint), []byte(a.ID)); err != nil {
			return err
		}
		return put(tx, bucketACMEAccounts, a.ID, a)
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, false, err
	}
	if existing != nil {
		return existing, false, nil
	}
	return a, true, nil
}

func (s *ACMEBolt) AddEABKey(k EABKey) error {
	if k.ID == "" {
		return errors.New("store: external account key without id")
	}
	var refused error
	err := s.batch(func(tx *bolt.Tx) error {
		refused = nil
		if tx.Bucket(bucketACMEEAB).Get([]byte(k.ID)) != nil {
			refused = fmt.Errorf("external account key %q: %w", k.ID, ErrAlreadyExists)
			return nil
		}
		return put(tx, bucketACMEEAB, k.ID, &k)
	})
	if err != nil {
		return err
	}
	return refused
}

func (s *ACMEBolt) EABKey(kid string) (*EABKey, error) {
	k := new(EABKey)
	if err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketACMEEAB, kid, k) }); err != nil {
		return nil, err
	}
	return k, nil
}

func (s *ACMEBolt) EABKeys() ([]EABKey, error) {
	var out []EABKey
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketACMEEAB).ForEach(func(_, v []byte) error {
			var k EABKey
			if err := json.Unmarshal(v, &k); err != nil {
				return err
			}
			out = append(out, k)
			return nil
		})
	})
	return out, err // bbolt keeps them sorted by id
}

func (s *ACMEBolt) RemoveEABKey(kid string) error {
	var refused error
	err := s.batch(func(tx *bolt.Tx) error {
		refused = nil
		b := tx.Bucket(bucketACMEEAB)
		if b.Get([]byte(kid)) == nil {
			refused = ErrNotFound
			return nil
		}
		return b.Delete([]byte(kid))
	})
	if err != nil {
		return err
	}
	return refused
}

func (s *ACMEBolt) Account(id string) (*ACMEAccount, error) {
	a := new(ACMEAccount)
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketACMEAccounts, id, a) })
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (s *ACMEBolt) AccountByThumbprint(thumb string) (*ACMEAccount, error) {
	a := new(ACMEAccount)
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketACMEAccountKeys).Get([]byte(thumb))
		if id == nil {
			return ErrNotFound
		}
		return get(tx, bucketACMEAccounts, string(id), a)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (s *ACMEBolt) UpdateAccount(id string, fn func(*ACMEAccount) error) (*ACMEAccount, error) {
	var out, other *ACMEAccount
	err := s.batch(func(tx *bolt.Tx) error {
		out, other = nil, nil
		a := new(ACMEAccount)
		if err := get(tx, bucketACMEAccounts, id, a); err != nil {
			return err
		}
		oldThumb := a.Thumbprint
		if err := fn(a); err != nil {
			return err
		}
		a.ID = id
		if a.Thumbprint != oldThumb {
			keys := tx.Bucket(bucketACMEAccountKeys)
			if owner := keys.Get([]byte(a.Thumbprint)); owner != nil {
				other = new(ACMEAccount)
				return get(tx, bucketACMEAccounts, string(owner), other)
			}
			if err := keys.Delete([]byte(oldThumb)); err != nil {
				return err
			}
			if err := keys.Put([]byte(a.Thumbprint), []byte(id)); err != nil {
				return err
			}
		}
		out = a
		return put(tx, bucketACMEAccounts, id, a)
	})
	if err != nil {
		return nil, err
	}
	if other != nil {
		return other, ErrConflict
	}
	return out, nil
}

func (s *ACMEBolt) CreateOrder(o *ACMEOrder, newAuthzs []*ACMEAuthz) error {
	if o.ID == "" || o.AccountID == "" {
		return errors.New("store: order without id or account")
	}
	var refused error
	err := s.batch(func(tx *bolt.Tx) error {
		refused = nil
		if o.Replaces != "" {
			rep := tx.Bucket(bucketACMEReplaced)
			if prev := rep.Get([]byte(o.Replaces)); prev != nil && string(prev) != o.ID {
				live, err := orderLive(tx, string(prev), time.Now())
				if err != nil {
					return err
				}
				if live {
					refused = ErrAlreadyReplaced
					return nil
				}
			}
			if err := rep.Put([]byte(o.Replaces), []byte(o.ID)); err != nil {
				return err
			}
		}
		for _, a := range newAuthzs {
			if err := put(tx, bucketACMEAuthzs, a.ID, a); err != nil {
				return err
			}
			if err := tx.Bucket(bucketACMEAuthzIndex).Put(authzIndexKey(a.AccountID, a.Identifier, a.Wildcard), []byte(a.ID)); err != nil {
				return err
			}
			if err := reindex(tx, expireAuthz, a.ID, time.Time{}, a.retainUntil()); err != nil {
				return err
			}
			if err := indexPending(tx, nil, a); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketACMEAcctOrders).Put(acctOrderKey(o.AccountID, o.Created, o.ID), nil); err != nil {
			return err
		}
		if err := reindex(tx, expireOrder, o.ID, time.Time{}, o.retainUntil()); err != nil {
			return err
		}
		return put(tx, bucketACMEOrders, o.ID, o)
	})
	if err != nil {
		return err
	}
	return refused
}

// orderLive reports whether an order may still deliver a certificate.
func orderLive(tx *bolt.Tx, id string, now time.Time) (bool, error) {
	o := new(ACMEOrder)
	if err := get(tx, bucketACMEOrders, id, o); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	authzs := make([]*ACMEAuthz, 0, len(o.Authzs))
	for _, aid := range o.Authzs {
		a := new(ACMEAuthz)
		if err := get(tx, bucketACMEAuthzs, aid, a); err != nil {
			if errors.Is(err, ErrNotFound) {
				return false, nil
			}
			return false, err
		}
		authzs = append(authzs, a)
	}
	return o.CurrentStatus(authzs, now) != ACMEInvalid, nil
}

func (s *ACMEBolt) Order(id string) (*ACMEOrder, error) {
	o := new(ACMEOrder)
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketACMEOrders, id, o) })
	if err != nil {
		return nil, err
	}
	return o, nil
}

func (s *ACMEBolt) UpdateOrder(id string, fn func(*ACMEOrder) error) (*ACMEOrder, error) {
	var out *ACMEOrder
	err := s.batch(func(tx *bolt.Tx) error {
		var err error
		out, err = updateOrder(tx, id, fn)
		return err
	})
	return out, err
}

func (s *ACMEBolt) UpdateOrders(ids []string, fn func(*ACMEOrder) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, id := range ids {
			if _, err := updateOrder(tx, id, fn); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		return nil
	})
}

func updateOrder(tx *bolt.Tx, id string, fn func(*ACMEOrder) error) (*ACMEOrder, error) {
	o := new(ACMEOrder)
	if err := get(tx, bucketACMEOrders, id, o); err != nil {
		return nil, err
	}
	oldRetain := o.retainUntil()
	if err := fn(o); err != nil {
		return nil, err
	}
	o.ID = id
	if err := reindex(tx, expireOrder, id, oldRetain, o.retainUntil()); err != nil {
		return nil, err
	}
	return o, put(tx, bucketACMEOrders, id, o)
}

func (s *ACMEBolt) AccountOrders(accountID, cursor string, limit int) ([]string, string, error) {
	var ids []string
	next := ""
	prefix := append([]byte(accountID), 0)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketACMEAcctOrders).Cursor()
		start := prefix
		if cursor != "" {
			start = append(append([]byte{}, prefix...), cursor...)
		}
		for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			suffix := k[len(prefix):]
			if len(suffix) <= 8 {
				continue
			}
			if len(ids) == limit {
				next = string(suffix)
				break
			}
			ids = append(ids, string(suffix[8:]))
		}
		return nil
	})
	return ids, next, err
}

func (s *ACMEBolt) Authz(id string) (*ACMEAuthz, error) {
	a := new(ACMEAuthz)
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketACMEAuthzs, id, a) })
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (s *ACMEBolt) Authzs(ids []string) ([]*ACMEAuthz, error) {
	out := make([]*ACMEAuthz, len(ids))
	err := s.db.View(func(tx *bolt.Tx) error {
		for i, id := range ids {
			out[i] = new(ACMEAuthz)
			if err := get(tx, bucketACMEAuthzs, id, out[i]); err != nil {
				return fmt.Errorf("authorization %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *ACMEBolt) UpdateAuthz(id string, fn func(*ACMEAuthz) error) (*ACMEAuthz, error) {
	var out *ACMEAuthz
	err := s.batch(func(tx *bolt.Tx) error {
		out = nil
		a := new(ACMEAuthz)
		if err := get(tx, bucketACMEAuthzs, id, a); err != nil {
			return err
		}
		old := *a
		if err := fn(a); err != nil {
			return err
		}
		a.ID = id
		if err := reindex(tx, expireAuthz, id, old.retainUntil(), a.retainUntil()); err != nil {
			return err
		}
		if err := indexPending(tx, &old, a); err != nil {
			return err
		}
		out = a
		return put(tx, bucketACMEAuthzs, id, a)
	})
	return out, err
}

func (s *ACMEBolt) LatestAuthz(accountID string, ident ACMEIdentifier, wildcard bool) (*ACMEAuthz, error) {
	a := new(ACMEAuthz)
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketACMEAuthzIndex).Get(authzIndexKey(accountID, ident, wildcard))
		if id == nil {
			return ErrNotFound
		}
		return get(tx, bucketACMEAuthzs, string(id), a)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (s *ACMEBolt) RestoreNonces(now time.Time) ([]ACMENonce, error) {
	var out []ACMENonce
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = nil
		meta := tx.Bucket(bucketACMEMeta)
		clean := meta.Get(keyNoncesClean) != nil
		if err := meta.Delete(keyNoncesClean); err != nil {
			return err
		}
		if !clean {
			// Some saved nonces may have been used after the last sync:
			// none can be trusted.
			if err := tx.DeleteBucket(bucketACMENonces); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
			_, err := tx.CreateBucket(bucketACMENonces)
			return err
		}
		return tx.Bucket(bucketACMENonces).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				exp := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
				if now.Before(exp) {
					out = append(out, ACMENonce{Value: string(k), Expires: exp})
				}
			}
			return nil
		})
	})
	return out, err
}

func (s *ACMEBolt) SyncNonces(issued []ACMENonce, used []string, final bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketACMENonces)
		for _, n := range issued {
			if err := b.Put([]byte(n.Value), binary.BigEndian.AppendUint64(nil, uint64(n.Expires.UnixNano()))); err != nil {
				return err
			}
		}
		for _, n := range used {
			if err := b.Delete([]byte(n)); err != nil {
				return err
			}
		}
		if final {
			return tx.Bucket(bucketACMEMeta).Put(keyNoncesClean, []byte{1})
		}
		return nil
	})
}

func (s *ACMEBolt) DeleteExpired(now time.Time, limit int) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		end := expiryKey(now, 0, "")
		c := tx.Bucket(bucketACMEExpiry).Cursor()
		var done [][]byte
		for k, _ := c.First(); k != nil && n < limit; k, _ = c.Next() {
			if len(k) < 9 {
				done = append(done, append([]byte{}, k...))
				continue
			}
			if bytes.Compare(k[:8], end[:8]) > 0 {
				break
			}
			id := string(k[9:])
			var err error
			switch k[8] {
			case expireOrder:
				err = deleteOrder(tx, id)
			case expireAuthz:
				err = deleteAuthz(tx, id)
			}
			if err != nil {
				return err
			}
			done = append(done, append([]byte{}, k...))
			n++
		}
		for _, k := range done {
			if err := tx.Bucket(bucketACMEExpiry).Delete(k); err != nil {
				return err
			}
		}
		// Nonces expire within minutes; sweep them here too.
		nb := tx.Bucket(bucketACMENonces)
		var stale [][]byte
		nb.ForEach(func(k, v []byte) error {
			if len(v) != 8 || !now.Before(time.Unix(0, int64(binary.BigEndian.Uint64(v)))) {
				stale = append(stale, append([]byte{}, k...))
			}
			return nil
		})
		for _, k := range stale {
			if err := nb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

func deleteOrder(tx *bolt.Tx, id string) error {
	o := new(ACMEOrder)
	if err := get(tx, bucketACMEOrders, id, o); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	if err := tx.Bucket(bucketACMEAcctOrders).Delete(acctOrderKey(o.AccountID, o.Created, o.ID)); err != nil {
		return err
	}
	if o.Replaces != "" {
		if err := deleteIfOwner(tx.Bucket(bucketACMEReplaced), []byte(o.Replaces), id); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketACMEOrders).Delete([]byte(id))
}

func deleteAuthz(tx *bolt.Tx, id string) error {
	a := new(ACMEAuthz)
	if err := get(tx, bucketACMEAuthzs, id, a); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	if err := deleteIfOwner(tx.Bucket(bucketACMEAuthzIndex), authzIndexKey(a.AccountID, a.Identifier, a.Wildcard), id); err != nil {
		return err
	}
	if err := tx.Bucket(bucketACMEPending).Delete(pendingKey(a)); err != nil {
		return err
	}
	return tx.Bucket(bucketACMEAuthzs).Delete([]byte(id))
}

// deleteIfOwner deletes an index entry that still points at id.
func deleteIfOwner(b *bolt.Bucket, key []byte, id string) error {
	if v := b.Get(key); v != nil && string(v) == id {
		return b.Delete(key)
	}
	return nil
}
