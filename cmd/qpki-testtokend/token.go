package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/qpki/qpki/pkg/atomicfile"
)

// A slot holds one token, kept in its own directory:
//
//	token.json           label, serial, the wrapped token keys, PIN counters
//	objects/<handle>.json  one token object; key material sealed under the token key
//
// The token key (32 random bytes, made by C_InitToken) seals every private
// or secret key with AES-256-GCM. It is stored only wrapped, once under a
// key derived from the SO PIN and once under one derived from the user PIN
// (PBKDF2-HMAC-SHA256), so that C_InitPIN by the SO re-wraps it for a new
// user PIN and the objects stay readable.

const (
	minPINLen      = 4
	tokenFileName  = "token.json"
	objectsDirName = "objects"
	firstSessionID = 1 << 40 // session objects get handles above token objects
)

type pinWrap struct {
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Nonce      []byte `json:"nonce"`
	Wrapped    []byte `json:"wrapped"`
}

type tokenFile struct {
	Initialized bool     `json:"initialized"`
	Label       string   `json:"label"`
	Serial      string   `json:"serial"`
	SOPIN       *pinWrap `json:"so_pin,omitempty"`
	UserPIN     *pinWrap `json:"user_pin,omitempty"`
	SOFails     int      `json:"so_fails"`
	UserFails   int      `json:"user_fails"`
	NextHandle  uint64   `json:"next_handle"`
}

type objectFile struct {
	Handle uint64            `json:"handle"`
	Attrs  map[uint64][]byte `json:"attrs"`
	Sealed []byte            `json:"sealed,omitempty"`
}

type slot struct {
	id      uint64
	dir     string
	state   tokenFile
	objects map[uint64]*object
	// tokenKey is known while a user or the SO of some application is
	// logged in, and forgotten when the last one logs out.
	tokenKey      []byte
	nextSessionID uint64
}

func loadSlot(dir string, id uint64) (*slot, error) {
	if err := os.MkdirAll(filepath.Join(dir, objectsDirName), 0o700); err != nil {
		return nil, err
	}
	s := &slot{id: id, dir: dir, objects: map[uint64]*object{}, nextSessionID: firstSessionID}
	data, err := os.ReadFile(filepath.Join(dir, tokenFileName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		serial := make([]byte, 8)
		rand.Read(serial)
		s.state = tokenFile{Serial: hex.EncodeToString(serial), NextHandle: 1}
		if err := s.save(); err != nil {
			return nil, err
		}
		return s, nil
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(data, &s.state); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(dir, tokenFileName), err)
	}
	if s.state.NextHandle == 0 {
		s.state.NextHandle = 1
	}
	entries, err := os.ReadDir(filepath.Join(dir, objectsDirName))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		path := filepath.Join(dir, objectsDirName, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var f objectFile
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if want := strconv.FormatUint(f.Handle, 10) + ".json"; want != name || f.Handle == 0 || f.Handle >= firstSessionID {
			return nil, fmt.Errorf("%s: object file names handle %d", path, f.Handle)
		}
		o := &object{handle: f.Handle, attrs: f.Attrs, sealed: f.Sealed}
		if o.attrs == nil {
			o.attrs = map[uint64][]byte{}
		}
		s.objects[o.handle] = o
	}
	return s, nil
}

func (s *slot) save() error {
	data, err := json.MarshalIndent(&s.state, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.dir, tokenFileName), data, 0o600)
}

func (s *slot) objectPath(h uint64) string {
	return filepath.Join(s.dir, objectsDirName, strconv.FormatUint(h, 10)+".json")
}

func (s *slot) saveObject(o *object) error {
	data, err := json.Marshal(objectFile{Handle: o.handle, Attrs: o.attrs, Sealed: o.sealed})
	if err != nil {
		return err
	}
	return atomicfile.Write(s.objectPath(o.handle), data, 0o600)
}

func (s *slot) removeObject(o *object) error {
	delete(s.objects, o.handle)
	if !o.isToken() {
		return nil
	}
	err := os.Remove(s.objectPath(o.handle))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// material returns the secret part of a private or secret key.
func (s *slot) material(o *object) ([]byte, uint64) {
	if !o.isToken() {
		return o.material, CKR_OK
	}
	if s.tokenKey == nil {
		return nil, CKR_USER_NOT_LOGGED_IN
	}
	m, err := open(s.tokenKey, objectAAD(o.handle), o.sealed)
	if err != nil {
		return nil, CKR_DEVICE_ERROR
	}
	return m, CKR_OK
}

func objectAAD(h uint64) []byte { return []byte("qpki-testtoken object " + strconv.FormatUint(h, 10)) }

func pinAAD(role string) []byte { return []byte("qpki-testtoken token key, " + role) }

// seal encrypts with AES-256-GCM: nonce || ciphertext.
func seal(key, aad, plaintext []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	return gcm.Seal(nonce, nonce, plaintext, aad), nil
}

func open(key, aad, sealed []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("sealed data too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], aad)
}

func pinKey(pin []byte, salt []byte, iterations int) ([]byte, error) {
	return pbkdf2.Key(sha256.New, string(pin), salt, iterations, 32)
}

// wrapTokenKey wraps the token key under a key derived from pin.
func wrapTokenKey(tokenKey, pin []byte, role string, iterations int) (*pinWrap, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	kek, err := pinKey(pin, salt, iterations)
	if err != nil {
		return nil, err
	}
	sealed, err := seal(kek, pinAAD(role), tokenKey)
	if err != nil {
		return nil, err
	}
	return &pinWrap{Iterations: iterations, Salt: salt, Nonce: sealed[:12], Wrapped: sealed[12:]}, nil
}

// unwrapTokenKey returns the token key when pin is right.
func unwrapTokenKey(w *pinWrap, pin []byte, role string) ([]byte, bool) {
	if w == nil || w.Iterations <= 0 || w.Iterations > 10_000_000 {
		return nil, false
	}
	kek, err := pinKey(pin, w.Salt, w.Iterations)
	if err != nil {
		return nil, false
	}
	key, err := open(kek, pinAAD(role), append(append([]byte(nil), w.Nonce...), w.Wrapped...))
	if err != nil || len(key) != 32 {
		return nil, false
	}
	return key, true
}
