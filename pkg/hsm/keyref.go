package hsm

import (
	"errors"
	"fmt"

	"github.com/qpki/qpki/pkg/algo"
)

// KeyRef is how metadata (ca.meta.json, credential.meta.json) records a key
// held in a token: the configuration file, the key label and CKA_ID in hex.
type KeyRef struct {
	Config string `json:"config"`
	Label  string `json:"label"`
	KeyID  string `json:"key_id"`
}

// ID decodes KeyID.
func (r KeyRef) ID() ([]byte, error) { return ParseKeyID(r.KeyID) }

// OpenSigner opens the token that cfgPath configures (ref.Config when
// cfgPath is empty, e.g. when no --hsm-config overrides the metadata),
// finds the key ref names and returns a signer for alg. Closing the signer
// closes the token.
func OpenSigner(cfgPath string, ref KeyRef, alg algo.Algorithm, opts ...Option) (algo.SignerCloser, error) {
	if cfgPath == "" {
		cfgPath = ref.Config
	}
	if cfgPath == "" {
		return nil, errors.New("hsm: no HSM configuration: the key reference names none and no --hsm-config was given")
	}
	id, err := ref.ID()
	if err != nil {
		return nil, fmt.Errorf("hsm: key reference: %v", err)
	}
	tok, err := OpenFile(cfgPath, opts...)
	if err != nil {
		return nil, err
	}
	key, err := tok.FindKey(ref.Label, id)
	if err != nil {
		tok.Close()
		return nil, err
	}
	s, err := tok.signer(key, alg, tok.Close)
	if err != nil {
		tok.Close()
		return nil, err
	}
	return s, nil
}
