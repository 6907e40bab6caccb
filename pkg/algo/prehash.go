package algo

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/slhdsa"
	"github.com/cloudflare/circl/xof"
)

// HashML-DSA (FIPS 204 §5.4) and HashSLH-DSA (FIPS 205 §10.2) with the
// identifiers of RFC 9881 and RFC 9909. qpki verifies them (certificates,
// CRLs, CMS made elsewhere) but never signs with them: the CMS
// specifications (RFC 9882, RFC 9814) define only the pure forms, and COSE
// has no pre-hash identifiers, so a pre-hash key could not sign anything
// beyond X.509. A profile naming one is refused (ErrPreHashSigning).

// ErrPreHashSigning explains why qpki makes no pre-hash signature.
var ErrPreHashSigning = errors.New("qpki verifies HashML-DSA and HashSLH-DSA signatures but signs only with pure ML-DSA and SLH-DSA: CMS (RFC 9882, RFC 9814) defines only the pure forms and COSE has no pre-hash identifiers")

// Pre-hash algorithm names: the parameter set and its pre-hash function.
const (
	HashMLDSA44SHA512 Algorithm = "hash-ml-dsa-44-with-sha512"
	HashMLDSA65SHA512 Algorithm = "hash-ml-dsa-65-with-sha512"
	HashMLDSA87SHA512 Algorithm = "hash-ml-dsa-87-with-sha512"

	HashSLHDSASHA2128sSHA256    Algorithm = "hash-slh-dsa-sha2-128s-with-sha256"
	HashSLHDSASHA2128fSHA256    Algorithm = "hash-slh-dsa-sha2-128f-with-sha256"
	HashSLHDSASHA2192sSHA512    Algorithm = "hash-slh-dsa-sha2-192s-with-sha512"
	HashSLHDSASHA2192fSHA512    Algorithm = "hash-slh-dsa-sha2-192f-with-sha512"
	HashSLHDSASHA2256sSHA512    Algorithm = "hash-slh-dsa-sha2-256s-with-sha512"
	HashSLHDSASHA2256fSHA512    Algorithm = "hash-slh-dsa-sha2-256f-with-sha512"
	HashSLHDSASHAKE128sSHAKE128 Algorithm = "hash-slh-dsa-shake-128s-with-shake128"
	HashSLHDSASHAKE128fSHAKE128 Algorithm = "hash-slh-dsa-shake-128f-with-shake128"
	HashSLHDSASHAKE192sSHAKE256 Algorithm = "hash-slh-dsa-shake-192s-with-shake256"
	HashSLHDSASHAKE192fSHAKE256 Algorithm = "hash-slh-dsa-shake-192f-with-shake256"
	HashSLHDSASHAKE256sSHAKE256 Algorithm = "hash-slh-dsa-shake-256s-with-shake256"
	HashSLHDSASHAKE256fSHAKE256 Algorithm = "hash-slh-dsa-shake-256f-with-shake256"
)

// preHash names the pre-hash function PH.
type preHash int

const (
	phSHA256 preHash = iota + 1
	phSHA512
	phSHAKE128 // 256-bit output
	phSHAKE256 // 512-bit output
)

// oidDER returns the DER of PH's OID, which M' carries (FIPS 204 Alg. 4,
// FIPS 205 Alg. 23).
func (h preHash) oidDER() []byte {
	last := map[preHash]byte{phSHA256: 1, phSHA512: 3, phSHAKE128: 11, phSHAKE256: 12}[h]
	return []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, last}
}

func (h preHash) sum(msg []byte) []byte {
	switch h {
	case phSHA256:
		d := sha256.Sum256(msg)
		return d[:]
	case phSHA512:
		d := sha512.Sum512(msg)
		return d[:]
	case phSHAKE128:
		return sha3.SumSHAKE128(msg, 32)
	case phSHAKE256:
		return sha3.SumSHAKE256(msg, 64)
	}
	panic("algo: unknown pre-hash")
}

type prehashParams struct {
	name Algorithm
	oid  asn1.ObjectIdentifier
	// pure is the ML-DSA or SLH-DSA parameter set underneath.
	pure Algorithm
	ph   preHash
}

