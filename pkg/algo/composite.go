package algo

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/ed448"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Composite ML-DSA as specified by draft-ietf-lamps-pq-composite-sigs-19
// (21 April 2026, in the RFC Editor queue), with the OIDs IANA allocated
// early (1.3.6.1.5.5.7.6.37-54). The wire format is checked against the
// Bouncy Castle composite certificates of the IETF hackathon (r5). What
// this file takes from the draft:
//
//   - M' = Prefix || Label || len(ctx) || ctx || PH(M), with Prefix the
//     ASCII string "CompositeAlgorithmSignatures2025";
//   - the ML-DSA half is pure ML-DSA over M' with ctx = Label, the
//     traditional half is the named traditional signature algorithm over M';
//   - public key = mldsaPK || tradPK, private key = mldsaSeed || tradSK,
//     signature = mldsaSig || tradSig, all raw, with AlgorithmIdentifier
//     parameters absent;
//   - tradPK: uncompressed X9.62 point (ECDSA), RSAPublicKey, raw 32 bytes
//     (Ed25519); tradSK: ECPrivateKey with namedCurve and without
//     publicKey, RSAPrivateKey, raw 32-byte seed (Ed25519).
//
// All 18 combinations are implemented. Signing needs a constant-time
// traditional half: the two brainpool combinations (.47, .50) verify only
// (ErrNoConstantTime); Ed448 (.51) signs through circl.

// CompositeDraft names the specification this file implements.
const CompositeDraft = "draft-ietf-lamps-pq-composite-sigs-19"

// compositePrefix is "CompositeAlgorithmSignatures2025".
var compositePrefix = []byte("CompositeAlgorithmSignatures2025")

// Composite algorithm names.
const (
	CompositeMLDSA44RSA2048PSS    Algorithm = "composite-mldsa44-rsa2048-pss"
	CompositeMLDSA44RSA2048PKCS15 Algorithm = "composite-mldsa44-rsa2048-pkcs15"
	CompositeMLDSA44Ed25519       Algorithm = "composite-mldsa44-ed25519"
	CompositeMLDSA44ECDSAP256     Algorithm = "composite-mldsa44-ecdsa-p256"
	CompositeMLDSA65RSA3072PSS    Algorithm = "composite-mldsa65-rsa3072-pss"
	CompositeMLDSA65RSA3072PKCS15 Algorithm = "composite-mldsa65-rsa3072-pkcs15"
	CompositeMLDSA65RSA4096PSS    Algorithm = "composite-mldsa65-rsa4096-pss"
	CompositeMLDSA65RSA4096PKCS15 Algorithm = "composite-mldsa65-rsa4096-pkcs15"
	CompositeMLDSA65ECDSAP256     Algorithm = "composite-mldsa65-ecdsa-p256"
	CompositeMLDSA65ECDSAP384     Algorithm = "composite-mldsa65-ecdsa-p384"
	CompositeMLDSA65Ed25519       Algorithm = "composite-mldsa65-ed25519"
	CompositeMLDSA87ECDSAP384     Algorithm = "composite-mldsa87-ecdsa-p384"
	CompositeMLDSA87RSA3072PSS    Algorithm = "composite-mldsa87-rsa3072-pss"
	CompositeMLDSA87RSA4096PSS    Algorithm = "composite-mldsa87-rsa4096-pss"
	CompositeMLDSA87ECDSAP521     Algorithm = "composite-mldsa87-ecdsa-p521"
	CompositeMLDSA65ECDSABP256    Algorithm = "composite-mldsa65-ecdsa-brainpoolp256r1"
	CompositeMLDSA87ECDSABP384    Algorithm = "composite-mldsa87-ecdsa-brainpoolp384r1"
	CompositeMLDSA87Ed448         Algorithm = "composite-mldsa87-ed448"
)

type compositeParams struct {
	name  Algorithm
	oid   asn1.ObjectIdentifier
	label string
	mldsa Algorithm
	trad  Algorithm
	// ph is the composite pre-hash PH.
	ph crypto.Hash
	// tradHash is the digest inside the traditional signature algorithm
	// (ecdsa-with-SHA256, sha384WithRSAEncryption, ...); 0 for Ed25519.
	tradHash crypto.Hash
	pss      bool
}

