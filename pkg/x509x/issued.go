package x509x

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"sync"

	"github.com/qpki/qpki/pkg/algo"
)

// CheckIssued is CheckSignatureFrom for a certificate that parent's key
// is said to have just signed: a CA checking what its own workers return.
// A classical ECDSA signature is checked with algo.VerifyIssuerECDSA, whose
// tables of the CA key the signer built already when it checked its own
// signature, so that the check costs a fraction of crypto/ecdsa's, and
// not at all when this process made and checked that very certificate
// (selfChecked); any other signature, and both of a Catalyst
// certificate, as CheckSignatureFrom checks them.
func CheckIssued(child, parent *x509.Certificate) error {
	if pub, ok := parent.PublicKey.(*ecdsa.PublicKey); ok && !IsCatalyst(child) {
		if h := ecdsaHash(child.SignatureAlgorithm); h != 0 {
			if err := checkCAConstraints(parent, x509.KeyUsageCertSign); err != nil {
				return err
			}
			if selfChecked.take(child.Raw, pub) {
				return nil // verified when this process signed it
			}
			d := h.New()
			d.Write(child.RawTBSCertificate)
			if !algo.VerifyIssuerECDSA(pub, d.Sum(nil), child.Signature) {
				return errors.New("x509x: ECDSA signature does not verify under the issuer's key")
			}
			return nil
		}
	}
	return CheckSignatureFrom(child, parent)
}

// ecdsaHash is the digest of an ECDSA signature algorithm crypto/x509
// parsed (it checks that the outer and inner algorithms agree), or 0.
func ecdsaHash(a x509.SignatureAlgorithm) crypto.Hash {
	switch a {
	case x509.ECDSAWithSHA256:
		return crypto.SHA256
	case x509.ECDSAWithSHA384:
		return crypto.SHA384
	case x509.ECDSAWithSHA512:
		return crypto.SHA512
	}
	return 0
}

// selfChecked remembers the certificates whose signature this process
// verified right after making it (createVerified), so that CheckIssued,
// run by the recorder in the same process, need not verify it a second
// time. It is memory of this process only: nothing from outside (a
// result read from the queue) can add to it, and a certificate found in
// it is byte for byte the one verified, under the key it was verified
// with. It is bounded: the oldest entries give way, and a certificate
// not found is simply verified.
var selfChecked = newCheckedSet(1 << 14)

type checkedSet struct {
	mu   sync.Mutex
	keys map[[32]byte]*ecdsa.PublicKey
	ring [][32]byte // insertion order, for eviction
	next int
}

func newCheckedSet(n int) *checkedSet {
	return &checkedSet{keys: make(map[[32]byte]*ecdsa.PublicKey, n), ring: make([][32]byte, n)}
}

func (c *checkedSet) add(der []byte, pub *ecdsa.PublicKey) {
	h := sha256.Sum256(der)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.ring[c.next]; c.keys[old] != nil {
		delete(c.keys, old)
	}
	c.ring[c.next] = h
	c.next = (c.next + 1) % len(c.ring)
	c.keys[h] = pub
}

// take reports whether der was verified under pub by this process, and
// forgets it.
func (c *checkedSet) take(der []byte, pub *ecdsa.PublicKey) bool {
	h := sha256.Sum256(der)
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keys[h]
	if k == nil || !k.Equal(pub) {
		return false
	}
	delete(c.keys, h)
	return true
}
