package ca

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/keyfile"
)

// KeyOptions tells how to unlock a CA's keys.
type KeyOptions struct {
	// Passphrase is asked for only when a key file is encrypted.
	Passphrase func() ([]byte, error)
	// HSMConfig, when set, overrides the HSM config recorded in the CA dir
	// (a worker on another machine has its own path to the module).
	HSMConfig string
}

// KeySpec tells where to create a new CA key.
type KeySpec struct {
	// Passphrase encrypts a new key file; empty leaves it in clear.
	Passphrase []byte
	// HSMConfig selects an HSM instead of a file.
	HSMConfig string
	// Label and ID name the HSM key; ID is chosen when empty.
	Label string
	ID    []byte
	// UseExisting finds the key in the HSM instead of generating it.
	UseExisting bool
	// HSMAccess, when set, is the config that reaches the token from this
	// machine, while the metadata records HSMConfig (a rotation with
	// --hsm-config on a machine whose module path differs).
	HSMAccess string
}

// Backend creates and opens keys of one storage type. Software keys are
// built in; the PKCS#11 backend registers itself from pkcs11.go.
type Backend interface {
	// Create makes (or, with spec.UseExisting, finds) a key. stageDir is
	// where files go now; caDir is where they will live.
	Create(stageDir, caDir, version, keyID string, a algo.Algorithm, spec KeySpec) (Storage, algo.SignerCloser, error)
	Open(caDir string, s Storage, a algo.Algorithm, opts KeyOptions) (algo.SignerCloser, error)
}

var backends = map[string]Backend{"software": softwareBackend{}}

// RegisterBackend adds a key storage type.
func RegisterBackend(typ string, b Backend) { backends[typ] = b }

func backendFor(spec KeySpec) (string, Backend, error) {
	typ := "software"
	if spec.HSMConfig != "" {
		typ = "pkcs11"
	}
	b, ok := backends[typ]
	if !ok {
		return "", nil, fmt.Errorf("key storage %q is not available in this build", typ)
	}
	return typ, b, nil
}

type softwareBackend struct{}

type closeNop struct{ algo.Signer }

func (closeNop) Close() error { return nil }

func (softwareBackend) Create(stageDir, caDir, version, keyID string, a algo.Algorithm, spec KeySpec) (Storage, algo.SignerCloser, error) {
	if spec.UseExisting {
		return Storage{}, nil, fmt.Errorf("--use-existing-key needs an HSM (--hsm-config)")
	}
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		return Storage{}, nil, err
	}
	name := "ca." + string(a) + ".key"
	if keyID != "default" {
		name = "ca." + keyID + "." + string(a) + ".key"
	}
	rel := filepath.Join("versions", version, "keys", name)
	abs := filepath.Join(stageDir, rel)
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return Storage{}, nil, err
	}
	if err := keyfile.Write(abs, priv, spec.Passphrase); err != nil {
		return Storage{}, nil, err
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		return Storage{}, nil, err
	}
	return Storage{Type: "software", Path: filepath.ToSlash(rel)}, closeNop{s}, nil
}

func (softwareBackend) Open(caDir string, s Storage, a algo.Algorithm, opts KeyOptions) (algo.SignerCloser, error) {
	if s.Path == "" || filepath.IsAbs(s.Path) || strings.Contains(s.Path, "..") {
		return nil, fmt.Errorf("key path %q must be relative to the CA directory", s.Path)
	}
	priv, err := keyfile.Read(filepath.Join(caDir, filepath.FromSlash(s.Path)), opts.Passphrase)
	if err != nil {
		return nil, err
	}
	sg, err := algo.NewSigner(priv, a)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", s.Path, err)
	}
	return closeNop{sg}, nil
}

func openKey(caDir string, k Key, opts KeyOptions) (algo.SignerCloser, error) {
	b, ok := backends[k.Storage.Type]
	if !ok {
		return nil, fmt.Errorf("key %q: storage %q is not available in this build", k.ID, k.Storage.Type)
	}
	a, err := algo.Parse(k.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("key %q: %v", k.ID, err)
	}
	return b.Open(caDir, k.Storage, a, opts)
}
