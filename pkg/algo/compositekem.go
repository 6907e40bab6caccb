package algo

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x448"
)

// Composite ML-KEM as specified by draft-ietf-lamps-pq-composite-kem in
// the form Bouncy Castle implements and its r5 hackathon artifacts use
// (the twelve SHA3-256 combinations with IANA's early OIDs
// 1.3.6.1.5.5.7.6.55-66 and per-combination labels, as in the draft's -14
// and later versions), checked against its MLKEM768-X25519 (.58) and
// MLKEM1024-ECDH-P384 (.63) vectors:
//
//   - public key = mlkemPK || tradPK, ciphertext = mlkemCT || tradCT,
//     private key = mlkemSeed (64 bytes) || tradSK, all raw, parameters
//     absent;
//   - tradPK: RSAPublicKey, uncompressed X9.62 point, or the raw X25519 /
//     X448 key; tradSK: RSAPrivateKey, ECPrivateKey (RFC 5915, with the
//     curve and without the public key), or the raw X25519 / X448 key;
//   - the traditional KEM is RSA-OAEP (SHA-256, MGF1-SHA-256, no label) of
//     a random 32-byte secret, or ephemeral-static (EC)DH whose ciphertext
//     is the ephemeral public key and whose secret is the x-coordinate /
//     the X25519 / X448 output;
//   - ss = SHA3-256(mlkemSS || tradSS || tradCT || tradPK || Label).
//
// The ECDH halves use crypto/ecdh and circl's X448 (constant time). The
// brainpool combinations (.61, .64) parse, encode and encapsulate (with
// math/big, on an ephemeral key), but never decapsulate: that would put
// the long-term private key through variable-time arithmetic
// (ErrNoConstantTime).

// KEMPublicKey is a key others encapsulate secrets to.
type KEMPublicKey interface {
	crypto.PublicKey
	Encapsulate(rand io.Reader) (ciphertext, sharedSecret []byte, err error)
}

// KEMPrivateKey recovers the shared secret from a ciphertext.
type KEMPrivateKey interface {
	Public() crypto.PublicKey
	Decapsulate(ciphertext []byte) ([]byte, error)
}

// MaxCiphertext bounds a KEM ciphertext read from a file or the network
// (the largest, composite ML-KEM-1024 with RSA-3072, is under 2 KiB).
const MaxCiphertext = 16 << 10

// Decapsulate recovers a shared secret with an ML-KEM or composite ML-KEM
// private key.
func Decapsulate(priv crypto.PrivateKey, ciphertext []byte) ([]byte, error) {
	k, ok := priv.(KEMPrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key cannot decapsulate: ML-KEM or composite ML-KEM key required", priv)
	}
	if len(ciphertext) > MaxCiphertext {
		return nil, fmt.Errorf("ciphertext of %d bytes exceeds the %d-byte limit", len(ciphertext), MaxCiphertext)
	}
	return k.Decapsulate(ciphertext)
}

// FamilyCompositeKEM is composite ML-KEM.
const FamilyCompositeKEM Family = "composite-kem"

// Composite ML-KEM algorithm names.
const (
	CompositeMLKEM768RSA2048  Algorithm = "composite-mlkem768-rsa2048"
	CompositeMLKEM768RSA3072  Algorithm = "composite-mlkem768-rsa3072"
	CompositeMLKEM768RSA4096  Algorithm = "composite-mlkem768-rsa4096"
	CompositeMLKEM768X25519   Algorithm = "composite-mlkem768-x25519"
	CompositeMLKEM768P256     Algorithm = "composite-mlkem768-ecdh-p256"
	CompositeMLKEM768P384     Algorithm = "composite-mlkem768-ecdh-p384"
	CompositeMLKEM768BP256    Algorithm = "composite-mlkem768-ecdh-brainpoolp256r1"
	CompositeMLKEM1024RSA3072 Algorithm = "composite-mlkem1024-rsa3072"
	CompositeMLKEM1024P384    Algorithm = "composite-mlkem1024-ecdh-p384"
	CompositeMLKEM1024BP384   Algorithm = "composite-mlkem1024-ecdh-brainpoolp384r1"
	CompositeMLKEM1024X448    Algorithm = "composite-mlkem1024-x448"
	CompositeMLKEM1024P521    Algorithm = "composite-mlkem1024-ecdh-p521"
)

