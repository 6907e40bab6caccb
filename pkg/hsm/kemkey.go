package hsm

import (
	"crypto"
	"fmt"

	"github.com/qpki/qpki/pkg/algo"
)

// KEMKey is an ML-KEM private key on the token as an algo.KEMPrivateKey,
// so that CMS KEMRecipientInfo and `qpki key decap` decapsulate in the
// token (C_DecapsulateKey).
type KEMKey struct {
	tok *Token
	key *Key
}

// KEMKey wraps an ML-KEM key of the token.
func (t *Token) KEMKey(k *Key) (*KEMKey, error) {
	if _, ok := k.Public().(*algo.MLKEMPublicKey); !ok {
		return nil, fmt.Errorf("hsm: key %q is not an ML-KEM key", k.Label)
	}
	return &KEMKey{tok: t, key: k}, nil
}

// Public returns the *algo.MLKEMPublicKey.
func (k *KEMKey) Public() crypto.PublicKey { return k.key.Public() }

// Decapsulate runs C_DecapsulateKey.
func (k *KEMKey) Decapsulate(ciphertext []byte) ([]byte, error) {
	return k.tok.Decapsulate(k.key, ciphertext)
}

var _ algo.KEMPrivateKey = (*KEMKey)(nil)