// phSHAKE256Composite marks SHAKE256 with 64 bytes of output as the
// composite pre-hash (crypto.Hash has no SHAKE values).
const phSHAKE256Composite crypto.Hash = 1000

func brainpoolCurve(a Algorithm) *bpCurve {
	if a == ECDSABrainpoolP384 {
		return bpP384
	}
	return bpP256
}

func compOID(n int) asn1.ObjectIdentifier { return asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 6, n} }

var compositeSets = []*compositeParams{
	{CompositeMLDSA44RSA2048PSS, compOID(37), "COMPSIG-MLDSA44-RSA2048-PSS-SHA256", MLDSA44, RSA2048, crypto.SHA256, crypto.SHA256, true},
	{CompositeMLDSA44RSA2048PKCS15, compOID(38), "COMPSIG-MLDSA44-RSA2048-PKCS15-SHA256", MLDSA44, RSA2048, crypto.SHA256, crypto.SHA256, false},
	{CompositeMLDSA44Ed25519, compOID(39), "COMPSIG-MLDSA44-Ed25519-SHA512", MLDSA44, Ed25519, crypto.SHA512, 0, false},
	{CompositeMLDSA44ECDSAP256, compOID(40), "COMPSIG-MLDSA44-ECDSA-P256-SHA256", MLDSA44, ECDSAP256, crypto.SHA256, crypto.SHA256, false},
	{CompositeMLDSA65RSA3072PSS, compOID(41), "COMPSIG-MLDSA65-RSA3072-PSS-SHA512", MLDSA65, RSA3072, crypto.SHA512, crypto.SHA256, true},
	{CompositeMLDSA65RSA3072PKCS15, compOID(42), "COMPSIG-MLDSA65-RSA3072-PKCS15-SHA512", MLDSA65, RSA3072, crypto.SHA512, crypto.SHA256, false},
	{CompositeMLDSA65RSA4096PSS, compOID(43), "COMPSIG-MLDSA65-RSA4096-PSS-SHA512", MLDSA65, RSA4096, crypto.SHA512, crypto.SHA384, true},
	{CompositeMLDSA65RSA4096PKCS15, compOID(44), "COMPSIG-MLDSA65-RSA4096-PKCS15-SHA512", MLDSA65, RSA4096, crypto.SHA512, crypto.SHA384, false},
	{CompositeMLDSA65ECDSAP256, compOID(45), "COMPSIG-MLDSA65-ECDSA-P256-SHA512", MLDSA65, ECDSAP256, crypto.SHA512, crypto.SHA256, false},
	{CompositeMLDSA65ECDSAP384, compOID(46), "COMPSIG-MLDSA65-ECDSA-P384-SHA512", MLDSA65, ECDSAP384, crypto.SHA512, crypto.SHA384, false},
	{CompositeMLDSA65ECDSABP256, compOID(47), "COMPSIG-MLDSA65-ECDSA-BP256-SHA512", MLDSA65, ECDSABrainpoolP256, crypto.SHA512, crypto.SHA256, false},
	{CompositeMLDSA65Ed25519, compOID(48), "COMPSIG-MLDSA65-Ed25519-SHA512", MLDSA65, Ed25519, crypto.SHA512, 0, false},
	{CompositeMLDSA87ECDSAP384, compOID(49), "COMPSIG-MLDSA87-ECDSA-P384-SHA512", MLDSA87, ECDSAP384, crypto.SHA512, crypto.SHA384, false},
	{CompositeMLDSA87ECDSABP384, compOID(50), "COMPSIG-MLDSA87-ECDSA-BP384-SHA512", MLDSA87, ECDSABrainpoolP384, crypto.SHA512, crypto.SHA384, false},
	{CompositeMLDSA87Ed448, compOID(51), "COMPSIG-MLDSA87-Ed448-SHAKE256", MLDSA87, Ed448, phSHAKE256Composite, 0, false},
	{CompositeMLDSA87RSA3072PSS, compOID(52), "COMPSIG-MLDSA87-RSA3072-PSS-SHA512", MLDSA87, RSA3072, crypto.SHA512, crypto.SHA256, true},
	{CompositeMLDSA87RSA4096PSS, compOID(53), "COMPSIG-MLDSA87-RSA4096-PSS-SHA512", MLDSA87, RSA4096, crypto.SHA512, crypto.SHA384, true},
	{CompositeMLDSA87ECDSAP521, compOID(54), "COMPSIG-MLDSA87-ECDSA-P521-SHA512", MLDSA87, ECDSAP521, crypto.SHA512, crypto.SHA512, false},
}

