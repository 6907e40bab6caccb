package ca

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/hsm"
)

// HSMConfigFile is the name under which a CA directory keeps a copy of
// the --hsm-config it was created with.
const HSMConfigFile = "hsm.yaml"

func init() { RegisterBackend("pkcs11", pkcs11Backend{}) }

// pkcs11Backend keeps CA keys in a PKCS#11 token. The metadata records
// the HSM config (copied into the CA dir), the key label and its CKA_ID;
// the PIN comes from the environment variable the config's pin_env names,
// or a prompt, each time a key is opened.
type pkcs11Backend struct{}

// openHSMSigners counts the HSM signers open in the process. Each one is
// typically a worker goroutine holding its own session, so the token's
// session pool is sized to at least that many.
var openHSMSigners atomic.Int64

func sessionOption() hsm.Option {
	return hsm.WithMaxSessions(max(hsm.DefaultMaxSessions, int(openHSMSigners.Load())))
}

// hsmSigner is a token signer that also releases the token when closed.
type hsmSigner struct {
	algo.SignerCloser
	release func() error

	// Set by Create: the token and key, and whether Create generated the
	// key (so that a failed init or rotation can destroy it again).
	tok       *hsm.Token
	key       *hsm.Key
	generated bool
}

// SignBatch passes batches on to the token's signer (algo.BatchSigner).
func (s *hsmSigner) SignBatch(reqs []algo.SignRequest) { algo.SignBatch(s.SignerCloser, reqs) }

func (s *hsmSigner) Close() error {
	err := s.SignerCloser.Close()
	if s.release != nil {
		err = errors.Join(err, s.release())
		s.release = nil
	}
	return err
}

// discard destroys a key that Create generated, after the version it was
// made for failed, so that the token keeps no orphan keys.
func (s *hsmSigner) discard() error {
	if !s.generated || s.tok == nil {
		return nil
	}
	s.generated = false
	return s.tok.DestroyKey(s.key)
}

// discardKeys destroys the HSM keys a failed newVersion generated.
func discardKeys(cs closers) {
	for _, c := range cs {
		if s, ok := c.(*hsmSigner); ok {
			s.discard()
		}
	}
}

func (pkcs11Backend) Create(stageDir, caDir, version, keyID string, a algo.Algorithm, spec KeySpec) (Storage, algo.SignerCloser, error) {
	if spec.Label == "" {
		return Storage{}, nil, errors.New("an HSM key needs a label (--key-label)")
	}
	cfg, err := hsm.LoadConfig(spec.HSMConfig)
	if err != nil {
		return Storage{}, nil, err
	}
	access := cfg
	if spec.HSMAccess != "" {
		if access, err = hsm.LoadConfig(spec.HSMAccess); err != nil {
			return Storage{}, nil, err
		}
	}
	openHSMSigners.Add(1)
	tok, err := hsm.Open(access, sessionOption())
	if err != nil {
		openHSMSigners.Add(-1)
		return Storage{}, nil, err
	}
	release := func() error { openHSMSigners.Add(-1); return tok.Close() }

	// A hybrid version's second key shares the label and gets its own id.
	id := spec.ID
	if keyID == "pqc" {
		id = nil
	}
	var key *hsm.Key
	generated := false
	if spec.UseExisting {
		if keyID != "default" && len(id) == 0 {
			// A hybrid's two keys share the label: tell them apart by
			// their algorithm.
			id = existingIDFor(tok, spec.Label, a)
		}
		key, err = tok.FindKey(spec.Label, id)
	} else {
		key, err = tok.GenerateKey(a, spec.Label, id)
		generated = err == nil
	}
	if err != nil {
		release()
		return Storage{}, nil, err
	}
	s := &hsmSigner{release: release, tok: tok, key: key, generated: generated}
	ts, err := tok.Signer(key, a)
	if err != nil {
		s.discard()
		release()
		return Storage{}, nil, err
	}
	s.SignerCloser = ts
	rel, err := placeHSMConfig(stageDir, caDir, version, cfg)
	if err != nil {
		s.discard()
		s.Close()
		return Storage{}, nil, err
	}
	return Storage{Type: "pkcs11", Config: rel, Label: key.Label, KeyID: key.IDHex()}, s, nil
}

// existingIDFor returns the id of the one key labelled label whose
// algorithm is a, or nil (FindKey then says what matched).
func existingIDFor(tok *hsm.Token, label string, a algo.Algorithm) []byte {
	keys, err := tok.ListKeys()
	if err != nil {
		return nil
	}
	var id []byte
	n := 0
	for _, k := range keys {
		if k.Label == label && k.Algorithm == string(a) {
			id, _ = hsm.ParseKeyID(k.KeyID)
			n++
		}
	}
	if n != 1 {
		return nil
	}
	return id
}

