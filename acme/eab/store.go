package eab

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
)

// Store keeps the binding keys: a data dir's file (Dir) or a bucket that
// several front-ends share (Shared).
type Store interface {
	// Add creates a key; an empty kid gets a random one.
	Add(kid, note string) (Key, error)
	// List returns the keys, sorted by id.
	List() ([]Key, error)
	// Remove deletes a key.
	Remove(kid string) error
	// Consume checks a binding with verify (given the decoded MAC key)
	// and, when it holds, marks the key used by account. Of several
	// calls for one key, at most one succeeds.
	Consume(kid, account string, verify func(macKey []byte) error) error
}

// Dir is the key file of a data dir as a Store.
type Dir string

func (d Dir) Add(kid, note string) (Key, error) { return Add(string(d), kid, note) }
func (d Dir) List() ([]Key, error)              { return List(string(d)) }
func (d Dir) Remove(kid string) error           { return Remove(string(d), kid) }
func (d Dir) Consume(kid, account string, verify func([]byte) error) error {
	return Consume(string(d), kid, account, verify)
}

// Shared keeps the keys in a JetStream bucket (jskv.BucketEAB), one
// record per key id; consuming a key is a compare-and-set on its record,
// so a key binds one account even when two front-ends see it at once.
func Shared(r *jskv.Records) Store { return shared{r} }

type shared struct{ r *jskv.Records }

func (s shared) Add(kid, note string) (Key, error) {
	k, err := newKey(kid, note)
	if err != nil {
		return Key{}, err
	}
	err = s.r.Create(k.ID, &k)
	if errors.Is(err, store.ErrAlreadyExists) {
		return Key{}, fmt.Errorf("key id %q already exists", k.ID)
	}
	return k, err
}

func (s shared) List() ([]Key, error) {
	var out []Key
	err := s.r.List(func(_ string, v []byte) error {
		var k Key
		if err := json.Unmarshal(v, &k); err != nil {
			return fmt.Errorf("external account key record: %v", err)
		}
		out = append(out, k)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].ID, out[j].ID) < 0 })
	return out, err
}

func (s shared) Remove(kid string) error {
	err := s.r.Delete(kid)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w %q", ErrUnknownKey, kid)
	}
	return err
}

func (s shared) Consume(kid, account string, verify func([]byte) error) error {
	if !kidRE.MatchString(kid) {
		return ErrUnknownKey
	}
	for {
		var k Key
		rev, err := s.r.Get(kid, &k)
		if errors.Is(err, store.ErrNotFound) {
			return ErrUnknownKey
		}
		if err != nil {
			return err
		}
		if !k.Used.IsZero() {
			if k.Account == account {
				return nil // our own write, retried after a lost reply
			}
			return ErrUsed
		}
		mac, err := base64.RawURLEncoding.DecodeString(k.HMAC)
		if err != nil {
			return fmt.Errorf("key %q: bad HMAC encoding", kid)
		}
		if err := verify(mac); err != nil {
			return err
		}
		k.Used, k.Account = time.Now().UTC().Truncate(time.Second), account
		err = s.r.Update(kid, &k, rev)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		// Changed since read: another front-end used or removed it, or
		// a retried write of ours landed; read again.
	}
}
