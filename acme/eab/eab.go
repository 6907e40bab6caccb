// Package eab keeps the external account binding keys of the ACME server
// (RFC 8555 §7.3.4): single-use key id and HMAC key pairs that an operator
// hands out with `qpki acme eab add`, and that bind a new ACME account to
// the person who received them.
//
// By default the keys live in <data-dir>/acme-eab.json, written atomically under an
// advisory lock (acme-eab.lock) by both the CLI and the running server,
// so that keys can be added, listed and removed while `qpki serve` runs.
// The server reads the file only when an account asks to be bound, which
// is rare enough that it need not cache it. Front-ends sharing a NATS
// cluster (serve --store jetstream) keep them in a key-value bucket
// instead (Shared); Store is what both offer.
package eab

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/qpki/qpki/pkg/atomicfile"
)

// File names in the data dir.
const (
	FileName = "acme-eab.json"
	lockName = "acme-eab.lock"
	maxFile  = 16 << 20
)

// Errors of Consume.
var (
	ErrUnknownKey = errors.New("unknown external account key id")
	ErrUsed       = errors.New("external account key already used")
)

// Key is one binding key.
type Key struct {
	ID string `json:"kid"`
	// HMAC is the MAC key, base64url without padding, as clients take it.
	HMAC    string    `json:"hmac"`
	Note    string    `json:"note,omitempty"`
	Created time.Time `json:"created"`
	// Used and Account are set once the key bound an account.
	Used    time.Time `json:"used,omitzero"`
	Account string    `json:"account,omitempty"`
}

type file struct {
	Keys []Key `json:"keys"`
}

var kidRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Path is the key file of a data dir.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// Add creates a key. An empty kid gets a random one.
func Add(dataDir, kid, note string) (Key, error) {
	k, err := newKey(kid, note)
	if err != nil {
		return Key{}, err
	}
	err = update(dataDir, func(f *file) error {
		for _, o := range f.Keys {
			if o.ID == k.ID {
				return fmt.Errorf("key id %q already exists", k.ID)
			}
		}
		f.Keys = append(f.Keys, k)
		return nil
	})
	return k, err
}

// List returns the keys, sorted by id.
func List(dataDir string) ([]Key, error) {
	var out []Key
	err := withLock(dataDir, func() error {
		f, err := read(dataDir)
		out = f.Keys
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// Remove deletes a key.
func Remove(dataDir, kid string) error {
	return update(dataDir, func(f *file) error {
		for i, k := range f.Keys {
			if k.ID == kid {
				f.Keys = append(f.Keys[:i], f.Keys[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("%w %q", ErrUnknownKey, kid)
	})
}

// Consume checks a binding with verify (given the decoded MAC key) and,
// when it holds, marks the key used by account, all under the lock: a key
// binds one account only.
func Consume(dataDir, kid, account string, verify func(macKey []byte) error) error {
	return update(dataDir, func(f *file) error {
		for i := range f.Keys {
			k := &f.Keys[i]
			if k.ID != kid {
				continue
			}
			if !k.Used.IsZero() {
				return ErrUsed
			}
			mac, err := base64.RawURLEncoding.DecodeString(k.HMAC)
			if err != nil {
				return fmt.Errorf("key %q in %s: bad HMAC encoding", kid, FileName)
			}
			if err := verify(mac); err != nil {
				return err
			}
			k.Used, k.Account = time.Now().UTC().Truncate(time.Second), account
			return nil
		}
		return ErrUnknownKey
	})
}

// newKey makes a key with a fresh HMAC key; an empty kid gets a random one.
func newKey(kid, note string) (Key, error) {
	if kid == "" {
		// A random id never starts with '-': the operator types it after
		// `qpki acme eab remove`, which would take it for a flag.
		for kid = random(12); kid[0] == '-'; kid = random(12) {
		}
	} else if kid[0] == '-' {
		return Key{}, fmt.Errorf("key id %q: must not start with '-', which command lines read as a flag", kid)
	}
	if !kidRE.MatchString(kid) {
		return Key{}, fmt.Errorf("key id %q: use 1 to 64 letters, digits, '-' or '_'", kid)
	}
	return Key{ID: kid, HMAC: random(32), Note: note, Created: time.Now().UTC().Truncate(time.Second)}, nil
}

func update(dataDir string, fn func(*file) error) error {
	return withLock(dataDir, func() error {
		f, err := read(dataDir)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		data, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			return err
		}
		return atomicfile.Write(Path(dataDir), append(data, '\n'), 0o600)
	})
}

func read(dataDir string) (*file, error) {
	f := new(file)
	path := Path(dataDir)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxFile {
		return nil, fmt.Errorf("%s: file too large", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %v", path, err)
	}
	return f, nil
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

func random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
