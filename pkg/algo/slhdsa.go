package algo

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/slhdsa"
)

// SLH-DSA (FIPS 205) parameter sets; X.509 identifiers per RFC 9909.
const (
	SLHDSASHA2128s  Algorithm = "slh-dsa-sha2-128s"
	SLHDSASHA2128f  Algorithm = "slh-dsa-sha2-128f"
	SLHDSASHA2192s  Algorithm = "slh-dsa-sha2-192s"
	SLHDSASHA2192f  Algorithm = "slh-dsa-sha2-192f"
	SLHDSASHA2256s  Algorithm = "slh-dsa-sha2-256s"
	SLHDSASHA2256f  Algorithm = "slh-dsa-sha2-256f"
	SLHDSASHAKE128s Algorithm = "slh-dsa-shake-128s"
	SLHDSASHAKE128f Algorithm = "slh-dsa-shake-128f"
	SLHDSASHAKE192s Algorithm = "slh-dsa-shake-192s"
	SLHDSASHAKE192f Algorithm = "slh-dsa-shake-192f"
	SLHDSASHAKE256s Algorithm = "slh-dsa-shake-256s"
	SLHDSASHAKE256f Algorithm = "slh-dsa-shake-256f"
)

type slhdsaParams struct {
	name Algorithm
	oid  asn1.ObjectIdentifier
	id   slhdsa.ID
}

func slhOID(n int) asn1.ObjectIdentifier {
	return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, n}
}

var slhdsaSets = []*slhdsaParams{
	{SLHDSASHA2128s, slhOID(20), slhdsa.SHA2_128s},
	{SLHDSASHA2128f, slhOID(21), slhdsa.SHA2_128f},
	{SLHDSASHA2192s, slhOID(22), slhdsa.SHA2_192s},
	{SLHDSASHA2192f, slhOID(23), slhdsa.SHA2_192f},
	{SLHDSASHA2256s, slhOID(24), slhdsa.SHA2_256s},
	{SLHDSASHA2256f, slhOID(25), slhdsa.SHA2_256f},
	{SLHDSASHAKE128s, slhOID(26), slhdsa.SHAKE_128s},
	{SLHDSASHAKE128f, slhOID(27), slhdsa.SHAKE_128f},
	{SLHDSASHAKE192s, slhOID(28), slhdsa.SHAKE_192s},
	{SLHDSASHAKE192f, slhOID(29), slhdsa.SHAKE_192f},
	{SLHDSASHAKE256s, slhOID(30), slhdsa.SHAKE_256s},
	{SLHDSASHAKE256f, slhOID(31), slhdsa.SHAKE_256f},
}

