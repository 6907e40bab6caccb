package algo

import (
	"bytes"
	"crypto"
	"crypto/sha3"
	"crypto/subtle"
	"encoding/asn1"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ML-DSA (FIPS 204) parameter sets. X.509 identifiers and key encodings
// follow RFC 9881.
const (
	MLDSA44 Algorithm = "ml-dsa-44"
	MLDSA65 Algorithm = "ml-dsa-65"
	MLDSA87 Algorithm = "ml-dsa-87"
)

// MLDSASeedSize is the size of the ML-DSA key generation seed (ξ).
const MLDSASeedSize = 32

type mldsaParams struct {
	name   Algorithm
	oid    asn1.ObjectIdentifier
	scheme sign.Scheme
	// signTo makes a hedged signature: circl's scheme.Sign is
	// deterministic, the per-package SignTo is not.
	signTo func(sk sign.PrivateKey, msg, ctx, sig []byte) error
}

var mldsaSets = []*mldsaParams{
	{MLDSA44, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17}, mldsa44.Scheme(),
		func(sk sign.PrivateKey, msg, ctx, sig []byte) error {
			return mldsa44.SignTo(sk.(*mldsa44.PrivateKey), msg, ctx, true, sig)
		}},
	{MLDSA65, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}, mldsa65.Scheme(),
		func(sk sign.PrivateKey, msg, ctx, sig []byte) error {
			return mldsa65.SignTo(sk.(*mldsa65.PrivateKey), msg, ctx, true, sig)
		}},
	{MLDSA87, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 19}, mldsa87.Scheme(),
		func(sk sign.PrivateKey, msg, ctx, sig []byte) error {
			return mldsa87.SignTo(sk.(*mldsa87.PrivateKey), msg, ctx, true, sig)
		}},
}

