package est

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/atomicfile"
)

// UsersFile is the file in a data dir that holds the HTTP Basic users.
const UsersFile = "est-users.json"

// maxUsersFile bounds est-users.json.
const maxUsersFile = 16 << 20

// Argon2id parameters for new hashes: RFC 9106 §4's second recommended
// option (t=3, 64 MiB, 4 lanes), 128-bit salt, 256-bit tag. They are
// written into each hash, so changing them does not break old ones.
const (
	argonTime    = 3
	argonMemory  = 64 << 10 // KiB
	argonThreads = 4
	argonSaltLen = 16
	argonKeyLen  = 32
)

// User is one HTTP Basic user.
type User struct {
	Name string `json:"name"`
	// Hash is the password's argon2id hash in PHC string format:
	// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<tag>.
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	// Names are the names this user may be issued, on top of the label's
	// (qpki est user add --allow-dns ...).
	Names *enroll.NamePolicy `json:"names,omitempty"`
}

type usersDoc struct {
	Version int    `json:"version"`
	Users   []User `json:"users"`
}

// UsersPath is where a data dir keeps its EST users.
func UsersPath(dataDir string) string { return filepath.Join(dataDir, UsersFile) }

// CheckUserName refuses names HTTP Basic cannot carry.
func CheckUserName(name string) error {
	if name == "" || len(name) > 64 || !utf8.ValidString(name) || strings.ContainsAny(name, ":") {
		return errors.New("a user name is 1 to 64 bytes of UTF-8 without ':'")
	}
	for _, r := range name {
		if r < 0x21 || r == 0x7f {
			return errors.New("a user name has no spaces or control characters")
		}
	}
	return nil
}

// HashPassword hashes a password with argon2id.
func HashPassword(password []byte) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	tag := argon2.IDKey(password, salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(tag)), nil
}

// VerifyPassword checks a password against a hash from HashPassword.
func VerifyPassword(hash string, password []byte) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errors.New("not an argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, errors.New("unsupported argon2 version")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, errors.New("malformed argon2id parameters")
	}
	// Bounds keep a tampered file from making verification exhaust memory.
	if m < 8*uint32(p) || m > 1<<21 || t < 1 || t > 16 || p < 1 {
		return false, errors.New("argon2id parameters out of range")
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, errors.New("malformed argon2id salt")
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errors.New("malformed argon2id tag")
	}
	got := argon2.IDKey(password, salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// readUsers reads a users file; a missing file has no users.
func readUsers(path string) (*usersDoc, error) {
	data, err := readFileLimited(path, maxUsersFile)
	if errors.Is(err, os.ErrNotExist) {
		return &usersDoc{Version: 1}, nil
	}
	if err != nil {
		return nil, err
	}
	var doc usersDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if doc.Version != 1 {
		return nil, fmt.Errorf("%s: unsupported version %d", path, doc.Version)
	}
	return &doc, nil
}

func writeUsers(path string, doc *usersDoc) error {
	slices.SortFunc(doc.Users, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

// SetUser adds a user or replaces its password and name grants (nil:
// none of its own), and reports whether the user is new. The file is
// replaced atomically, so a running server reads either the old or the
// new one.
func SetUser(dataDir, name string, password []byte, names *enroll.NamePolicy) (created bool, err error) {
	return SetUserIn(UsersDir(dataDir), name, password, names)
}

// SetUserIn is SetUser for any user store.
func SetUserIn(st UserStore, name string, password []byte, names *enroll.NamePolicy) (created bool, err error) {
	if err := CheckUserName(name); err != nil {
		return false, err
	}
	if len(password) == 0 {
		return false, errors.New("empty password")
	}
	if err := names.Validate(); err != nil {
		return false, err
	}
	if names.Empty() {
		names = nil
	}
	hash, err := HashPassword(password)
	if err != nil {
		return false, err
	}
	return st.Put(User{Name: name, Hash: hash, Names: names})
}

// RemoveUser deletes a user.
func RemoveUser(dataDir, name string) error { return UsersDir(dataDir).Remove(name) }

// ListUsers returns the users, by name.
func ListUsers(dataDir string) ([]User, error) { return UsersDir(dataDir).List() }

// userDB is a server's view of the users file, read again when it
// changes (checked at most once a second).
type userDB struct {
	path    string
	mu      sync.Mutex
	checked time.Time
	stamp   string
	users   map[string]User
	err     error
}

func (db *userDB) lookup(name string) (u User, ok bool, err error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if now := time.Now(); now.Sub(db.checked) >= time.Second || db.users == nil && db.err == nil {
		db.checked = now
		db.reload()
	}
	if db.err != nil {
		return User{}, false, db.err
	}
	u, ok = db.users[name]
	return u, ok, nil
}

func (db *userDB) reload() {
	stamp := ""
	if fi, err := os.Stat(db.path); err == nil {
		stamp = fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
	}
	if db.users != nil && stamp == db.stamp {
		return
	}
	doc, err := readUsers(db.path)
	if err != nil {
		// Keep serving the last good file; report only if there is none.
		if db.users == nil {
			db.err = err
		}
		return
	}
	users := make(map[string]User, len(doc.Users))
	for _, u := range doc.Users {
		users[u.Name] = u
	}
	db.users, db.stamp, db.err = users, stamp, nil
}