func compositeParamsOf(a Algorithm) (*compositeParams, error) {
	for _, p := range compositeSets {
		if p.name == a {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%q is not a composite ML-DSA algorithm", a)
}

// CompositeComponents returns the ML-DSA and traditional algorithms a
// composite algorithm combines.
func CompositeComponents(a Algorithm) (mldsa, trad Algorithm, err error) {
	p, err := compositeParamsOf(a)
	if err != nil {
		return "", "", err
	}
	return p.mldsa, p.trad, nil
}

// CompositeLabel returns the algorithm's signature label, which is also the
// context its ML-DSA half signs under.
func CompositeLabel(a Algorithm) ([]byte, error) {
	p, err := compositeParamsOf(a)
	if err != nil {
		return nil, err
	}
	return []byte(p.label), nil
}

// messageRepresentative computes M' = Prefix || Label || len(ctx) || ctx || PH(M).
func (p *compositeParams) messageRepresentative(msg, ctx []byte) ([]byte, error) {
	if len(ctx) > 255 {
		return nil, fmt.Errorf("%s: context of %d bytes exceeds 255", p.name, len(ctx))
	}
	var digest []byte
	switch p.ph {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		digest = d[:]
	case crypto.SHA512:
		d := sha512.Sum512(msg)
		digest = d[:]
	case phSHAKE256Composite:
		digest = sha3.SumSHAKE256(msg, 64)
	default:
		return nil, fmt.Errorf("%s: unsupported pre-hash %v", p.name, p.ph)
	}
	m := make([]byte, 0, len(compositePrefix)+len(p.label)+1+len(ctx)+len(digest))
	m = append(m, compositePrefix...)
	m = append(m, p.label...)
	m = append(m, byte(len(ctx)))
	m = append(m, ctx...)
	return append(m, digest...), nil
}

func (p *compositeParams) mldsaParams() *mldsaParams {
	mp, _ := mldsaParamsOf(p.mldsa)
	return mp
}

// tradInput returns what the traditional signer signs and its options.
func (p *compositeParams) tradInput(m []byte) ([]byte, crypto.SignerOpts) {
	if p.tradHash == 0 {
		return m, crypto.Hash(0)
	}
	h := p.tradHash.New()
	h.Write(m)
	if p.pss {
		// RSASSA-PSS with MGF1 over the same hash and salt = hash length.
		return h.Sum(nil), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: p.tradHash}
	}
	return h.Sum(nil), p.tradHash
}

// compositeSign runs Composite-ML-DSA.Sign with component signers that may
// live anywhere (software, two HSM keys).
func compositeSign(p *compositeParams, rand io.Reader, pq, trad crypto.Signer, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	ctx, err := contextOf(p.name, opts)
	if err != nil {
		return nil, err
	}
	m, err := p.messageRepresentative(msg, ctx)
	if err != nil {
		return nil, err
	}
	mldsaSig, errPQ := pq.Sign(rand, m, &ContextOpts{Context: []byte(p.label)})
	in, tradOpts := p.tradInput(m)
	tradSig, errTrad := trad.Sign(rand, in, tradOpts)
	// Both halves run before either error is reported, as the draft asks.
	if errPQ != nil || errTrad != nil {
		return nil, fmt.Errorf("%s: signature generation error: %w", p.name, errors.Join(errPQ, errTrad))
	}
	if n := p.mldsaParams().scheme.SignatureSize(); len(mldsaSig) != n {
		return nil, fmt.Errorf("%s: ML-DSA signer returned %d bytes, want %d", p.name, len(mldsaSig), n)
	}
	return append(mldsaSig, tradSig...), nil
}

// CompositePublicKey is a composite ML-DSA public key.
type CompositePublicKey struct {
	p     *compositeParams
	mldsa *MLDSAPublicKey
	trad  crypto.PublicKey
	raw   []byte
}

// NewCompositePublicKey combines two component public keys, for example
// those of two HSM keys.
func NewCompositePublicKey(a Algorithm, mldsa *MLDSAPublicKey, trad crypto.PublicKey) (*CompositePublicKey, error) {
	p, err := compositeParamsOf(a)
	if err != nil {
		return nil, err
	}
	if mldsa == nil || mldsa.p.name != p.mldsa {
		return nil, fmt.Errorf("%s: ML-DSA component must be an %s key", a, p.mldsa)
	}
	if err := CheckKey(trad, p.trad); err != nil {
		return nil, fmt.Errorf("%s: traditional component: %v", a, err)
	}
	tradRaw, err := marshalTradPublic(trad)
	if err != nil {
		return nil, fmt.Errorf("%s: traditional component: %v", a, err)
	}
	raw := append(mldsa.Bytes(), tradRaw...)
	return &CompositePublicKey{p: p, mldsa: mldsa, trad: trad, raw: raw}, nil
}

// ParseCompositePublicKey decodes mldsaPK || tradPK.
func ParseCompositePublicKey(a Algorithm, raw []byte) (*CompositePublicKey, error) {
	p, err := compositeParamsOf(a)
	if err != nil {
		return nil, err
	}
	n := p.mldsaParams().scheme.PublicKeySize()
	if len(raw) <= n {
		return nil, fmt.Errorf("%s public key is %d bytes, too short for its %s component (%d bytes) and a traditional key", a, len(raw), p.mldsa, n)
	}
	mldsa, err := ParseMLDSAPublicKey(p.mldsa, raw[:n])
	if err != nil {
		return nil, fmt.Errorf("%s: ML-DSA component: %v", a, err)
	}
	trad, err := parseTradPublic(p.trad, raw[n:])
	if err != nil {
		return nil, fmt.Errorf("%s: traditional component: %v", a, err)
	}
	return &CompositePublicKey{p: p, mldsa: mldsa, trad: trad, raw: bytes.Clone(raw)}, nil
}

// Algorithm returns the composite algorithm.
func (k *CompositePublicKey) Algorithm() Algorithm { return k.p.name }

// MLDSA returns the ML-DSA component.
func (k *CompositePublicKey) MLDSA() *MLDSAPublicKey { return k.mldsa }

// Traditional returns the traditional component (*ecdsa.PublicKey,
// *rsa.PublicKey or ed25519.PublicKey).
func (k *CompositePublicKey) Traditional() crypto.PublicKey { return k.trad }

// Bytes returns mldsaPK || tradPK.
func (k *CompositePublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// Equal reports whether x is the same composite public key.
func (k *CompositePublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*CompositePublicKey)
	return ok && o.p == k.p && bytes.Equal(o.raw, k.raw)
}

// Verify checks a composite signature with an empty application context.
func (k *CompositePublicKey) Verify(msg, sig []byte) error {
	return k.VerifyWithContext(msg, nil, sig)
}

// VerifyWithContext checks a composite signature. Both halves must verify;
// the error names the one that did not.
func (k *CompositePublicKey) VerifyWithContext(msg, ctx, sig []byte) error {
	p := k.p
	n := p.mldsaParams().scheme.SignatureSize()
	if len(sig) <= n {
		return fmt.Errorf("%s signature is %d bytes, too short for its %s component (%d bytes)", p.name, len(sig), p.mldsa, n)
	}
	m, err := p.messageRepresentative(msg, ctx)
	if err != nil {
		return err
	}
	if err := k.mldsa.VerifyWithContext(m, []byte(p.label), sig[:n]); err != nil {
		return fmt.Errorf("%s: ML-DSA component (%s): %w", p.name, p.mldsa, err)
	}
	if err := p.verifyTrad(k.trad, m, sig[n:]); err != nil {
		return fmt.Errorf("%s: traditional component (%s): %w", p.name, p.trad, err)
	}
	return nil
}

func (p *compositeParams) verifyTrad(pub crypto.PublicKey, m, sig []byte) error {
	in, opts := p.tradInput(m)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, in, sig) {
			return ErrVerify
		}
	case *rsa.PublicKey:
		var err error
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			err = rsa.VerifyPSS(k, pss.Hash, in, sig, &rsa.PSSOptions{SaltLength: pss.Hash.Size(), Hash: pss.Hash})
		} else {
			err = rsa.VerifyPKCS1v15(k, opts.HashFunc(), in, sig)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrVerify, err)
		}
	case ed25519.PublicKey:
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k, in, sig) {
			return ErrVerify
		}
	case ed448.PublicKey:
		if len(sig) != ed448.SignatureSize || !ed448.Verify(k, in, sig, "") {
			return ErrVerify
		}
	case *BrainpoolPublicKey:
		if !k.VerifyASN1(in, sig) {
			return ErrVerify
		}
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return nil
}