func mldsaParamsOf(a Algorithm) (*mldsaParams, error) {
	for _, p := range mldsaSets {
		if p.name == a {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%q is not an ML-DSA parameter set", a)
}

// MLDSAPublicKey is an ML-DSA public key.
type MLDSAPublicKey struct {
	p   *mldsaParams
	pk  sign.PublicKey
	raw []byte
}

// ParseMLDSAPublicKey decodes the FIPS 204 encoding of a public key.
func ParseMLDSAPublicKey(a Algorithm, raw []byte) (*MLDSAPublicKey, error) {
	p, err := mldsaParamsOf(a)
	if err != nil {
		return nil, err
	}
	if len(raw) != p.scheme.PublicKeySize() {
		return nil, fmt.Errorf("%s public key is %d bytes, want %d", a, len(raw), p.scheme.PublicKeySize())
	}
	pk, err := p.scheme.UnmarshalBinaryPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s public key: %v", a, err)
	}
	return &MLDSAPublicKey{p: p, pk: pk, raw: bytes.Clone(raw)}, nil
}

// Algorithm returns the key's parameter set.
func (k *MLDSAPublicKey) Algorithm() Algorithm { return k.p.name }

// Bytes returns the FIPS 204 encoding of the key.
func (k *MLDSAPublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// Equal reports whether x is the same ML-DSA public key.
func (k *MLDSAPublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*MLDSAPublicKey)
	return ok && o.p == k.p && bytes.Equal(o.raw, k.raw)
}

// Verify checks a pure ML-DSA signature with an empty context, the form
// X.509 uses (RFC 9881).
func (k *MLDSAPublicKey) Verify(msg, sig []byte) error {
	return k.VerifyWithContext(msg, nil, sig)
}

// VerifyWithContext checks a pure ML-DSA signature made under ctx.
func (k *MLDSAPublicKey) VerifyWithContext(msg, ctx, sig []byte) error {
	if n := k.p.scheme.SignatureSize(); len(sig) != n {
		return fmt.Errorf("%s signature is %d bytes, want %d", k.p.name, len(sig), n)
	}
	if len(ctx) > 255 {
		return fmt.Errorf("%s: context of %d bytes exceeds 255", k.p.name, len(ctx))
	}
	if !k.p.scheme.Verify(k.pk, msg, sig, &sign.SignatureOpts{Context: string(ctx)}) {
		return fmt.Errorf("%s: %w", k.p.name, ErrVerify)
	}
	return nil
}

// MLDSAPrivateKey is an ML-DSA private key. It implements crypto.Signer:
// Sign(rand, message, crypto.Hash(0)) signs the whole message, hedged
// (FIPS 204 randomised signing; the randomness comes from crypto/rand).
type MLDSAPrivateKey struct {
	p    *mldsaParams
	sk   sign.PrivateKey
	seed []byte // nil when only the expanded key is known
	pub  *MLDSAPublicKey
}

// NewMLDSAKeyFromSeed derives a private key from its 32-byte seed.
func NewMLDSAKeyFromSeed(a Algorithm, seed []byte) (*MLDSAPrivateKey, error) {
	p, err := mldsaParamsOf(a)
	if err != nil {
		return nil, err
	}
	if len(seed) != MLDSASeedSize {
		return nil, fmt.Errorf("%s seed is %d bytes, want %d", a, len(seed), MLDSASeedSize)
	}
	pk, sk := p.scheme.DeriveKey(seed)
	raw, _ := pk.MarshalBinary()
	return &MLDSAPrivateKey{p: p, sk: sk, seed: bytes.Clone(seed),
		pub: &MLDSAPublicKey{p: p, pk: pk, raw: raw}}, nil
}

// NewMLDSAKeyFromExpanded decodes the FIPS 204 expanded private key. It
// checks that the key's tr is H(pk), which catches most corrupt keys.
func NewMLDSAKeyFromExpanded(a Algorithm, expanded []byte) (*MLDSAPrivateKey, error) {
	p, err := mldsaParamsOf(a)
	if err != nil {
		return nil, err
	}
	if len(expanded) != p.scheme.PrivateKeySize() {
		return nil, fmt.Errorf("%s expanded private key is %d bytes, want %d", a, len(expanded), p.scheme.PrivateKeySize())
	}
	sk, err := p.scheme.UnmarshalBinaryPrivateKey(expanded)
	if err != nil {
		return nil, fmt.Errorf("%s expanded private key: %v", a, err)
	}
	pk := sk.Public().(sign.PublicKey)
	raw, _ := pk.MarshalBinary()
	// Expanded key layout: rho (32) || K (32) || tr (64) || ...
	tr := sha3.SumSHAKE256(raw, 64)
	if subtle.ConstantTimeCompare(tr, expanded[64:128]) != 1 {
		return nil, fmt.Errorf("%s expanded private key is inconsistent (tr does not match the public key)", a)
	}
	return &MLDSAPrivateKey{p: p, sk: sk, pub: &MLDSAPublicKey{p: p, pk: pk, raw: raw}}, nil
}

// GenerateMLDSAKey makes a new key from a fresh seed read from rand.
func GenerateMLDSAKey(a Algorithm, rand io.Reader) (*MLDSAPrivateKey, error) {
	seed := make([]byte, MLDSASeedSize)
	if _, err := io.ReadFull(randOrDefault(rand), seed); err != nil {
		return nil, err
	}
	return NewMLDSAKeyFromSeed(a, seed)
}

// Algorithm returns the key's parameter set.
func (k *MLDSAPrivateKey) Algorithm() Algorithm { return k.p.name }

// Public returns the *MLDSAPublicKey.
func (k *MLDSAPrivateKey) Public() crypto.PublicKey { return k.pub }

// Seed returns the key generation seed, or nil for a key loaded from its
// expanded form alone.
func (k *MLDSAPrivateKey) Seed() []byte { return bytes.Clone(k.seed) }

// Expanded returns the FIPS 204 expanded private key.
func (k *MLDSAPrivateKey) Expanded() []byte {
	b, _ := k.sk.MarshalBinary()
	return b
}

// Equal reports whether x is the same private key.
func (k *MLDSAPrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(*MLDSAPrivateKey)
	return ok && o.p == k.p && k.sk.Equal(o.sk)
}

// Sign signs the whole message. opts must be nil, crypto.Hash(0) or a
// *ContextOpts carrying a context string.
func (k *MLDSAPrivateKey) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	ctx, err := contextOf(k.p.name, opts)
	if err != nil {
		return nil, err
	}
	sig := make([]byte, k.p.scheme.SignatureSize())
	if err := k.p.signTo(k.sk, msg, ctx, sig); err != nil {
		return nil, fmt.Errorf("%s: %v", k.p.name, err)
	}
	return sig, nil
}

// The PKCS#8 privateKey contents (RFC 9881, section 6):
//
//	ML-DSA-PrivateKey ::= CHOICE {
//	  seed        [0] IMPLICIT OCTET STRING (SIZE (32)),
//	  expandedKey OCTET STRING,
//	  both        SEQUENCE { seed OCTET STRING, expandedKey OCTET STRING } }
var tagSeed = cbasn1.Tag(0).ContextSpecific()