func slhdsaParamsOf(a Algorithm) (*slhdsaParams, error) {
	for _, p := range slhdsaSets {
		if p.name == a {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%q is not an SLH-DSA parameter set", a)
}

// SLHDSAPublicKey is an SLH-DSA public key (PK.seed || PK.root).
type SLHDSAPublicKey struct {
	p   *slhdsaParams
	pk  slhdsa.PublicKey
	raw []byte
}

// ParseSLHDSAPublicKey decodes the FIPS 205 encoding of a public key.
func ParseSLHDSAPublicKey(a Algorithm, raw []byte) (*SLHDSAPublicKey, error) {
	p, err := slhdsaParamsOf(a)
	if err != nil {
		return nil, err
	}
	if n := p.id.Scheme().PublicKeySize(); len(raw) != n {
		return nil, fmt.Errorf("%s public key is %d bytes, want %d", a, len(raw), n)
	}
	pk := slhdsa.PublicKey{ID: p.id}
	if err := pk.UnmarshalBinary(raw); err != nil {
		return nil, fmt.Errorf("%s public key: %v", a, err)
	}
	return &SLHDSAPublicKey{p: p, pk: pk, raw: bytes.Clone(raw)}, nil
}

// Algorithm returns the key's parameter set.
func (k *SLHDSAPublicKey) Algorithm() Algorithm { return k.p.name }

// Bytes returns the FIPS 205 encoding of the key.
func (k *SLHDSAPublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// Equal reports whether x is the same SLH-DSA public key.
func (k *SLHDSAPublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*SLHDSAPublicKey)
	return ok && o.p == k.p && bytes.Equal(o.raw, k.raw)
}

// Verify checks a pure SLH-DSA signature with an empty context (RFC 9909).
func (k *SLHDSAPublicKey) Verify(msg, sig []byte) error {
	return k.VerifyWithContext(msg, nil, sig)
}

// VerifyWithContext checks a pure SLH-DSA signature made under ctx.
func (k *SLHDSAPublicKey) VerifyWithContext(msg, ctx, sig []byte) error {
	if n := k.p.id.Scheme().SignatureSize(); len(sig) != n {
		return fmt.Errorf("%s signature is %d bytes, want %d", k.p.name, len(sig), n)
	}
	if len(ctx) > 255 {
		return fmt.Errorf("%s: context of %d bytes exceeds 255", k.p.name, len(ctx))
	}
	if !slhdsa.Verify(&k.pk, slhdsa.NewMessage(msg), sig, ctx) {
		return fmt.Errorf("%s: %w", k.p.name, ErrVerify)
	}
	return nil
}

// SLHDSAPrivateKey is an SLH-DSA private key. Sign(rand, message,
// crypto.Hash(0)) makes a randomised pure signature of the whole message
// with additional randomness from rand.
type SLHDSAPrivateKey struct {
	p   *slhdsaParams
	sk  slhdsa.PrivateKey
	pub *SLHDSAPublicKey
}

func newSLHDSAPrivateKey(p *slhdsaParams, sk slhdsa.PrivateKey) *SLHDSAPrivateKey {
	pk := sk.PublicKey()
	raw, _ := pk.MarshalBinary()
	return &SLHDSAPrivateKey{p: p, sk: sk, pub: &SLHDSAPublicKey{p: p, pk: pk, raw: raw}}
}

// NewSLHDSAPrivateKey decodes SK.seed || SK.prf || PK.seed || PK.root.
func NewSLHDSAPrivateKey(a Algorithm, raw []byte) (*SLHDSAPrivateKey, error) {
	p, err := slhdsaParamsOf(a)
	if err != nil {
		return nil, err
	}
	if n := p.id.Scheme().PrivateKeySize(); len(raw) != n {
		return nil, fmt.Errorf("%s private key is %d bytes, want %d", a, len(raw), n)
	}
	sk := slhdsa.PrivateKey{ID: p.id}
	if err := sk.UnmarshalBinary(raw); err != nil {
		return nil, fmt.Errorf("%s private key: %v", a, err)
	}
	return newSLHDSAPrivateKey(p, sk), nil
}

// GenerateSLHDSAKey makes a new key with randomness from rand.
func GenerateSLHDSAKey(a Algorithm, rand io.Reader) (*SLHDSAPrivateKey, error) {
	p, err := slhdsaParamsOf(a)
	if err != nil {
		return nil, err
	}
	_, sk, err := slhdsa.GenerateKey(randOrDefault(rand), p.id)
	if err != nil {
		return nil, err
	}
	return newSLHDSAPrivateKey(p, sk), nil
}

// Algorithm returns the key's parameter set.
func (k *SLHDSAPrivateKey) Algorithm() Algorithm { return k.p.name }

// Public returns the *SLHDSAPublicKey.
func (k *SLHDSAPrivateKey) Public() crypto.PublicKey { return k.pub }

// Bytes returns the FIPS 205 encoding of the private key.
func (k *SLHDSAPrivateKey) Bytes() []byte {
	b, _ := k.sk.MarshalBinary()
	return b
}

// Equal reports whether x is the same private key.
func (k *SLHDSAPrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(*SLHDSAPrivateKey)
	return ok && o.p == k.p && k.sk.Equal(o.sk)
}

// Sign signs the whole message. opts must be nil, crypto.Hash(0) or a
// *ContextOpts.
func (k *SLHDSAPrivateKey) Sign(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	ctx, err := contextOf(k.p.name, opts)
	if err != nil {
		return nil, err
	}
	sig, err := slhdsa.SignRandomized(&k.sk, randOrDefault(rand), slhdsa.NewMessage(msg), ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", k.p.name, err)
	}
	return sig, nil
}

func init() {
	for _, p := range slhdsaSets {
		p := p
		var info *Info
		info = &Info{
			Name: p.name, Family: FamilySLHDSA, CanSign: true, OID: p.oid,
			Generate: func(r io.Reader) (crypto.PrivateKey, error) { return GenerateSLHDSAKey(p.name, r) },
			Matches: func(pub crypto.PublicKey) bool {
				k, ok := pub.(*SLHDSAPublicKey)
				return ok && k.p == p
			},
			// RFC 9909: the privateKey OCTET STRING holds the raw key.
			MarshalPKCS8: func(priv crypto.PrivateKey) ([]byte, error) {
				k, ok := priv.(*SLHDSAPrivateKey)
				if !ok || k.p != p {
					return nil, fmt.Errorf("%T is not an %s private key", priv, p.name)
				}
				return marshalPKCS8(p.oid, k.Bytes())
			},
			ParsePKCS8: func(der []byte) (crypto.PrivateKey, error) {
				raw, pub, err := parsePKCS8(der, info)
				if err != nil {
					return nil, err
				}
				k, err := NewSLHDSAPrivateKey(p.name, raw)
				if err != nil {
					return nil, err
				}
				if pub != nil && !bytes.Equal(pub, k.pub.raw) {
					return nil, fmt.Errorf("%s private key: publicKey field does not match the private key", p.name)
				}
				return k, nil
			},
			MarshalPKIX: func(pub crypto.PublicKey) ([]byte, error) {
				k, ok := pub.(*SLHDSAPublicKey)
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
				return ParseSLHDSAPublicKey(p.name, raw)
			},
		}
		Register(info)
	}
}