// CompositePrivateKey is a software composite ML-DSA private key. It
// implements crypto.Signer: Sign(rand, message, crypto.Hash(0)) signs the
// whole message; a *ContextOpts supplies an application context.
type CompositePrivateKey struct {
	p     *compositeParams
	mldsa *MLDSAPrivateKey
	trad  crypto.Signer
	pub   *CompositePublicKey
}

// NewCompositePrivateKey combines two freshly generated component keys.
// The draft forbids reusing component keys elsewhere.
func NewCompositePrivateKey(a Algorithm, mldsa *MLDSAPrivateKey, trad crypto.Signer) (*CompositePrivateKey, error) {
	if mldsa == nil || trad == nil {
		return nil, fmt.Errorf("%s: both component keys are required", a)
	}
	pub, err := NewCompositePublicKey(a, mldsa.pub, trad.Public())
	if err != nil {
		return nil, err
	}
	return &CompositePrivateKey{p: pub.p, mldsa: mldsa, trad: trad, pub: pub}, nil
}

// GenerateCompositeKey makes both component keys.
func GenerateCompositeKey(a Algorithm, rand io.Reader) (*CompositePrivateKey, error) {
	p, err := compositeParamsOf(a)
	if err != nil {
		return nil, err
	}
	mldsa, err := GenerateMLDSAKey(p.mldsa, rand)
	if err != nil {
		return nil, err
	}
	trad, err := GenerateKey(p.trad, randOrDefault(rand))
	if err != nil {
		return nil, err
	}
	return NewCompositePrivateKey(a, mldsa, trad.(crypto.Signer))
}

