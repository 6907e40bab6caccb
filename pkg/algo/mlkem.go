package algo

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"encoding/asn1"
	"fmt"
	"io"

	"github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/kem/mlkem/mlkem1024"
	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
	"golang.org/x/crypto/cryptobyte"
)

// ML-KEM (FIPS 203) parameter sets; certificate and key encodings per
// RFC 9935. They cannot sign.
const (
	MLKEM512  Algorithm = "ml-kem-512"
	MLKEM768  Algorithm = "ml-kem-768"
	MLKEM1024 Algorithm = "ml-kem-1024"
)

// MLKEMSeedSize is the size of the ML-KEM key generation seed (d || z).
const MLKEMSeedSize = 64

type mlkemParams struct {
	name   Algorithm
	oid    asn1.ObjectIdentifier
	scheme kem.Scheme
}

var mlkemSets = []*mlkemParams{
	{MLKEM512, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 1}, mlkem512.Scheme()},
	{MLKEM768, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 2}, mlkem768.Scheme()},
	{MLKEM1024, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 3}, mlkem1024.Scheme()},
}

func mlkemParamsOf(a Algorithm) (*mlkemParams, error) {
	for _, p := range mlkemSets {
		if p.name == a {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%q is not an ML-KEM parameter set", a)
}

// MLKEMPublicKey is an ML-KEM encapsulation key.
type MLKEMPublicKey struct {
	p   *mlkemParams
	pk  kem.PublicKey
	raw []byte
}

// ParseMLKEMPublicKey decodes the FIPS 203 encapsulation key, including
// its modulus check.
func ParseMLKEMPublicKey(a Algorithm, raw []byte) (*MLKEMPublicKey, error) {
	p, err := mlkemParamsOf(a)
	if err != nil {
		return nil, err
	}
	if n := p.scheme.PublicKeySize(); len(raw) != n {
		return nil, fmt.Errorf("%s public key is %d bytes, want %d", a, len(raw), n)
	}
	pk, err := p.scheme.UnmarshalBinaryPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s public key: %v", a, err)
	}
	return &MLKEMPublicKey{p: p, pk: pk, raw: bytes.Clone(raw)}, nil
}

// Algorithm returns the key's parameter set.
func (k *MLKEMPublicKey) Algorithm() Algorithm { return k.p.name }

// Bytes returns the FIPS 203 encoding of the key.
func (k *MLKEMPublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// Equal reports whether x is the same ML-KEM public key.
func (k *MLKEMPublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*MLKEMPublicKey)
	return ok && o.p == k.p && bytes.Equal(o.raw, k.raw)
}

// Encapsulate makes a fresh shared secret and the ciphertext that carries
// it to the private key's holder, with randomness from rand.
func (k *MLKEMPublicKey) Encapsulate(rand io.Reader) (ciphertext, sharedSecret []byte, err error) {
	seed := make([]byte, k.p.scheme.EncapsulationSeedSize())
	if _, err := io.ReadFull(randOrDefault(rand), seed); err != nil {
		return nil, nil, err
	}
	return k.p.scheme.EncapsulateDeterministically(k.pk, seed)
}

// MLKEMPrivateKey is an ML-KEM decapsulation key.
type MLKEMPrivateKey struct {
	p    *mlkemParams
	sk   kem.PrivateKey
	seed []byte // nil when only the expanded key is known
	pub  *MLKEMPublicKey
}

func newMLKEMPrivateKey(p *mlkemParams, sk kem.PrivateKey, seed []byte) *MLKEMPrivateKey {
	pk := sk.Public()
	raw, _ := pk.MarshalBinary()
	return &MLKEMPrivateKey{p: p, sk: sk, seed: bytes.Clone(seed), pub: &MLKEMPublicKey{p: p, pk: pk, raw: raw}}
}

// NewMLKEMKeyFromSeed derives a private key from its 64-byte seed d || z.
func NewMLKEMKeyFromSeed(a Algorithm, seed []byte) (*MLKEMPrivateKey, error) {
	p, err := mlkemParamsOf(a)
	if err != nil {
		return nil, err
	}
	if len(seed) != MLKEMSeedSize {
		return nil, fmt.Errorf("%s seed is %d bytes, want %d", a, len(seed), MLKEMSeedSize)
	}
	_, sk := p.scheme.DeriveKeyPair(seed)
	return newMLKEMPrivateKey(p, sk, seed), nil
}

// NewMLKEMKeyFromExpanded decodes the FIPS 203 decapsulation key, with the
// FIPS 203 hash check.
func NewMLKEMKeyFromExpanded(a Algorithm, expanded []byte) (*MLKEMPrivateKey, error) {
	p, err := mlkemParamsOf(a)
	if err != nil {
		return nil, err
	}
	if n := p.scheme.PrivateKeySize(); len(expanded) != n {
		return nil, fmt.Errorf("%s expanded private key is %d bytes, want %d", a, len(expanded), n)
	}
	sk, err := p.scheme.UnmarshalBinaryPrivateKey(expanded)
	if err != nil {
		return nil, fmt.Errorf("%s expanded private key: %v", a, err)
	}
	return newMLKEMPrivateKey(p, sk, nil), nil
}

// GenerateMLKEMKey makes a new key from a fresh seed read from rand.
func GenerateMLKEMKey(a Algorithm, rand io.Reader) (*MLKEMPrivateKey, error) {
	seed := make([]byte, MLKEMSeedSize)
	if _, err := io.ReadFull(randOrDefault(rand), seed); err != nil {
		return nil, err
	}
	return NewMLKEMKeyFromSeed(a, seed)
}

// Algorithm returns the key's parameter set.
func (k *MLKEMPrivateKey) Algorithm() Algorithm { return k.p.name }

// Public returns the *MLKEMPublicKey.
func (k *MLKEMPrivateKey) Public() crypto.PublicKey { return k.pub }

// Seed returns d || z, or nil for a key loaded from its expanded form.
func (k *MLKEMPrivateKey) Seed() []byte { return bytes.Clone(k.seed) }

// Expanded returns the FIPS 203 decapsulation key.
func (k *MLKEMPrivateKey) Expanded() []byte {
	b, _ := k.sk.MarshalBinary()
	return b
}

// Equal reports whether x is the same private key.
func (k *MLKEMPrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(*MLKEMPrivateKey)
	return ok && o.p == k.p && k.sk.Equal(o.sk)
}

// Decapsulate recovers the shared secret from a ciphertext. A wrong but
// well-formed ciphertext yields an unrelated secret (implicit rejection),
// never an error.
func (k *MLKEMPrivateKey) Decapsulate(ciphertext []byte) ([]byte, error) {
	if n := k.p.scheme.CiphertextSize(); len(ciphertext) != n {
		return nil, fmt.Errorf("%s ciphertext is %d bytes, want %d", k.p.name, len(ciphertext), n)
	}
	return k.p.scheme.Decapsulate(k.sk, ciphertext)
}

func marshalMLKEMPrivateKey(k *MLKEMPrivateKey) ([]byte, error) {
	var b cryptobyte.Builder
	if k.seed != nil {
		b.AddASN1(tagSeed, func(b *cryptobyte.Builder) { b.AddBytes(k.seed) })
	} else {
		b.AddASN1OctetString(k.Expanded())
	}
	inner, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return marshalPKCS8(k.p.oid, inner)
}

func init() {
	for _, p := range mlkemSets {
		p := p
		var info *Info
		info = &Info{
			Name: p.name, Family: FamilyMLKEM, CanSign: false, OID: p.oid,
			Generate: func(r io.Reader) (crypto.PrivateKey, error) { return GenerateMLKEMKey(p.name, r) },
			Matches: func(pub crypto.PublicKey) bool {
				k, ok := pub.(*MLKEMPublicKey)
				return ok && k.p == p
			},
			MarshalPKCS8: func(priv crypto.PrivateKey) ([]byte, error) {
				k, ok := priv.(*MLKEMPrivateKey)
				if !ok || k.p != p {
					return nil, fmt.Errorf("%T is not an %s private key", priv, p.name)
				}
				return marshalMLKEMPrivateKey(k)
			},
			// RFC 9935: seed [0] / expandedKey / both, like ML-DSA.
			ParsePKCS8: func(der []byte) (crypto.PrivateKey, error) {
				inner, pub, err := parsePKCS8(der, info)
				if err != nil {
					return nil, err
				}
				k, err := parseSeedOrExpanded(inner, p.name, MLKEMSeedSize,
					func(seed []byte) (*MLKEMPrivateKey, error) { return NewMLKEMKeyFromSeed(p.name, seed) },
					func(exp []byte) (*MLKEMPrivateKey, error) { return NewMLKEMKeyFromExpanded(p.name, exp) },
					func(k *MLKEMPrivateKey) []byte { return k.Expanded() })
				if err != nil {
					return nil, err
				}
				if pub != nil && subtle.ConstantTimeCompare(pub, k.pub.raw) != 1 {
					return nil, fmt.Errorf("%s private key: publicKey field does not match the private key", p.name)
				}
				return k, nil
			},
			MarshalPKIX: func(pub crypto.PublicKey) ([]byte, error) {
				k, ok := pub.(*MLKEMPublicKey)
				if !ok || k.p != p {
					return nil, fmt.Errorf("%T is not an %s public key", pub, p.name)
				}
				return marshalSPKI(p.oid, k.raw)
			},
			ParsePKIX: func(der []byte) (crypto.PublicKey, error) {
				raw, err := parseSPKI(der, info)
				if err != nil {
					return nil, err
				}
				return ParseMLKEMPublicKey(p.name, raw)
			},
		}
		Register(info)
	}
}