// tradKEM names the traditional half.
type tradKEM int

const (
	tradRSA tradKEM = iota + 1
	tradECDH
	tradX25519
	tradX448
	tradBrainpool
)

type ckemParams struct {
	name  Algorithm
	oid   asn1.ObjectIdentifier
	label []byte
	mlkem Algorithm
	kind  tradKEM
	// trad is the RSA size or curve, as a classical algorithm name.
	trad Algorithm
}

var compositeKEMSets = []*ckemParams{
	{CompositeMLKEM768RSA2048, compOID(55), []byte("MLKEM768-RSAOAEP2048"), MLKEM768, tradRSA, RSA2048},
	{CompositeMLKEM768RSA3072, compOID(56), []byte("MLKEM768-RSAOAEP3072"), MLKEM768, tradRSA, RSA3072},
	{CompositeMLKEM768RSA4096, compOID(57), []byte("MLKEM768-RSAOAEP4096"), MLKEM768, tradRSA, RSA4096},
	{CompositeMLKEM768X25519, compOID(58), []byte{0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c}, MLKEM768, tradX25519, ""}, // `\.//^\`
	{CompositeMLKEM768P256, compOID(59), []byte("MLKEM768-P256"), MLKEM768, tradECDH, ECDSAP256},
	{CompositeMLKEM768P384, compOID(60), []byte("MLKEM768-P384"), MLKEM768, tradECDH, ECDSAP384},
	{CompositeMLKEM768BP256, compOID(61), []byte("MLKEM768-BP256"), MLKEM768, tradBrainpool, ECDSABrainpoolP256},
	{CompositeMLKEM1024RSA3072, compOID(62), []byte("MLKEM1024-RSAOAEP3072"), MLKEM1024, tradRSA, RSA3072},
	{CompositeMLKEM1024P384, compOID(63), []byte("MLKEM1024-P384"), MLKEM1024, tradECDH, ECDSAP384},
	{CompositeMLKEM1024BP384, compOID(64), []byte("MLKEM1024-BP384"), MLKEM1024, tradBrainpool, ECDSABrainpoolP384},
	{CompositeMLKEM1024X448, compOID(65), []byte("MLKEM1024-X448"), MLKEM1024, tradX448, ""},
	{CompositeMLKEM1024P521, compOID(66), []byte("MLKEM1024-P521"), MLKEM1024, tradECDH, ECDSAP521},
}

