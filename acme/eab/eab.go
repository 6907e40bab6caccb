// Package eab manages the external account binding keys of the ACME
// server (RFC 8555 §7.3.4): single-use key id and HMAC key pairs that an
// operator hands out with `qpki acme eab add`, and that bind a new ACME
// account to the person who received them.
//
// The keys live in the ACME store (acme.db, or the JetStream bucket of
// serve --store jetstream), so that the account a key creates and the
// mark that the key is used are one write (store.ACMEStore.CreateAccount).
// While serve holds acme.db, the CLI reaches the keys through the ACME
// front-end's socket in the data dir (Remote). Keys of earlier versions,
// in <data-dir>/acme-eab.json or the shared EAB bucket, are moved into
// the store at the first start (MigrateFile, MigrateRecords).
package eab

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

// Key is one binding key.
type Key = store.EABKey

// Errors.
var (
	ErrUnknownKey = store.ErrEABUnknown
	ErrUsed       = store.ErrEABUsed
)

// Store keeps the binding keys.
type Store interface {
	// Add creates a key; an empty kid gets a random one.
	Add(kid, note string) (Key, error)
	// List returns the keys, sorted by id.
	List() ([]Key, error)
	// Remove deletes a key (ErrUnknownKey); an account it bound stays.
	Remove(kid string) error
}

// InStore is the keys of an ACME store.
func InStore(st store.ACMEStore) Store { return inStore{st} }

type inStore struct{ st store.ACMEStore }

func (s inStore) Add(kid, note string) (Key, error) {
	k, err := NewKey(kid, note)
	if err != nil {
		return Key{}, err
	}
	err = s.st.AddEABKey(k)
	if errors.Is(err, store.ErrAlreadyExists) {
		return Key{}, fmt.Errorf("key id %q already exists", k.ID)
	}
	return k, err
}

func (s inStore) List() ([]Key, error) { return s.st.EABKeys() }

func (s inStore) Remove(kid string) error {
	err := s.st.RemoveEABKey(kid)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w %q", ErrUnknownKey, kid)
	}
	return err
}

var kidRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether kid is a key id qpki could have made.
func ValidID(kid string) bool { return kidRE.MatchString(kid) }

// NewKey makes a key with a fresh HMAC key; an empty kid gets a random
// one.
func NewKey(kid, note string) (Key, error) {
	if kid == "" {
		// A random id never starts with '-': the operator types it after
		// `qpki acme eab remove`, which would take it for a flag.
		for kid = random(12); kid[0] == '-'; kid = random(12) {
		}
	} else if kid[0] == '-' {
		return Key{}, fmt.Errorf("key id %q: must not start with '-', which command lines read as a flag", kid)
	}
	if !ValidID(kid) {
		return Key{}, fmt.Errorf("key id %q: use 1 to 64 letters, digits, '-' or '_'", kid)
	}
	return Key{ID: kid, HMAC: random(32), Note: note, Created: time.Now().UTC().Truncate(time.Second)}, nil
}

// MACKey decodes a key's HMAC key.
func MACKey(k *Key) ([]byte, error) {
	mac, err := base64.RawURLEncoding.DecodeString(k.HMAC)
	if err != nil {
		return nil, fmt.Errorf("external account key %q: bad HMAC encoding", k.ID)
	}
	return mac, nil
}

func random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