var prehashSets = []*prehashParams{
	{HashMLDSA44SHA512, slhOID(32), MLDSA44, phSHA512},
	{HashMLDSA65SHA512, slhOID(33), MLDSA65, phSHA512},
	{HashMLDSA87SHA512, slhOID(34), MLDSA87, phSHA512},
	{HashSLHDSASHA2128sSHA256, slhOID(35), SLHDSASHA2128s, phSHA256},
	{HashSLHDSASHA2128fSHA256, slhOID(36), SLHDSASHA2128f, phSHA256},
	{HashSLHDSASHA2192sSHA512, slhOID(37), SLHDSASHA2192s, phSHA512},
	{HashSLHDSASHA2192fSHA512, slhOID(38), SLHDSASHA2192f, phSHA512},
	{HashSLHDSASHA2256sSHA512, slhOID(39), SLHDSASHA2256s, phSHA512},
	{HashSLHDSASHA2256fSHA512, slhOID(40), SLHDSASHA2256f, phSHA512},
	{HashSLHDSASHAKE128sSHAKE128, slhOID(41), SLHDSASHAKE128s, phSHAKE128},
	{HashSLHDSASHAKE128fSHAKE128, slhOID(42), SLHDSASHAKE128f, phSHAKE128},
	{HashSLHDSASHAKE192sSHAKE256, slhOID(43), SLHDSASHAKE192s, phSHAKE256},
	{HashSLHDSASHAKE192fSHAKE256, slhOID(44), SLHDSASHAKE192f, phSHAKE256},
	{HashSLHDSASHAKE256sSHAKE256, slhOID(45), SLHDSASHAKE256s, phSHAKE256},
	{HashSLHDSASHAKE256fSHAKE256, slhOID(46), SLHDSASHAKE256f, phSHAKE256},
}