func compositeKEMParamsOf(a Algorithm) (*ckemParams, error) {
	for _, p := range compositeKEMSets {
		if p.name == a {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%q is not a composite ML-KEM algorithm", a)
}

// CompositeKEMComponents returns the ML-KEM parameter set of a composite
// ML-KEM algorithm.
func CompositeKEMComponents(a Algorithm) (mlkem Algorithm, err error) {
	p, err := compositeKEMParamsOf(a)
	if err != nil {
		return "", err
	}
	return p.mlkem, nil
}

func (p *ckemParams) mlkemParams() *mlkemParams {
	mp, _ := mlkemParamsOf(p.mlkem)
	return mp
}

func (p *ckemParams) ecdhCurve() ecdh.Curve {
	switch p.trad {
	case ECDSAP256:
		return ecdh.P256()
	case ECDSAP384:
		return ecdh.P384()
	case ECDSAP521:
		return ecdh.P521()
	}
	return nil
}

// combine is the draft's KEM combiner.
func (p *ckemParams) combine(mlkemSS, tradSS, tradCT, tradPK []byte) []byte {
	h := sha3.New256()
	h.Write(mlkemSS)
	h.Write(tradSS)
	h.Write(tradCT)
	h.Write(tradPK)
	h.Write(p.label)
	return h.Sum(nil)
}

// tradCTSize is the length of the traditional ciphertext.
func (p *ckemParams) tradCTSize(pub crypto.PublicKey) int {
	switch p.kind {
	case tradRSA:
		return pub.(*rsa.PublicKey).Size()
	case tradECDH:
		return len(pub.(*ecdh.PublicKey).Bytes())
	case tradX25519:
		return 32
	case tradX448:
		return x448.Size
	case tradBrainpool:
		return 1 + 2*brainpoolCurve(p.trad).byteLen
	}
	return 0
}

// CompositeKEMPublicKey is a composite ML-KEM public key.
type CompositeKEMPublicKey struct {
	p       *ckemParams
	mlkem   *MLKEMPublicKey
	trad    crypto.PublicKey // *rsa.PublicKey, *ecdh.PublicKey, x448Public, *BrainpoolPublicKey
	tradRaw []byte
	raw     []byte
}

type x448Public [x448.Size]byte

// ParseCompositeKEMPublicKey decodes mlkemPK || tradPK.
func ParseCompositeKEMPublicKey(a Algorithm, raw []byte) (*CompositeKEMPublicKey, error) {
	p, err := compositeKEMParamsOf(a)
	if err != nil {
		return nil, err
	}
	n := p.mlkemParams().scheme.PublicKeySize()
	if len(raw) <= n {
		return nil, fmt.Errorf("%s public key is %d bytes, too short for its %s component (%d bytes) and a traditional key", a, len(raw), p.mlkem, n)
	}
	mk, err := ParseMLKEMPublicKey(p.mlkem, raw[:n])
	if err != nil {
		return nil, fmt.Errorf("%s: ML-KEM component: %v", a, err)
	}
	tradRaw := raw[n:]
	var trad crypto.PublicKey
	switch p.kind {
	case tradRSA:
		k, err := x509.ParsePKCS1PublicKey(tradRaw)
		if err == nil {
			err = CheckKey(k, p.trad)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: RSA component: %v", a, err)
		}
		trad = k
	case tradECDH, tradX25519:
		curve := p.ecdhCurve()
		if p.kind == tradX25519 {
			curve = ecdh.X25519()
		}
		k, err := curve.NewPublicKey(tradRaw)
		if err != nil {
			return nil, fmt.Errorf("%s: ECDH component: %v", a, err)
		}
		trad = k
	case tradX448:
		if len(tradRaw) != x448.Size {
			return nil, fmt.Errorf("%s: X448 component is %d bytes, want %d", a, len(tradRaw), x448.Size)
		}
		var k x448Public
		copy(k[:], tradRaw)
		trad = k
	case tradBrainpool:
		k, err := parseBrainpoolPublic(brainpoolCurve(p.trad), tradRaw)
		if err != nil {
			return nil, fmt.Errorf("%s: ECDH component: %v", a, err)
		}
		trad = k
	}
	return &CompositeKEMPublicKey{p: p, mlkem: mk, trad: trad, tradRaw: bytes.Clone(tradRaw), raw: bytes.Clone(raw)}, nil
}

// Algorithm returns the composite algorithm.
func (k *CompositeKEMPublicKey) Algorithm() Algorithm { return k.p.name }

// Bytes returns mlkemPK || tradPK.
func (k *CompositeKEMPublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// Equal reports whether x is the same key.
func (k *CompositeKEMPublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*CompositeKEMPublicKey)
	return ok && o.p == k.p && bytes.Equal(o.raw, k.raw)
}

// Encapsulate makes a fresh shared secret and its ciphertext.
func (k *CompositeKEMPublicKey) Encapsulate(rand io.Reader) (ciphertext, sharedSecret []byte, err error) {
	rand = randOrDefault(rand)
	mlkemCT, mlkemSS, err := k.mlkem.Encapsulate(rand)
	if err != nil {
		return nil, nil, err
	}
	var tradCT, tradSS []byte
	switch t := k.trad.(type) {
	case *rsa.PublicKey:
		tradSS = make([]byte, 32)
		if _, err := io.ReadFull(rand, tradSS); err != nil {
			return nil, nil, err
		}
		if tradCT, err = rsa.EncryptOAEP(sha256.New(), rand, t, tradSS, nil); err != nil {
			return nil, nil, fmt.Errorf("%s: RSA-OAEP: %v", k.p.name, err)
		}
	case *ecdh.PublicKey:
		eph, err := t.Curve().GenerateKey(rand)
		if err != nil {
			return nil, nil, err
		}
		if tradSS, err = eph.ECDH(t); err != nil {
			return nil, nil, fmt.Errorf("%s: ECDH: %v", k.p.name, err)
		}
		tradCT = eph.PublicKey().Bytes()
	case x448Public:
		var sk, pk, ss x448.Key
		if _, err := io.ReadFull(rand, sk[:]); err != nil {
			return nil, nil, err
		}
		x448.KeyGen(&pk, &sk)
		peer := x448.Key(t)
		if !x448.Shared(&ss, &sk, &peer) {
			return nil, nil, fmt.Errorf("%s: X448: low-order public key", k.p.name)
		}
		tradCT, tradSS = pk[:], ss[:]
	case *BrainpoolPublicKey:
		// Variable-time arithmetic on a one-use ephemeral scalar.
		d, eph, err := t.c.generateEphemeral(rand)
		if err != nil {
			return nil, nil, err
		}
		if tradSS, err = t.c.ecdh(d, t); err != nil {
			return nil, nil, fmt.Errorf("%s: %v", k.p.name, err)
		}
		tradCT = eph.Bytes()
	default:
		return nil, nil, fmt.Errorf("%s: unsupported traditional key %T", k.p.name, k.trad)
	}
	ss := k.p.combine(mlkemSS, tradSS, tradCT, k.tradRaw)
	return append(mlkemCT, tradCT...), ss, nil
}

// CompositeKEMPrivateKey is a software composite ML-KEM private key.
type CompositeKEMPrivateKey struct {
	p     *ckemParams
	mlkem *MLKEMPrivateKey
	trad  any // *rsa.PrivateKey, *ecdh.PrivateKey, x448.Key
	pub   *CompositeKEMPublicKey
}

// GenerateCompositeKEMKey makes both component keys.
func GenerateCompositeKEMKey(a Algorithm, rand io.Reader) (*CompositeKEMPrivateKey, error) {
	p, err := compositeKEMParamsOf(a)
	if err != nil {
		return nil, err
	}
	if p.kind == tradBrainpool {
		return nil, fmt.Errorf("%s: %w", a, ErrNoConstantTime)
	}
	rand = randOrDefault(rand)
	mk, err := GenerateMLKEMKey(p.mlkem, rand)
	if err != nil {
		return nil, err
	}
	var trad any
	switch p.kind {
	case tradRSA:
		k, err := GenerateKey(p.trad, rand)
		if err != nil {
			return nil, err
		}
		trad = k
	case tradECDH:
		if trad, err = p.ecdhCurve().GenerateKey(rand); err != nil {
			return nil, err
		}
	case tradX25519:
		if trad, err = ecdh.X25519().GenerateKey(rand); err != nil {
			return nil, err
		}
	case tradX448:
		var sk x448.Key
		if _, err := io.ReadFull(rand, sk[:]); err != nil {
			return nil, err
		}
		trad = sk
	}
	return newCompositeKEMPrivateKey(p, mk, trad)
}

func newCompositeKEMPrivateKey(p *ckemParams, mk *MLKEMPrivateKey, trad any) (*CompositeKEMPrivateKey, error) {
	var tradRaw []byte
	switch t := trad.(type) {
	case *rsa.PrivateKey:
		tradRaw = x509.MarshalPKCS1PublicKey(&t.PublicKey)
	case *ecdh.PrivateKey:
		tradRaw = t.PublicKey().Bytes()
	case x448.Key:
		var pk x448.Key
		x448.KeyGen(&pk, &t)
		tradRaw = pk[:]
	default:
		return nil, fmt.Errorf("%s: unsupported traditional key %T", p.name, trad)
	}
	pub, err := ParseCompositeKEMPublicKey(p.name, append(mk.pub.Bytes(), tradRaw...))
	if err != nil {
		return nil, err
	}
	return &CompositeKEMPrivateKey{p: p, mlkem: mk, trad: trad, pub: pub}, nil
}

// Algorithm returns the composite algorithm.
func (k *CompositeKEMPrivateKey) Algorithm() Algorithm { return k.p.name }

// Public returns the *CompositeKEMPublicKey.
func (k *CompositeKEMPrivateKey) Public() crypto.PublicKey { return k.pub }

// Equal reports whether x is the same private key.
func (k *CompositeKEMPrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(*CompositeKEMPrivateKey)
	if !ok || o.p != k.p || !k.mlkem.Equal(o.mlkem) {
		return false
	}
	a, _ := marshalCompositeKEMTrad(k)
	b, _ := marshalCompositeKEMTrad(o)
	return subtle.ConstantTimeCompare(a, b) == 1
}

// Decapsulate recovers the shared secret. A wrong ML-KEM ciphertext gives
// an unrelated secret (implicit rejection); a malformed traditional one is
// an error.
func (k *CompositeKEMPrivateKey) Decapsulate(ciphertext []byte) ([]byte, error) {
	p := k.p
	n := p.mlkemParams().scheme.CiphertextSize()
	if want := n + p.tradCTSize(k.pub.trad); len(ciphertext) != want {
		return nil, fmt.Errorf("%s ciphertext is %d bytes, want %d", p.name, len(ciphertext), want)
	}
	mlkemSS, err := k.mlkem.Decapsulate(ciphertext[:n])
	if err != nil {
		return nil, err
	}
	tradCT := ciphertext[n:]
	var tradSS []byte
	switch t := k.trad.(type) {
	case *rsa.PrivateKey:
		tradSS, err = rsa.DecryptOAEP(sha256.New(), nil, t, tradCT, nil)
		if err == nil && len(tradSS) != 32 {
			err = errors.New("wrong secret length")
		}
		if err != nil {
			return nil, fmt.Errorf("%s: RSA-OAEP decryption failed", p.name)
		}
	case *ecdh.PrivateKey:
		eph, err := t.Curve().NewPublicKey(tradCT)
		if err != nil {
			return nil, fmt.Errorf("%s: ephemeral key: %v", p.name, err)
		}
		if tradSS, err = t.ECDH(eph); err != nil {
			return nil, fmt.Errorf("%s: ECDH: %v", p.name, err)
		}
	case x448.Key:
		var eph, ss x448.Key
		copy(eph[:], tradCT)
		if !x448.Shared(&ss, &t, &eph) {
			return nil, fmt.Errorf("%s: X448: low-order ephemeral key", p.name)
		}
		tradSS = ss[:]
	default:
		return nil, fmt.Errorf("%s: %w", p.name, ErrNoConstantTime)
	}
	return p.combine(mlkemSS, tradSS, tradCT, k.pub.tradRaw), nil
}

func marshalCompositeKEMTrad(k *CompositeKEMPrivateKey) ([]byte, error) {
	switch t := k.trad.(type) {
	case *rsa.PrivateKey:
		return x509.MarshalPKCS1PrivateKey(t), nil
	case *ecdh.PrivateKey:
		d := t.Bytes()
		if k.p.kind == tradX25519 {
			return d, nil
		}
		ek, err := ecdhToECDSA(k.p, d)
		if err != nil {
			return nil, err
		}
		return marshalTradPrivate(k.p.trad, ek)
	case x448.Key:
		return bytes.Clone(t[:]), nil
	}
	return nil, fmt.Errorf("%s: unsupported traditional key %T", k.p.name, k.trad)
}

func ecdhToECDSA(p *ckemParams, d []byte) (*ecdsa.PrivateKey, error) {
	curve, _ := curveOf(p.trad)
	return ecdsa.ParseRawPrivateKey(curve, d)
}

func marshalCompositeKEMPrivateKey(k *CompositeKEMPrivateKey) ([]byte, error) {
	seed := k.mlkem.Seed()
	if seed == nil {
		return nil, fmt.Errorf("%s: the ML-KEM component has no seed; composite keys are stored as seeds", k.p.name)
	}
	trad, err := marshalCompositeKEMTrad(k)
	if err != nil {
		return nil, err
	}
	return marshalPKCS8(k.p.oid, append(seed, trad...))
}

func parseCompositeKEMPrivateKey(der []byte, info *Info, p *ckemParams) (*CompositeKEMPrivateKey, error) {
	raw, pub, err := parsePKCS8(der, info)
	if err != nil {
		return nil, err
	}
	if len(raw) <= MLKEMSeedSize {
		return nil, fmt.Errorf("%s private key is %d bytes, too short", p.name, len(raw))
	}
	mk, err := NewMLKEMKeyFromSeed(p.mlkem, raw[:MLKEMSeedSize])
	if err != nil {
		return nil, fmt.Errorf("%s: ML-KEM component: %v", p.name, err)
	}
	tradRaw := raw[MLKEMSeedSize:]
	var trad any
	switch p.kind {
	case tradRSA:
		k, err := x509.ParsePKCS1PrivateKey(tradRaw)
		if err == nil {
			err = CheckKey(k.Public(), p.trad)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: RSA component: %v", p.name, err)
		}
		trad = k
	case tradECDH:
		k, err := x509.ParseECPrivateKey(tradRaw)
		if err == nil {
			err = CheckKey(k.Public(), p.trad)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: ECDH component: %v", p.name, err)
		}
		if trad, err = k.ECDH(); err != nil {
			return nil, fmt.Errorf("%s: ECDH component: %v", p.name, err)
		}
	case tradX25519:
		k, err := ecdh.X25519().NewPrivateKey(tradRaw)
		if err != nil {
			return nil, fmt.Errorf("%s: X25519 component: %v", p.name, err)
		}
		trad = k
	case tradX448:
		if len(tradRaw) != x448.Size {
			return nil, fmt.Errorf("%s: X448 component is %d bytes, want %d", p.name, len(tradRaw), x448.Size)
		}
		var k x448.Key
		copy(k[:], tradRaw)
		trad = k
	case tradBrainpool:
		return nil, fmt.Errorf("%s private key: %w", p.name, ErrNoConstantTime)
	}
	k, err := newCompositeKEMPrivateKey(p, mk, trad)
	if err != nil {
		return nil, err
	}
	if pub != nil && !bytes.Equal(pub, k.pub.raw) {
		return nil, fmt.Errorf("%s private key: publicKey field does not match the private key", p.name)
	}
	return k, nil
}

func init() {
	for _, p := range compositeKEMSets {
		p := p
		var info *Info
		info = &Info{
			Name: p.name, Family: FamilyCompositeKEM, CanSign: false, OID: p.oid,
			Generate: func(r io.Reader) (crypto.PrivateKey, error) { return GenerateCompositeKEMKey(p.name, r) },
			Matches: func(pub crypto.PublicKey) bool {
				k, ok := pub.(*CompositeKEMPublicKey)
				return ok && k.p == p
			},
			MarshalPKCS8: func(priv crypto.PrivateKey) ([]byte, error) {
				k, ok := priv.(*CompositeKEMPrivateKey)
				if !ok || k.p != p {
					return nil, fmt.Errorf("%T is not a %s private key", priv, p.name)
				}
				return marshalCompositeKEMPrivateKey(k)
			},
			ParsePKCS8: func(der []byte) (crypto.PrivateKey, error) { return parseCompositeKEMPrivateKey(der, info, p) },
			MarshalPKIX: func(pub crypto.PublicKey) ([]byte, error) {
				k, ok := pub.(*CompositeKEMPublicKey)
				if !ok || k.p != p {
					return nil, fmt.Errorf("%T is not a %s public key", pub, p.name)
				}
				return marshalSPKI(p.oid, k.raw)
			},
			ParsePKIX: func(der []byte) (crypto.PublicKey, error) {
				raw, err := parseSPKI(der, info)
				if err != nil {
					return nil, err
				}
				return ParseCompositeKEMPublicKey(p.name, raw)
			},
		}
		Register(info)
	}
}
