package jskv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/pkg/store"
)

// ACME keeps ACME objects in the CA's ACME bucket, shared by every
// front-end. Its keys:
//
//	acct.<id>                           account
//	acctkey.<thumbprint>                account id (one account per key)
//	order.<id>                          order
//	acctorder.<account>.<created>.<id>  an account's orders, in creation order
//	authz.<id>                          authorization
//	authzidx.<account>.<type>.<value>.<w|p>  latest authorization id
//	pending.<account>.<id>              expiry (Unix ns) of a pending authorization
//	replaced.<ARI cert id>              id of the order replacing it
//	eab.<kid>                           external account key
//	nonces.<instance>                   nonces saved at a clean shutdown
//
// Every part after the prefix is base64url-encoded (see token). Expiry
// is computed from the objects themselves when DeleteExpired scans them.
type ACME struct {
	ops
	kv       jetstream.KeyValue
	instance string

	mu        sync.Mutex
	nonces    map[string]time.Time // outstanding, as told by SyncNonces
	lastSweep time.Time
}

var _ store.ACMEStore = (*ACME)(nil)

// OpenACME binds to (creating when missing) the ACME bucket of CA o.CA.
func OpenACME(ctx context.Context, js jetstream.JetStream, o Options) (*ACME, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Instance == "" {
		return nil, errors.New("jskv: the ACME store needs an instance name (for its nonces)")
	}
	kv, err := openBucket(ctx, js, BucketName(o.CA, bucketACME), o.Replicas)
	if err != nil {
		return nil, err
	}
	return &ACME{ops: ops{o.Timeout}, kv: kv, instance: o.Instance, nonces: map[string]time.Time{}}, nil
}

func (s *ACME) Close() error { return nil }

func acctKey(id string) string       { return key("acct", id) }
func acctThumbKey(th string) string  { return key("acctkey", th) }
func orderKey(id string) string      { return key("order", id) }
func eabKey(kid string) string       { return key("eab", kid) }
func authzKey(id string) string      { return key("authz", id) }
func replacedKey(cert string) string { return key("replaced", cert) }
func acctOrdersPrefix(acct string) string {
	return key("acctorder", acct) + "."
}

func acctOrderKey(o *store.ACMEOrder) string {
	return acctOrdersPrefix(o.AccountID) + fmt.Sprintf("%020d", max(o.Created.UnixNano(), 0)) + "." + token(o.ID)
}

func pendingPrefix(acct string) string     { return key("pending", acct) + "." }
func pendingKey(a *store.ACMEAuthz) string { return pendingPrefix(a.AccountID) + token(a.ID) }

// indexPending keeps the pending index of an authorization that was old
// (nil when new) and is now a.
func (s *ACME) indexPending(ctx context.Context, old, a *store.ACMEAuthz) error {
	if a.Status == store.ACMEPending {
		_, err := s.kv.Put(ctx, pendingKey(a), []byte(strconv.FormatInt(a.Expires.UnixNano(), 10)))
		return err
	}
	if old != nil && old.Status == store.ACMEPending {
		return s.kv.Delete(ctx, pendingKey(old))
	}
	return nil
}

func (s *ACME) PendingAuthzs(accountID string, now time.Time, limit int) (int, error) {
	n := 0
	err := s.do(func(ctx context.Context) error {
		n = 0
		return scan(ctx, s.kv, pendingPrefix(accountID)+">", func(_ string, v []byte, _ uint64) error {
			if exp, err := strconv.ParseInt(string(v), 10, 64); err == nil && now.UnixNano() < exp && n < limit {
				n++
			}
			return nil
		})
	})
	return n, err
}

func authzIndexKey(acct string, id store.ACMEIdentifier, wildcard bool) string {
	w := "p"
	if wildcard {
		w = "w"
	}
	return key("authzidx", acct, id.Type, id.Value) + "." + w
}