// Algorithm returns the composite algorithm.
func (k *CompositePrivateKey) Algorithm() Algorithm { return k.p.name }

// Public returns the *CompositePublicKey.
func (k *CompositePrivateKey) Public() crypto.PublicKey { return k.pub }

// MLDSA returns the ML-DSA component.
func (k *CompositePrivateKey) MLDSA() *MLDSAPrivateKey { return k.mldsa }

// Traditional returns the traditional component.
func (k *CompositePrivateKey) Traditional() crypto.Signer { return k.trad }

// Equal reports whether x is the same composite private key.
func (k *CompositePrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(*CompositePrivateKey)
	if !ok || o.p != k.p || !k.mldsa.Equal(o.mldsa) {
		return false
	}
	t, ok := k.trad.(interface{ Equal(crypto.PrivateKey) bool })
	return ok && t.Equal(o.trad)
}

// Sign runs Composite-ML-DSA.Sign over the whole message.
func (k *CompositePrivateKey) Sign(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return compositeSign(k.p, rand, k.mldsa, k.trad, msg, opts)
}

// compositeSigner assembles a composite signer from two separate Signers,
// e.g. two HSM keys.
type compositeSigner struct {
	p        *compositeParams
	pq, trad Signer
	pub      *CompositePublicKey
}