// placeHSMConfig returns the config path that the metadata records,
// relative to the CA dir, copying the config into the staging dir when
// the CA dir does not hold it yet: at init as ./hsm.yaml; at rotation (the
// CA dir exists) a config from elsewhere goes with the new version.
func placeHSMConfig(stageDir, caDir, version string, cfg *hsm.Config) (string, error) {
	dst, rel := filepath.Join(stageDir, HSMConfigFile), "./"+HSMConfigFile
	if _, err := os.Stat(filepath.Join(caDir, MetaFile)); err == nil {
		if r, ok := within(caDir, cfg.Path()); ok {
			return "./" + filepath.ToSlash(r), nil
		}
		dst = filepath.Join(stageDir, "versions", version, HSMConfigFile)
		rel = "./versions/" + version + "/" + HSMConfigFile
	}
	data := cfg.Bytes()
	if old, err := os.ReadFile(dst); err == nil {
		if bytes.Equal(old, data) {
			return rel, nil // the other key of a hybrid version
		}
		return "", fmt.Errorf("%s already holds another HSM config", dst)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := atomicfile.Write(dst, data, 0o644); err != nil {
		return "", err
	}
	return rel, nil
}

// within returns path relative to dir when path lies inside dir.
func within(dir, path string) (string, bool) {
	if path == "" {
		return "", false
	}
	r, err := filepath.Rel(dir, path)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(r) {
		return "", false
	}
	return r, true
}

func (pkcs11Backend) Open(caDir string, s Storage, a algo.Algorithm, opts KeyOptions) (algo.SignerCloser, error) {
	cfg := opts.HSMConfig
	if cfg == "" {
		cfg = hsmConfigPath(caDir, s.Config)
		if cfg == "" {
			return nil, errors.New("the key's storage names no HSM config; give --hsm-config")
		}
	}
	openHSMSigners.Add(1)
	ref := hsm.KeyRef{Config: s.Config, Label: s.Label, KeyID: s.KeyID}
	ts, err := hsm.OpenSigner(cfg, ref, a, sessionOption())
	if err != nil {
		openHSMSigners.Add(-1)
		return nil, err
	}
	return &hsmSigner{SignerCloser: ts, release: func() error { openHSMSigners.Add(-1); return nil }}, nil
}

// hsmConfigPath resolves a recorded HSM config path against the CA dir.
func hsmConfigPath(caDir, recorded string) string {
	if recorded == "" || filepath.IsAbs(recorded) {
		return recorded
	}
	return filepath.Join(caDir, filepath.FromSlash(recorded))
}

// stagedKeyOptions returns the options that open the keys of a version
// still in a staging dir: its key files are there, but an HSM config it
// shares with the CA stays in the CA dir.
func stagedKeyOptions(stage, caDir string, v *Version, keys KeyOptions) KeyOptions {
	if keys.HSMConfig != "" {
		return keys
	}
	for _, k := range v.Keys {
		if k.Storage.Type != "pkcs11" || filepath.IsAbs(k.Storage.Config) {
			continue
		}
		if _, err := os.Stat(hsmConfigPath(stage, k.Storage.Config)); err != nil {
			keys.HSMConfig = hsmConfigPath(caDir, k.Storage.Config)
		}
		break
	}
	return keys
}

// inheritHSM keeps a rotated HSM CA's new key in the same HSM: the same
// config and label as the newest version's HSM key, under a new key id
// (derived from the new public key unless spec.ID is given). access, when
// set, is the --hsm-config that reaches the token from this machine; the
// metadata keeps recording the CA's own config. A CA whose keys are files
// keeps file keys.
func inheritHSM(spec *KeySpec, m *Meta, dir, access string) {
	order := m.VersionNames() // oldest first
	if _, ok := m.Versions[m.Active]; ok {
		order = append(order, m.Active) // the active version before all
	}
	for i := len(order) - 1; i >= 0; i-- {
		for _, k := range m.Versions[order[i]].Keys {
			if k.Storage.Type != "pkcs11" {
				continue
			}
			if spec.HSMConfig == "" {
				spec.HSMConfig = hsmConfigPath(dir, k.Storage.Config)
				if spec.HSMAccess == "" {
					spec.HSMAccess = access
				}
			}
			if spec.Label == "" {
				spec.Label = k.Storage.Label
			}
			return
		}
	}
}