func (s *ACME) CreateAccount(a *store.ACMEAccount) (*store.ACMEAccount, bool, error) {
	if a.ID == "" || a.Thumbprint == "" {
		return nil, false, errors.New("store: account without id or key thumbprint")
	}
	val, err := json.Marshal(a)
	if err != nil {
		return nil, false, err
	}
	var existing *store.ACMEAccount
	err = s.do(func(ctx context.Context) error {
		existing = nil
		// The key's index entry is claimed first: it is what makes the
		// key one account's.
		owner, created, err := createOrGet(ctx, s.kv, acctThumbKey(a.Thumbprint), []byte(a.ID))
		if err != nil {
			return err
		}
		if !created && string(owner) != a.ID {
			existing, err = s.waitAccount(ctx, string(owner))
			return err
		}
		if a.EABKeyID != "" {
			if err := s.claimEAB(ctx, a); err != nil {
				// The account is not created: its key is free again.
				if derr := deleteIfOwner(ctx, s.kv, acctThumbKey(a.Thumbprint), a.ID); derr != nil {
					return derr
				}
				return err
			}
		}
		old, created, err := createOrGet(ctx, s.kv, acctKey(a.ID), val)
		if err != nil {
			return err
		}
		if !created {
			prev := new(store.ACMEAccount)
			if err := json.Unmarshal(old, prev); err != nil {
				return err
			}
			if prev.Thumbprint == a.Thumbprint {
				existing = prev // our own earlier attempt
				return nil
			}
			return fmt.Errorf("account %s: %w", a.ID, store.ErrAlreadyExists)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if existing != nil {
		return existing, false, nil
	}
	return a, true, nil
}

// claimEAB marks an external account key used by the account, by
// compare-and-set, between claiming the account's key and writing the
// account (a bucket has no transaction over several keys). The claim
// names the account's key thumbprint: a claim that a crash left without
// its account can be completed by that account key only, and never
// taken by another.
func (s *ACME) claimEAB(ctx context.Context, a *store.ACMEAccount) error {
	_, err := updateJSON(ctx, s.kv, eabKey(a.EABKeyID), func(k *store.EABKey) error {
		if !k.Used.IsZero() && k.Thumbprint != a.Thumbprint {
			return store.ErrEABUsed
		}
		k.Used, k.Account, k.Thumbprint = a.Created.UTC().Truncate(time.Second), a.ID, a.Thumbprint
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return store.ErrEABUnknown
	}
	return err
}

func (s *ACME) AddEABKey(k store.EABKey) error {
	if k.ID == "" {
		return errors.New("store: external account key without id")
	}
	val, err := json.Marshal(&k)
	if err != nil {
		return err
	}
	return s.do(func(ctx context.Context) error {
		_, created, err := createOrGet(ctx, s.kv, eabKey(k.ID), val)
		if err == nil && !created {
			return fmt.Errorf("external account key %q: %w", k.ID, store.ErrAlreadyExists)
		}
		return err
	})
}

func (s *ACME) EABKey(kid string) (*store.EABKey, error) {
	k := new(store.EABKey)
	if err := s.get(eabKey(kid), k); err != nil {
		return nil, err
	}
	return k, nil
}

func (s *ACME) EABKeys() ([]store.EABKey, error) {
	var out []store.EABKey
	err := s.do(func(ctx context.Context) error {
		out = nil
		return scan(ctx, s.kv, "eab.>", func(_ string, v []byte, _ uint64) error {
			var k store.EABKey
			if err := json.Unmarshal(v, &k); err != nil {
				return fmt.Errorf("external account key record: %v", err)
			}
			out = append(out, k)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

func (s *ACME) RemoveEABKey(kid string) error {
	return s.do(func(ctx context.Context) error {
		if _, _, err := getString(ctx, s.kv, eabKey(kid)); err != nil {
			return err
		}
		return s.kv.Delete(ctx, eabKey(kid))
	})
}

// waitAccount reads an account whose key index entry exists: another
// front-end may be between claiming the key and writing the account.
func (s *ACME) waitAccount(ctx context.Context, id string) (*store.ACMEAccount, error) {
	for {
		a := new(store.ACMEAccount)
		_, err := getJSON(ctx, s.kv, acctKey(id), a)
		if !errors.Is(err, store.ErrNotFound) {
			return a, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("account %s: its key is claimed but the account was never written: %w", id, store.ErrConflict)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *ACME) Account(id string) (*store.ACMEAccount, error) {
	a := new(store.ACMEAccount)
	if err := s.get(acctKey(id), a); err != nil {
		return nil, err
	}
	return a, nil
}

func (s *ACME) get(k string, v any) error {
	return s.do(func(ctx context.Context) error {
		_, err := getJSON(ctx, s.kv, k, v)
		return err
	})
}

func (s *ACME) AccountByThumbprint(thumb string) (*store.ACMEAccount, error) {
	a := new(store.ACMEAccount)
	err := s.do(func(ctx context.Context) error {
		id, _, err := getString(ctx, s.kv, acctThumbKey(thumb))
		if err != nil {
			return err
		}
		_, err = getJSON(ctx, s.kv, acctKey(id), a)
		return err
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (s *ACME) UpdateAccount(id string, fn func(*store.ACMEAccount) error) (*store.ACMEAccount, error) {
	var out, other *store.ACMEAccount
	err := s.do(func(ctx context.Context) error {
		for {
			out, other = nil, nil
			a := new(store.ACMEAccount)
			rev, err := getJSON(ctx, s.kv, acctKey(id), a)
			if err != nil {
				return err
			}
			oldThumb := a.Thumbprint
			if err := fn(a); err != nil {
				return err
			}
			a.ID = id
			claimed := false
			if a.Thumbprint != oldThumb {
				owner, created, err := createOrGet(ctx, s.kv, acctThumbKey(a.Thumbprint), []byte(id))
				if err != nil {
					return err
				}
				if !created && string(owner) != id {
					other, err = s.waitAccount(ctx, string(owner))
					return err
				}
				claimed = true
			}
			val, err := json.Marshal(a)
			if err != nil {
				return err
			}
			if _, err := s.kv.Update(ctx, acctKey(id), val, rev); conflict(err) {
				if claimed {
					deleteIfOwner(ctx, s.kv, acctThumbKey(a.Thumbprint), id)
				}
				if err := pause(ctx); err != nil {
					return err
				}
				continue
			} else if err != nil {
				return err
			}
			if claimed {
				if err := deleteIfOwner(ctx, s.kv, acctThumbKey(oldThumb), id); err != nil {
					return err
				}
			}
			out = a
			return nil
		}
	})
	if err != nil {
		return nil, err
	}
	if other != nil {
		return other, store.ErrConflict
	}
	return out, nil
}

// deleteIfOwner deletes an index entry that still points at id.
func deleteIfOwner(ctx context.Context, kv jetstream.KeyValue, k, id string) error {
	for {
		v, rev, err := getString(ctx, kv, k)
		if errors.Is(err, store.ErrNotFound) || err == nil && v != id {
			return nil
		}
		if err != nil {
			return err
		}
		if err := kv.Delete(ctx, k, jetstream.LastRevision(rev)); !conflict(err) {
			return err
		}
		if err := pause(ctx); err != nil {
			return err
		}
	}
}

func (s *ACME) CreateOrder(o *store.ACMEOrder, newAuthzs []*store.ACMEAuthz) error {
	if o.ID == "" || o.AccountID == "" {
		return errors.New("store: order without id or account")
	}
	val, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return s.do(func(ctx context.Context) error {
		if o.Replaces != "" {
			// The order is stored before it claims the certificate: a
			// rival that finds the claim must find a live order behind it,
			// not a claim whose order is still being written.
			if _, err := s.kv.Put(ctx, orderKey(o.ID), val); err != nil {
				return err
			}
			if err := s.claimReplaced(ctx, o); err != nil {
				if errors.Is(err, store.ErrAlreadyReplaced) {
					if derr := s.kv.Delete(ctx, orderKey(o.ID)); derr != nil {
						return derr
					}
				}
				return err
			}
		}
		for _, a := range newAuthzs {
			av, err := json.Marshal(a)
			if err != nil {
				return err
			}
			if _, err := s.kv.Put(ctx, authzKey(a.ID), av); err != nil {
				return err
			}
			if _, err := s.kv.Put(ctx, authzIndexKey(a.AccountID, a.Identifier, a.Wildcard), []byte(a.ID)); err != nil {
				return err
			}
			if err := s.indexPending(ctx, nil, a); err != nil {
				return err
			}
		}
		if _, err := s.kv.Put(ctx, acctOrderKey(o), []byte{1}); err != nil {
			return err
		}
		_, err := s.kv.Put(ctx, orderKey(o.ID), val)
		return err
	})
}

// claimReplaced makes o the order replacing its certificate, unless a
// live order already does.
func (s *ACME) claimReplaced(ctx context.Context, o *store.ACMEOrder) error {
	k := replacedKey(o.Replaces)
	for {
		prev, rev, err := getString(ctx, s.kv, k)
		switch {
		case errors.Is(err, store.ErrNotFound):
			_, err = s.kv.Create(ctx, k, []byte(o.ID))
		case err != nil:
			return err
		case prev == o.ID:
			return nil
		default:
			live, lerr := s.orderLive(ctx, prev, time.Now())
			if lerr != nil {
				return lerr
			}
			if live {
				return store.ErrAlreadyReplaced
			}
			_, err = s.kv.Update(ctx, k, []byte(o.ID), rev)
		}
		if !conflict(err) {
			return err
		}
		if err := pause(ctx); err != nil {
			return err
		}
	}
}

// orderLive reports whether an order may still deliver a certificate.
func (s *ACME) orderLive(ctx context.Context, id string, now time.Time) (bool, error) {
	o := new(store.ACMEOrder)
	if _, err := getJSON(ctx, s.kv, orderKey(id), o); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	authzs := make([]*store.ACMEAuthz, 0, len(o.Authzs))
	for _, aid := range o.Authzs {
		a := new(store.ACMEAuthz)
		if _, err := getJSON(ctx, s.kv, authzKey(aid), a); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return false, err
		}
		authzs = append(authzs, a)
	}
	return o.CurrentStatus(authzs, now) != store.ACMEInvalid, nil
}

func (s *ACME) Order(id string) (*store.ACMEOrder, error) {
	o := new(store.ACMEOrder)
	if err := s.get(orderKey(id), o); err != nil {
		return nil, err
	}
	return o, nil
}

func (s *ACME) UpdateOrder(id string, fn func(*store.ACMEOrder) error) (*store.ACMEOrder, error) {
	var out *store.ACMEOrder
	err := s.do(func(ctx context.Context) error {
		var err error
		out, err = updateJSON(ctx, s.kv, orderKey(id), func(o *store.ACMEOrder) error {
			if err := fn(o); err != nil {
				return err
			}
			o.ID = id
			return nil
		})
		return err
	})
	return out, err
}

// UpdateOrders changes the orders one by one: there is no transaction
// across keys.
func (s *ACME) UpdateOrders(ids []string, fn func(*store.ACMEOrder) error) error {
	for _, id := range ids {
		if _, err := s.UpdateOrder(id, fn); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// updateJSON is a read-modify-write of one record, compare-and-set on
// the revision read, run again when another writer got in between.
func updateJSON[T any](ctx context.Context, kv jetstream.KeyValue, k string, fn func(*T) error) (*T, error) {
	for {
		v := new(T)
		rev, err := getJSON(ctx, kv, k, v)
		if err != nil {
			return nil, err
		}
		if err := fn(v); err != nil {
			return nil, err
		}
		val, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		if _, err := kv.Update(ctx, k, val, rev); !conflict(err) {
			if err != nil {
				return nil, err
			}
			return v, nil
		}
		if err := pause(ctx); err != nil {
			return nil, err
		}
	}
}

func (s *ACME) AccountOrders(accountID, cursor string, limit int) ([]string, string, error) {
	prefix := acctOrdersPrefix(accountID)
	var keys []string
	err := s.do(func(ctx context.Context) error {
		keys = nil
		l, err := s.kv.ListKeysFiltered(ctx, prefix+">")
		if err != nil {
			return err
		}
		defer l.Stop()
		for k := range l.Keys() {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	sort.Strings(keys)
	var ids []string
	next := ""
	for _, k := range keys {
		suffix := strings.TrimPrefix(k, prefix)
		if suffix < cursor {
			continue
		}
		if len(ids) == limit {
			next = suffix
			break
		}
		_, tok, ok := strings.Cut(suffix, ".")
		if !ok {
			continue
		}
		id, err := untoken(tok)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	return ids, next, nil
}

func (s *ACME) Authz(id string) (*store.ACMEAuthz, error) {
	a := new(store.ACMEAuthz)
	if err := s.get(authzKey(id), a); err != nil {
		return nil, err
	}
	return a, nil
}

func (s *ACME) Authzs(ids []string) ([]*store.ACMEAuthz, error) {
	out := make([]*store.ACMEAuthz, len(ids))
	for i, id := range ids {
		a, err := s.Authz(id)
		if err != nil {
			return nil, fmt.Errorf("authorization %s: %w", id, err)
		}
		out[i] = a
	}
	return out, nil
}

func (s *ACME) UpdateAuthz(id string, fn func(*store.ACMEAuthz) error) (*store.ACMEAuthz, error) {
	var out *store.ACMEAuthz
	err := s.do(func(ctx context.Context) error {
		var err error
		var old store.ACMEAuthz
		out, err = updateJSON(ctx, s.kv, authzKey(id), func(a *store.ACMEAuthz) error {
			old = *a
			if err := fn(a); err != nil {
				return err
			}
			a.ID = id
			return nil
		})
		if err != nil {
			return err
		}
		return s.indexPending(ctx, &old, out)
	})
	return out, err
}

func (s *ACME) LatestAuthz(accountID string, ident store.ACMEIdentifier, wildcard bool) (*store.ACMEAuthz, error) {
	a := new(store.ACMEAuthz)
	err := s.do(func(ctx context.Context) error {
		id, _, err := getString(ctx, s.kv, authzIndexKey(accountID, ident, wildcard))
		if err != nil {
			return err
		}
		_, err = getJSON(ctx, s.kv, authzKey(id), a)
		return err
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// maxSavedNonces bounds the nonces saved at a clean shutdown to what fits
// in one value; a client holding a nonce left out gets badNonce and
// retries.
const maxSavedNonces = 10000

func (s *ACME) noncesKey() string { return key("nonces", s.instance) }

// RestoreNonces returns the nonces this instance saved at its last clean
// shutdown. Reading them deletes them, so after a crash (no save) there
// are none.
func (s *ACME) RestoreNonces(now time.Time) ([]store.ACMENonce, error) {
	var saved []store.ACMENonce
	err := s.do(func(ctx context.Context) error {
		saved = nil
		_, err := getJSON(ctx, s.kv, s.noncesKey(), &saved)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return s.kv.Purge(ctx, s.noncesKey())
	})
	if err != nil {
		return nil, err
	}
	out := saved[:0]
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.nonces)
	for _, n := range saved {
		if now.Before(n.Expires) {
			out = append(out, n)
			s.nonces[n.Value] = n.Expires
		}
	}
	return out, nil
}

// SyncNonces keeps the outstanding set in memory (a crash loses it by
// design) and writes it at the final, clean, sync.
func (s *ACME) SyncNonces(issued []store.ACMENonce, used []string, final bool) error {
	now := time.Now()
	s.mu.Lock()
	for _, n := range issued {
		s.nonces[n.Value] = n.Expires
	}
	for _, n := range used {
		delete(s.nonces, n)
	}
	if final || now.Sub(s.lastSweep) > time.Minute {
		for v, exp := range s.nonces {
			if !now.Before(exp) {
				delete(s.nonces, v)
			}
		}
		s.lastSweep = now
	}
	var save []store.ACMENonce
	if final {
		for v, exp := range s.nonces {
			save = append(save, store.ACMENonce{Value: v, Expires: exp})
		}
	}
	s.mu.Unlock()
	if !final {
		return nil
	}
	// The latest-expiring nonces are the ones clients most likely hold.
	sort.Slice(save, func(i, j int) bool { return save[i].Expires.After(save[j].Expires) })
	save = save[:min(len(save), maxSavedNonces)]
	val, err := json.Marshal(save)
	if err != nil {
		return err
	}
	return s.do(func(ctx context.Context) error {
		_, err := s.kv.Put(ctx, s.noncesKey(), val)
		return err
	})
}

// DeleteExpired removes up to limit orders and authorizations past their
// retention, with their index entries. It scans the bucket.
func (s *ACME) DeleteExpired(now time.Time, limit int) (int, error) {
	type expired struct {
		until time.Time
		order *store.ACMEOrder
		authz *store.ACMEAuthz
	}
	var found []expired
	err := s.do(func(ctx context.Context) error {
		found = nil
		return scan(ctx, s.kv, ">", func(k string, v []byte, _ uint64) error {
			switch {
			case strings.HasPrefix(k, "order."):
				o := new(store.ACMEOrder)
				if json.Unmarshal(v, o) == nil && !now.Before(o.RetainUntil()) {
					found = append(found, expired{until: o.RetainUntil(), order: o})
				}
			case strings.HasPrefix(k, "authz."):
				a := new(store.ACMEAuthz)
				if json.Unmarshal(v, a) == nil && !now.Before(a.RetainUntil()) {
					found = append(found, expired{until: a.RetainUntil(), authz: a})
				}
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	sort.Slice(found, func(i, j int) bool { return found[i].until.Before(found[j].until) })
	n := 0
	for _, e := range found {
		if n == limit {
			break
		}
		err := s.do(func(ctx context.Context) error {
			if o := e.order; o != nil {
				if err := s.kv.Delete(ctx, acctOrderKey(o)); err != nil {
					return err
				}
				if o.Replaces != "" {
					if err := deleteIfOwner(ctx, s.kv, replacedKey(o.Replaces), o.ID); err != nil {
						return err
					}
				}
				return s.kv.Delete(ctx, orderKey(o.ID))
			}
			a := e.authz
			if err := deleteIfOwner(ctx, s.kv, authzIndexKey(a.AccountID, a.Identifier, a.Wildcard), a.ID); err != nil {
				return err
			}
			if err := s.kv.Delete(ctx, pendingKey(a)); err != nil {
				return err
			}
			return s.kv.Delete(ctx, authzKey(a.ID))
		})
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