// NewCompositeSigner assembles a composite signer from an ML-DSA signer and
// a traditional signer of the algorithms composite alg combines. The
// ML-DSA signer must honour *ContextOpts (it signs under the composite
// label); the traditional signer gets a digest, as crypto.Signer expects.
func NewCompositeSigner(alg Algorithm, pq, trad Signer) (Signer, error) {
	p, err := compositeParamsOf(alg)
	if err != nil {
		return nil, err
	}
	if pq == nil || trad == nil {
		return nil, fmt.Errorf("%s: both component signers are required", alg)
	}
	if pq.Algorithm() != p.mldsa {
		return nil, fmt.Errorf("%s: ML-DSA component is %s, want %s", alg, pq.Algorithm(), p.mldsa)
	}
	if trad.Algorithm() != p.trad {
		return nil, fmt.Errorf("%s: traditional component is %s, want %s", alg, trad.Algorithm(), p.trad)
	}
	mpub, ok := pq.Public().(*MLDSAPublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: ML-DSA signer has a %T public key", alg, pq.Public())
	}
	pub, err := NewCompositePublicKey(alg, mpub, trad.Public())
	if err != nil {
		return nil, err
	}
	return &compositeSigner{p: p, pq: pq, trad: trad, pub: pub}, nil
}

func (s *compositeSigner) Algorithm() Algorithm     { return s.p.name }
func (s *compositeSigner) Public() crypto.PublicKey { return s.pub }

func (s *compositeSigner) Sign(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return compositeSign(s.p, rand, s.pq, s.trad, msg, opts)
}

// Close releases the component signers that hold resources.
func (s *compositeSigner) Close() error {
	var errs []error
	for _, c := range []Signer{s.pq, s.trad} {
		if cl, ok := c.(interface{ Close() error }); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

// Traditional component encodings.

var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521 = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
)

func curveOf(a Algorithm) (elliptic.Curve, asn1.ObjectIdentifier) {
	switch a {
	case ECDSAP256:
		return elliptic.P256(), oidP256
	case ECDSAP384:
		return elliptic.P384(), oidP384
	case ECDSAP521:
		return elliptic.P521(), oidP521
	}
	return nil, nil
}

func marshalTradPublic(pub crypto.PublicKey) ([]byte, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return k.Bytes()
	case *rsa.PublicKey:
		return x509.MarshalPKCS1PublicKey(k), nil
	case ed25519.PublicKey:
		return bytes.Clone(k), nil
	case ed448.PublicKey:
		return bytes.Clone(k), nil
	case *BrainpoolPublicKey:
		return k.Bytes(), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", pub)
}

func parseTradPublic(a Algorithm, raw []byte) (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	switch a.Family() {
	case FamilyECDSA:
		curve, _ := curveOf(a)
		k, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
		if err != nil {
			return nil, fmt.Errorf("%s public key: %v", a, err)
		}
		pub = k
	case FamilyRSA:
		k, err := x509.ParsePKCS1PublicKey(raw)
		if err != nil {
			return nil, fmt.Errorf("%s public key: %v", a, err)
		}
		pub = k
	case FamilyEd25519:
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s public key is %d bytes, want %d", a, len(raw), ed25519.PublicKeySize)
		}
		pub = ed25519.PublicKey(bytes.Clone(raw))
	case FamilyEd448:
		k, err := parseEd448Public(raw)
		if err != nil {
			return nil, err
		}
		pub = k
	case FamilyBrainpool:
		k, err := parseBrainpoolPublic(brainpoolCurve(a), raw)
		if err != nil {
			return nil, err
		}
		pub = k
	default:
		return nil, fmt.Errorf("unsupported traditional algorithm %s", a)
	}
	if err := CheckKey(pub, a); err != nil {
		return nil, err
	}
	return pub, nil
}

func marshalTradPrivate(a Algorithm, priv crypto.Signer) ([]byte, error) {
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		// ECPrivateKey (RFC 5915) with parameters and without publicKey.
		_, oid := curveOf(a)
		d, err := k.Bytes()
		if err != nil {
			return nil, err
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(1)
			b.AddASN1OctetString(d)
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oid)
			})
		})
		return b.Bytes()
	case *rsa.PrivateKey:
		return x509.MarshalPKCS1PrivateKey(k), nil
	case ed25519.PrivateKey:
		return bytes.Clone(k.Seed()), nil
	case ed448.PrivateKey:
		return bytes.Clone(k.Seed()), nil
	}
	return nil, fmt.Errorf("cannot encode a %T as a composite component", priv)
}