func prehashParamsOf(a Algorithm) (*prehashParams, error) {
	for _, p := range prehashSets {
		if p.name == a {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%q is not a HashML-DSA or HashSLH-DSA algorithm", a)
}

// PreHashOf returns the pure algorithm under a pre-hash one.
func PreHashOf(a Algorithm) (pure Algorithm, ok bool) {
	p, err := prehashParamsOf(a)
	if err != nil {
		return "", false
	}
	return p.pure, true
}

// PreHashPublicKey is a HashML-DSA or HashSLH-DSA public key: an ML-DSA or
// SLH-DSA key whose certificate names the pre-hash algorithm.
type PreHashPublicKey struct {
	p    *prehashParams
	pure crypto.PublicKey // *MLDSAPublicKey or *SLHDSAPublicKey
	raw  []byte
}

// ParsePreHashPublicKey decodes the FIPS 204 / FIPS 205 public key of a
// pre-hash algorithm.
func ParsePreHashPublicKey(a Algorithm, raw []byte) (*PreHashPublicKey, error) {
	p, err := prehashParamsOf(a)
	if err != nil {
		return nil, err
	}
	var pure crypto.PublicKey
	if _, isML := mldsaParamsOf(p.pure); isML == nil {
		pure, err = ParseMLDSAPublicKey(p.pure, raw)
	} else {
		pure, err = ParseSLHDSAPublicKey(p.pure, raw)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", a, err)
	}
	return &PreHashPublicKey{p: p, pure: pure, raw: bytes.Clone(raw)}, nil
}

// Algorithm returns the pre-hash algorithm.
func (k *PreHashPublicKey) Algorithm() Algorithm { return k.p.name }

// Pure returns the same key as a pure ML-DSA or SLH-DSA key.
func (k *PreHashPublicKey) Pure() crypto.PublicKey { return k.pure }

// Bytes returns the FIPS 204 / FIPS 205 encoding of the key.
func (k *PreHashPublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// Equal reports whether x is the same pre-hash public key.
func (k *PreHashPublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*PreHashPublicKey)
	return ok && o.p == k.p && bytes.Equal(o.raw, k.raw)
}

// Verify checks a pre-hash signature of msg with an empty context, the
// form X.509 uses.
func (k *PreHashPublicKey) Verify(msg, sig []byte) error {
	return k.VerifyWithContext(msg, nil, sig)
}

// VerifyWithContext checks a pre-hash signature of msg made under ctx.
func (k *PreHashPublicKey) VerifyWithContext(msg, ctx, sig []byte) error {
	return VerifyPreHash(k.p.name, k.pure, msg, ctx, sig)
}

// VerifyPreHash checks a signature of algorithm a (a pre-hash algorithm)
// over msg with pub, the pure or pre-hash key of a's parameter set:
// FIPS 204 and 205 allow one key to make both kinds of signature.
func VerifyPreHash(a Algorithm, pub crypto.PublicKey, msg, ctx, sig []byte) error {
	p, err := prehashParamsOf(a)
	if err != nil {
		return err
	}
	if ph, ok := pub.(*PreHashPublicKey); ok {
		if ph.p.pure != p.pure {
			return fmt.Errorf("%s signature: key is %s", a, ph.p.name)
		}
		pub = ph.pure
	}
	if len(ctx) > 255 {
		return fmt.Errorf("%s: context of %d bytes exceeds 255", a, len(ctx))
	}
	switch k := pub.(type) {
	case *MLDSAPublicKey:
		if k.p.name != p.pure {
			return fmt.Errorf("%s signature: key is %s", a, k.p.name)
		}
		if n := k.p.scheme.SignatureSize(); len(sig) != n {
			return fmt.Errorf("%s signature is %d bytes, want %d", a, len(sig), n)
		}
		// M' = 1 || |ctx| || ctx || OID(PH) || PH(M)  (FIPS 204 Algorithm 5)
		m := append([]byte{1, byte(len(ctx))}, ctx...)
		m = append(m, p.ph.oidDER()...)
		m = append(m, p.ph.sum(msg)...)
		if !verifyInternal(k.pk, m, sig) {
			return fmt.Errorf("%s: %w", a, ErrVerify)
		}
		return nil
	case *SLHDSAPublicKey:
		if k.p.name != p.pure {
			return fmt.Errorf("%s signature: key is %s", a, k.p.name)
		}
		if n := k.p.id.Scheme().SignatureSize(); len(sig) != n {
			return fmt.Errorf("%s signature is %d bytes, want %d", a, len(sig), n)
		}
		m, err := slhPreHashMessage(p.ph, msg)
		if err != nil {
			return fmt.Errorf("%s: %v", a, err)
		}
		if !slhdsa.Verify(&k.pk, m, sig, ctx) {
			return fmt.Errorf("%s: %w", a, ErrVerify)
		}
		return nil
	}
	return fmt.Errorf("%s signature cannot be made by a %T key", a, pub)
}

// slhPreHashMessage builds circl's pre-hash message (OID(PH) || PH(M),
// marked pre-hash so that M' starts with 1; FIPS 205 Algorithm 25).
func slhPreHashMessage(h preHash, msg []byte) (*slhdsa.Message, error) {
	var ph *slhdsa.PreHash
	var err error
	switch h {
	case phSHA256:
		ph, err = slhdsa.NewPreHashWithHash(crypto.SHA256)
	case phSHA512:
		ph, err = slhdsa.NewPreHashWithHash(crypto.SHA512)
	case phSHAKE128:
		ph, err = slhdsa.NewPreHashWithXof(xof.SHAKE128)
	case phSHAKE256:
		ph, err = slhdsa.NewPreHashWithXof(xof.SHAKE256)
	}
	if err != nil {
		return nil, err
	}
	if _, err := ph.Write(msg); err != nil {
		return nil, err
	}
	return ph.BuildMessage()
}

func init() {
	for _, p := range prehashSets {
		p := p
		// Families by table, not Info: init order follows file names.
		fam := FamilyHashSLHDSA
		if _, err := mldsaParamsOf(p.pure); err == nil {
			fam = FamilyHashMLDSA
		}
		var info *Info
		info = &Info{
			Name: p.name, Family: fam, CanSign: true, SignRefused: ErrPreHashSigning, OID: p.oid,
			Generate: func(io.Reader) (crypto.PrivateKey, error) {
				return nil, fmt.Errorf("%s: %w", p.name, ErrPreHashSigning)
			},
			Matches: func(pub crypto.PublicKey) bool {
				k, ok := pub.(*PreHashPublicKey)
				return ok && k.p == p
			},
			MarshalPKCS8: func(crypto.PrivateKey) ([]byte, error) {
				return nil, fmt.Errorf("%s: %w", p.name, ErrPreHashSigning)
			},
			ParsePKCS8: func([]byte) (crypto.PrivateKey, error) {
				return nil, fmt.Errorf("%s private key: %w", p.name, ErrPreHashSigning)
			},
			MarshalPKIX: func(pub crypto.PublicKey) ([]byte, error) {
				k, ok := pub.(*PreHashPublicKey)
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
				return ParsePreHashPublicKey(p.name, raw)
			},
		}
		Register(info)
	}
}