// marshalMLDSAPrivateKey writes the seed form, or the expanded form for a
// key whose seed is unknown.
func marshalMLDSAPrivateKey(k *MLDSAPrivateKey) ([]byte, error) {
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

func parseMLDSAPrivateKey(der []byte, info *Info) (*MLDSAPrivateKey, error) {
	priv, pub, err := parsePKCS8(der, info)
	if err != nil {
		return nil, err
	}
	k, err := parseSeedOrExpanded(priv, info.Name, MLDSASeedSize,
		func(seed []byte) (*MLDSAPrivateKey, error) { return NewMLDSAKeyFromSeed(info.Name, seed) },
		func(exp []byte) (*MLDSAPrivateKey, error) { return NewMLDSAKeyFromExpanded(info.Name, exp) },
		func(k *MLDSAPrivateKey) []byte { return k.Expanded() })
	if err != nil {
		return nil, err
	}
	if pub != nil && !bytes.Equal(pub, k.pub.raw) {
		return nil, fmt.Errorf("%s private key: publicKey field does not match the private key", info.Name)
	}
	return k, nil
}

// parseSeedOrExpanded decodes the seed / expandedKey / both CHOICE shared
// by ML-DSA (RFC 9881) and ML-KEM (RFC 9935). For "both" it checks that
// the expanded key is the one the seed derives.
func parseSeedOrExpanded[K any](inner []byte, a Algorithm, seedSize int,
	fromSeed func([]byte) (K, error), fromExpanded func([]byte) (K, error), expandedOf func(K) []byte) (K, error) {
	var zero K
	s := cryptobyte.String(inner)
	var tag cbasn1.Tag
	var body cryptobyte.String
	if !s.ReadAnyASN1(&body, &tag) || !s.Empty() {
		return zero, fmt.Errorf("%s private key: malformed privateKey contents", a)
	}
	switch tag {
	case tagSeed:
		if len(body) != seedSize {
			return zero, fmt.Errorf("%s private key: seed is %d bytes, want %d", a, len(body), seedSize)
		}
		return fromSeed(body)
	case cbasn1.OCTET_STRING:
		return fromExpanded(body)
	case cbasn1.SEQUENCE:
		var seed, expanded []byte
		if !body.ReadASN1Bytes(&seed, cbasn1.OCTET_STRING) || !body.ReadASN1Bytes(&expanded, cbasn1.OCTET_STRING) || !body.Empty() {
			return zero, fmt.Errorf("%s private key: malformed seed-and-expandedKey SEQUENCE", a)
		}
		if len(seed) != seedSize {
			return zero, fmt.Errorf("%s private key: seed is %d bytes, want %d", a, len(seed), seedSize)
		}
		k, err := fromSeed(seed)
		if err != nil {
			return zero, err
		}
		if subtle.ConstantTimeCompare(expandedOf(k), expanded) != 1 {
			return zero, fmt.Errorf("%s private key: expandedKey does not match the seed", a)
		}
		return k, nil
	}
	return zero, fmt.Errorf("%s private key: unknown privateKey form (tag %#x)", a, uint8(tag))
}

func init() {
	for _, p := range mldsaSets {
		p := p
		var info *Info
		info = &Info{
			Name: p.name, Family: FamilyMLDSA, CanSign: true, OID: p.oid,
			Generate: func(r io.Reader) (crypto.PrivateKey, error) { return GenerateMLDSAKey(p.name, r) },
			Matches: func(pub crypto.PublicKey) bool {
				k, ok := pub.(*MLDSAPublicKey)
				return ok && k.p == p
			},
			MarshalPKCS8: func(priv crypto.PrivateKey) ([]byte, error) {
				k, ok := priv.(*MLDSAPrivateKey)
				if !ok || k.p != p {
					return nil, fmt.Errorf("%T is not an %s private key", priv, p.name)
				}
				return marshalMLDSAPrivateKey(k)
			},
			ParsePKCS8: func(der []byte) (crypto.PrivateKey, error) { return parseMLDSAPrivateKey(der, info) },
			MarshalPKIX: func(pub crypto.PublicKey) ([]byte, error) {
				k, ok := pub.(*MLDSAPublicKey)
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
				return ParseMLDSAPublicKey(p.name, raw)
			},
		}
		Register(info)
	}
}
