package credential

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/keyfile"
)

// HSMConfigFile is the copy of the --hsm-config kept in a credential dir.
const HSMConfigFile = "hsm.yaml"

// KeySpec says where a credential's new keys go.
type KeySpec struct {
	// HSMConfig generates the keys in that HSM; empty makes key files.
	HSMConfig string
	// Label and ID name an HSM key. Each key of the credential gets its
	// own CKA_ID: ID (for the first key) or one derived from the public key.
	Label string
	ID    []byte
	// Passphrase encrypts key files; empty leaves them in clear.
	Passphrase []byte
	// Algorithm overrides the profile's key algorithm.
	Algorithm algo.Algorithm
}

// keyMaker makes a credential's keys in one place: a token or files.
type keyMaker struct {
	tok        *hsm.Token  // nil for key files
	configRef  string      // the HSM config as recorded, relative to credDir
	label      string      // HSM key label
	passphrase []byte      // for key files
	made       []*keyDraft // for undoing a failed enrollment or rotation
}

// keyDraft is a key made for a certificate not yet issued.
type keyDraft struct {
	alg     algo.Algorithm
	public  crypto.PublicKey
	priv    crypto.PrivateKey // a key file's key, written once the serial is known
	hsmKey  *hsm.Key
	storage Storage
	file    string // the key file written, for undoing
	cert    string // the certificate file written, for undoing
}

// newHSMKeyMaker opens the token that access (the config that reaches it
// from here) names; configRef is what the metadata records.
func newHSMKeyMaker(access *hsm.Config, configRef, label string) (*keyMaker, error) {
	if label == "" {
		return nil, errors.New("an HSM key needs a label (--key-label)")
	}
	tok, err := hsm.Open(access)
	if err != nil {
		return nil, err
	}
	return &keyMaker{tok: tok, configRef: configRef, label: label}, nil
}

func (m *keyMaker) close() {
	if m.tok != nil {
		m.tok.Close()
	}
}

// make generates a key of algorithm a: in the token (with CKA_ID id, or
// one derived from the public key when id is empty) or in memory.
func (m *keyMaker) make(a algo.Algorithm, id []byte) (*keyDraft, error) {
	if m.tok == nil {
		priv, err := algo.GenerateKey(a, rand.Reader)
		if err != nil {
			return nil, err
		}
		pub, err := algo.PublicKey(priv)
		if err != nil {
			return nil, err
		}
		d := &keyDraft{alg: a, public: pub, priv: priv, storage: Storage{Type: StorageSoftware}}
		m.made = append(m.made, d)
		return d, nil
	}
	k, err := m.tok.GenerateKey(a, m.label, id)
	if err != nil {
		return nil, err
	}
	d := &keyDraft{alg: a, public: k.Public(), hsmKey: k,
		storage: Storage{Type: StoragePKCS11, Config: m.configRef, Label: k.Label, KeyID: k.IDHex()}}
	m.made = append(m.made, d)
	return d, nil
}

// keep writes a key file, named after the certificate's serial, into
// dir (the staging dir or the credential dir).
func (m *keyMaker) keep(d *keyDraft, dir, serial string) error {
	if d.priv == nil {
		return nil
	}
	rel := "keys/" + serial + ".key"
	path := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := keyfile.Write(path, d.priv, m.passphrase); err != nil {
		return err
	}
	d.file, d.storage.Path = path, rel
	return nil
}

// undo destroys the HSM keys and removes the key files made so far.
func (m *keyMaker) undo() {
	for _, d := range m.made {
		if d.hsmKey != nil {
			m.tok.DestroyKey(d.hsmKey)
		}
		for _, f := range []string{d.file, d.cert} {
			if f != "" {
				os.Remove(f)
			}
		}
	}
	m.made = nil
}

// copyHSMConfig writes the configuration into credDir, unless an identical
// copy is there, and returns the path the metadata records.
func copyHSMConfig(credDir string, cfg *hsm.Config) (string, error) {
	dst := filepath.Join(credDir, HSMConfigFile)
	data := cfg.Bytes()
	if old, err := os.ReadFile(dst); err == nil {
		if bytes.Equal(old, data) {
			return "./" + HSMConfigFile, nil
		}
		return "", fmt.Errorf("%s already holds another HSM config", dst)
	}
	if err := atomicfile.Write(dst, data, 0o644); err != nil {
		return "", err
	}
	return "./" + HSMConfigFile, nil
}

// configPath resolves a recorded HSM config against the credential dir.
func configPath(credDir, recorded string) (string, error) {
	if recorded == "" {
		return "", errors.New("the key's storage names no HSM config; give --hsm-config")
	}
	if filepath.IsAbs(recorded) {
		return recorded, nil
	}
	if strings.Contains(recorded, "..") {
		return "", fmt.Errorf("HSM config path %q must stay inside the credential dir", recorded)
	}
	return filepath.Join(credDir, filepath.FromSlash(recorded)), nil
}