func parseTradPrivate(a Algorithm, raw []byte) (crypto.Signer, error) {
	var priv crypto.Signer
	switch a.Family() {
	case FamilyECDSA:
		k, err := x509.ParseECPrivateKey(raw)
		if err != nil {
			return nil, fmt.Errorf("%s private key: %v", a, err)
		}
		priv = k
	case FamilyRSA:
		k, err := x509.ParsePKCS1PrivateKey(raw)
		if err != nil {
			return nil, fmt.Errorf("%s private key: %v", a, err)
		}
		priv = k
	case FamilyEd25519:
		if len(raw) != ed25519.SeedSize {
			return nil, fmt.Errorf("%s private key is %d bytes, want %d", a, len(raw), ed25519.SeedSize)
		}
		priv = ed25519.NewKeyFromSeed(raw)
	case FamilyEd448:
		k, err := parseEd448Seed(raw)
		if err != nil {
			return nil, err
		}
		priv = k
	case FamilyBrainpool:
		return nil, fmt.Errorf("%s private key: %w", a, ErrNoConstantTime)
	default:
		return nil, fmt.Errorf("unsupported traditional algorithm %s", a)
	}
	if err := CheckKey(priv.Public(), a); err != nil {
		return nil, err
	}
	return priv, nil
}

func marshalCompositePrivateKey(k *CompositePrivateKey) ([]byte, error) {
	seed := k.mldsa.Seed()
	if seed == nil {
		return nil, fmt.Errorf("%s: the ML-DSA component has no seed; composite keys are stored as seeds", k.p.name)
	}
	trad, err := marshalTradPrivate(k.p.trad, k.trad)
	if err != nil {
		return nil, err
	}
	return marshalPKCS8(k.p.oid, append(seed, trad...))
}

func parseCompositePrivateKey(der []byte, info *Info, p *compositeParams) (*CompositePrivateKey, error) {
	raw, pub, err := parsePKCS8(der, info)
	if err != nil {
		return nil, err
	}
	if len(raw) <= MLDSASeedSize {
		return nil, fmt.Errorf("%s private key is %d bytes, too short", p.name, len(raw))
	}
	mldsa, err := NewMLDSAKeyFromSeed(p.mldsa, raw[:MLDSASeedSize])
	if err != nil {
		return nil, fmt.Errorf("%s: ML-DSA component: %v", p.name, err)
	}
	trad, err := parseTradPrivate(p.trad, raw[MLDSASeedSize:])
	if err != nil {
		return nil, fmt.Errorf("%s: traditional component: %v", p.name, err)
	}
	k, err := NewCompositePrivateKey(p.name, mldsa, trad)
	if err != nil {
		return nil, err
	}
	if pub != nil && !bytes.Equal(pub, k.pub.raw) {
		return nil, fmt.Errorf("%s private key: publicKey field does not match the private key", p.name)
	}
	return k, nil
}

func init() {
	for _, p := range compositeSets {
		p := p
		var info *Info
		var refused error
		if p.trad == ECDSABrainpoolP256 || p.trad == ECDSABrainpoolP384 {
			refused = ErrNoConstantTime
		}
		info = &Info{
			Name: p.name, Family: FamilyComposite, CanSign: true, OID: p.oid, SignRefused: refused,
			Generate: func(r io.Reader) (crypto.PrivateKey, error) { return GenerateCompositeKey(p.name, r) },
			Matches: func(pub crypto.PublicKey) bool {
				k, ok := pub.(*CompositePublicKey)
				return ok && k.p == p
			},
			MarshalPKCS8: func(priv crypto.PrivateKey) ([]byte, error) {
				k, ok := priv.(*CompositePrivateKey)
				if !ok || k.p != p {
					return nil, fmt.Errorf("%T is not a %s private key", priv, p.name)
				}
				return marshalCompositePrivateKey(k)
			},
			ParsePKCS8: func(der []byte) (crypto.PrivateKey, error) { return parseCompositePrivateKey(der, info, p) },
			MarshalPKIX: func(pub crypto.PublicKey) ([]byte, error) {
				k, ok := pub.(*CompositePublicKey)
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
				return ParseCompositePublicKey(p.name, raw)
			},
		}
		Register(info)
	}
}
