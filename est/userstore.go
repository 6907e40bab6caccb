package est

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
)

// UserStore keeps the HTTP Basic users: a data dir's est-users.json
// (UsersDir, the default) or a bucket that several front-ends share
// (SharedUsers).
type UserStore interface {
	// Lookup returns a user's password hash.
	Lookup(name string) (hash string, ok bool, err error)
	// Put adds a user or replaces its hash, and reports whether the
	// user is new.
	Put(name, hash string) (created bool, err error)
	// Remove deletes a user.
	Remove(name string) error
	// List returns the users, by name.
	List() ([]User, error)
}

// UsersDir is the users file of a data dir as a UserStore. Lookup reads
// the file again when it changed, checked at most once a second.
func UsersDir(dataDir string) UserStore { return &fileUsers{db: &userDB{path: UsersPath(dataDir)}} }

type fileUsers struct{ db *userDB }

func (f *fileUsers) Lookup(name string) (string, bool, error) { return f.db.lookup(name) }

func (f *fileUsers) Put(name, hash string) (bool, error) {
	doc, err := readUsers(f.db.path)
	if err != nil {
		return false, err
	}
	i := slices.IndexFunc(doc.Users, func(u User) bool { return u.Name == name })
	if i < 0 {
		doc.Users = append(doc.Users, User{Name: name, Hash: hash, Created: time.Now().UTC().Truncate(time.Second)})
	} else {
		doc.Users[i].Hash = hash
	}
	return i < 0, writeUsers(f.db.path, doc)
}

func (f *fileUsers) Remove(name string) error {
	doc, err := readUsers(f.db.path)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(doc.Users, func(u User) bool { return u.Name == name })
	if i < 0 {
		return fmt.Errorf("no EST user %q", name)
	}
	doc.Users = slices.Delete(doc.Users, i, i+1)
	return writeUsers(f.db.path, doc)
}

func (f *fileUsers) List() ([]User, error) {
	doc, err := readUsers(f.db.path)
	if err != nil {
		return nil, err
	}
	return doc.Users, nil
}

// SharedUsers keeps the users in a JetStream bucket (jskv.BucketESTUsers),
// one record per name. Lookup reads the record each time, so a user
// added or removed at one front-end counts at once at all of them (the
// verified-credential cache is keyed by the hash it read).
func SharedUsers(r *jskv.Records) UserStore { return sharedUsers{r} }

type sharedUsers struct{ r *jskv.Records }

func (s sharedUsers) Lookup(name string) (string, bool, error) {
	if CheckUserName(name) != nil {
		return "", false, nil
	}
	var u User
	_, err := s.r.Get(name, &u)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return u.Hash, true, nil
}

func (s sharedUsers) Put(name, hash string) (bool, error) {
	u := User{Name: name, Hash: hash, Created: time.Now().UTC().Truncate(time.Second)}
	for {
		err := s.r.Create(name, &u)
		if !errors.Is(err, store.ErrAlreadyExists) {
			return err == nil, err
		}
		var old User
		rev, err := s.r.Get(name, &old)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed in between
		}
		if err != nil {
			return false, err
		}
		old.Hash = hash
		err = s.r.Update(name, &old, rev)
		if !errors.Is(err, store.ErrConflict) {
			return false, err
		}
	}
}

func (s sharedUsers) Remove(name string) error {
	err := s.r.Delete(name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no EST user %q", name)
	}
	return err
}

func (s sharedUsers) List() ([]User, error) {
	var out []User
	err := s.r.List(func(_ string, v []byte) error {
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("EST user record: %v", err)
		}
		out = append(out, u)
		return nil
	})
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}
