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
	// Lookup returns a user: its password hash and name grants.
	Lookup(name string) (u User, ok bool, err error)
	// Put adds a user or replaces its hash and grants (keeping its
	// creation time), and reports whether the user is new.
	Put(u User) (created bool, err error)
	// Remove deletes a user.
	Remove(name string) error
	// List returns the users, by name.
	List() ([]User, error)
}

// UsersDir is the users file of a data dir as a UserStore. Lookup reads
// the file again when it changed, checked at most once a second.
func UsersDir(dataDir string) UserStore { return &fileUsers{db: &userDB{path: UsersPath(dataDir)}} }

type fileUsers struct{ db *userDB }

func (f *fileUsers) Lookup(name string) (User, bool, error) { return f.db.lookup(name) }

func (f *fileUsers) Put(u User) (bool, error) {
	doc, err := readUsers(f.db.path)
	if err != nil {
		return false, err
	}
	i := slices.IndexFunc(doc.Users, func(o User) bool { return o.Name == u.Name })
	if i < 0 {
		u.Created = time.Now().UTC().Truncate(time.Second)
		doc.Users = append(doc.Users, u)
	} else {
		doc.Users[i].Hash, doc.Users[i].Names = u.Hash, u.Names
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

func (s sharedUsers) Lookup(name string) (User, bool, error) {
	if CheckUserName(name) != nil {
		return User{}, false, nil
	}
	var u User
	_, err := s.r.Get(name, &u)
	if errors.Is(err, store.ErrNotFound) {
		return User{}, false, nil
	}
	if err != nil {
		return User{}, false, err
	}
	return u, true, nil
}

func (s sharedUsers) Put(u User) (bool, error) {
	name := u.Name
	u.Created = time.Now().UTC().Truncate(time.Second)
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
		old.Hash, old.Names = u.Hash, u.Names
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
