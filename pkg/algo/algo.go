// Package algo names the key and signature algorithms qpki knows, generates
// their keys and converts them to and from their standard encodings.
//
// Classical algorithms are registered here; post-quantum and composite
// algorithms register themselves from their own files through Register, so
// that adding one is a table entry rather than a change to every caller.
package algo

import (
	"crypto"
	"encoding/asn1"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// Algorithm is a key algorithm name as users type it: "ecdsa-p256",
// "rsa-3072", "ed25519", "ml-dsa-65", ...
type Algorithm string

// Family groups algorithms that share a signature scheme.
type Family string

const (
	FamilyECDSA     Family = "ecdsa"
	FamilyRSA       Family = "rsa"
	FamilyEd25519   Family = "ed25519"
	FamilyMLDSA     Family = "ml-dsa"
	FamilySLHDSA    Family = "slh-dsa"
	FamilyMLKEM     Family = "ml-kem"
	FamilyComposite Family = "composite"
	// HashML-DSA and HashSLH-DSA: verified, never made (ErrPreHashSigning).
	FamilyHashMLDSA  Family = "hash-ml-dsa"
	FamilyHashSLHDSA Family = "hash-slh-dsa"
)

// Classical algorithm names.
const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	ECDSAP384 Algorithm = "ecdsa-p384"
	ECDSAP521 Algorithm = "ecdsa-p521"
	RSA2048   Algorithm = "rsa-2048"
	RSA3072   Algorithm = "rsa-3072"
	RSA4096   Algorithm = "rsa-4096"
	Ed25519   Algorithm = "ed25519"
)

// Info describes one algorithm. Codec functions are nil for the classical
// algorithms, whose encodings crypto/x509 handles.
type Info struct {
	Name   Algorithm
	Family Family
	// Classical is true for algorithms that pre-date post-quantum cryptography.
	Classical bool
	// CanSign is false for key-encapsulation algorithms.
	CanSign bool
	// SignRefused, when set, says why qpki verifies this signature
	// algorithm but never signs with it (the pre-hash forms, brainpool);
	// Generate and NewSigner refuse it with this reason.
	SignRefused error
	// Bits is the RSA modulus size or the curve's field size, for display.
	Bits int
	// OID is the SubjectPublicKeyInfo algorithm identifier for algorithms
	// that crypto/x509 does not know.
	OID asn1.ObjectIdentifier

	// Generate makes a new private key.
	Generate func(rand io.Reader) (crypto.PrivateKey, error)
	// Matches reports whether a public key belongs to this algorithm.
	Matches func(pub crypto.PublicKey) bool

	// The following are set for algorithms crypto/x509 cannot encode.
	MarshalPKCS8 func(priv crypto.PrivateKey) ([]byte, error)
	ParsePKCS8   func(der []byte) (crypto.PrivateKey, error)
	MarshalPKIX  func(pub crypto.PublicKey) ([]byte, error)
	ParsePKIX    func(der []byte) (crypto.PublicKey, error)
}

var (
	mu       sync.RWMutex
	registry = map[Algorithm]*Info{}
)

// Register adds an algorithm. It panics on a duplicate name: registration
// happens in init functions, where a clash is a programming error.
func Register(info *Info) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[info.Name]; dup {
		panic("algo: duplicate algorithm " + string(info.Name))
	}
	registry[info.Name] = info
}

// Lookup returns the description of a registered algorithm.
func Lookup(a Algorithm) (*Info, bool) {
	mu.RLock()
	defer mu.RUnlock()
	info, ok := registry[a]
	return info, ok
}

// Parse turns a user-supplied name into an Algorithm, case-insensitively.
func Parse(name string) (Algorithm, error) {
	a := Algorithm(strings.ToLower(strings.TrimSpace(name)))
	if _, ok := Lookup(a); !ok {
		return "", fmt.Errorf("unknown algorithm %q (known: %s)", name, strings.Join(names(All()), ", "))
	}
	return a, nil
}

// All returns every registered algorithm, sorted by name.
func All() []Algorithm {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Algorithm, 0, len(registry))
	for a := range registry {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func names(as []Algorithm) []string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return s
}

// Info returns the algorithm's description; it panics for an unregistered
// algorithm, which Parse would have refused.
func (a Algorithm) Info() *Info {
	info, ok := Lookup(a)
	if !ok {
		panic("algo: unregistered algorithm " + string(a))
	}
	return info
}

// Valid reports whether a is registered.
func (a Algorithm) Valid() bool { _, ok := Lookup(a); return ok }

// Family returns the algorithm's family.
func (a Algorithm) Family() Family { return a.Info().Family }

// CanSign reports whether keys of this algorithm make signatures.
func (a Algorithm) CanSign() bool { return a.Info().CanSign }

// VerifyOnly reports whether qpki only verifies signatures of algorithm a.
func (a Algorithm) VerifyOnly() bool { return a.Info().SignRefused != nil }

// IsClassical reports whether a is a pre-quantum algorithm.
func (a Algorithm) IsClassical() bool { return a.Info().Classical }

func (a Algorithm) String() string { return string(a) }

// GenerateKey makes a new private key of this algorithm.
func GenerateKey(a Algorithm, rand io.Reader) (crypto.PrivateKey, error) {
	info, ok := Lookup(a)
	if !ok {
		return nil, fmt.Errorf("unknown algorithm %q", a)
	}
	return info.Generate(rand)
}

// Of returns the algorithm a public key belongs to.
func Of(pub crypto.PublicKey) (Algorithm, error) {
	mu.RLock()
	defer mu.RUnlock()
	for _, info := range registry {
		if info.Matches != nil && info.Matches(pub) {
			return info.Name, nil
		}
	}
	return "", fmt.Errorf("unsupported public key type %T", pub)
}

// PublicKey returns the public half of a private key.
func PublicKey(priv crypto.PrivateKey) (crypto.PublicKey, error) {
	if k, ok := priv.(interface{ Public() crypto.PublicKey }); ok {
		return k.Public(), nil
	}
	return nil, fmt.Errorf("private key type %T has no public key", priv)
}
