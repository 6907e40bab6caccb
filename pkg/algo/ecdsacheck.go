package algo

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"math/big"

	"filippo.io/bigmod"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// SelfChecker is a Signer that checks its own signatures faster than a
// verifier that holds only the public key can. crypto/x509 verifies every
// signature it has a signer make, to catch a faulty signer before a bad
// certificate goes out; a SelfChecker makes that same check cheaper.
type SelfChecker interface {
	Signer
	// CheckOwnSignature returns nil when sig is a valid signature of
	// digest under the signer's public key, an error when it is not, and
	// ErrCannotCheck when it cannot tell (the caller then verifies).
	CheckOwnSignature(digest, sig []byte) error
}

// CheckOwnSignature asks s to check its own signature: a wrapper around a
// signer (one that adds a Close, a lock) implements SelfChecker with it.
func CheckOwnSignature(s Signer, digest, sig []byte) error {
	if c, ok := s.(SelfChecker); ok {
		return c.CheckOwnSignature(digest, sig)
	}
	return ErrCannotCheck
}

// ErrCannotCheck is CheckOwnSignature's answer for a signature it leaves
// to an ordinary verification.
var ErrCannotCheck = errors.New("algo: the signer cannot check this signature itself")

// ecdsaChecker checks ECDSA signatures with the private key d. Verifying
// (r, s) over e computes R = u1·G + u2·Q, with u1 = e/s and u2 = r/s, and
// accepts when R's x-coordinate is r mod n. With Q = d·G the second term
// is (u2·d)·G: a multiplication of the fixed generator, which Go does from
// a precomputed table, in place of verification's multiplication of the
// variable point Q, so the check costs about half a P-256 verify and
// two-fifths of a P-384 one. u2·d is secret (u2 is public), so it is
// computed in constant time (bigmod) and multiplied by crypto/ecdh's
// constant-time code. The check stays independent of the signature's own
// computation as a verify is: the signer made R as k·G in one
// multiplication; here it is the sum of two others, so an error in that
// multiplication (a damaged table, a bug) does not repeat itself here.
type ecdsaChecker struct {
	curve ecdh.Curve
	p     *big.Int // the field's prime
	n     *bigmod.Modulus
	nBig  *big.Int
	d     *bigmod.Nat
	size  int // bytes of a scalar
}

// newECDSAChecker returns a checker for priv, or nil when its curve is not
// one it handles or its public key is not d·G (the check would then prove
// nothing about the public key that verifiers use).
func newECDSAChecker(priv *ecdsa.PrivateKey) *ecdsaChecker {
	var curve ecdh.Curve
	switch priv.Curve {
	case elliptic.P256():
		curve = ecdh.P256()
	case elliptic.P384():
		curve = ecdh.P384()
	case elliptic.P521():
		curve = ecdh.P521()
	default:
		return nil
	}
	params := priv.Curve.Params()
	n, err := bigmod.NewModulus(params.N.Bytes())
	if err != nil {
		return nil
	}
	size := (params.N.BitLen() + 7) / 8
	dBytes, err := priv.Bytes()
	if err != nil {
		return nil
	}
	d, err := bigmod.NewNat().SetBytes(dBytes, n)
	if err != nil {
		return nil
	}
	k, err := curve.NewPrivateKey(dBytes)
	if err != nil {
		return nil
	}
	pub, err := priv.PublicKey.Bytes()
	if err != nil || string(k.PublicKey().Bytes()) != string(pub) {
		return nil
	}
	return &ecdsaChecker{curve: curve, p: params.P, n: n, nBig: params.N, d: d, size: size}
}

var errBadECDSA = errors.New("invalid ECDSA signature")

// check verifies sig (ASN.1 r, s) over digest. The digest must not be
// longer than the order (SHA-256 with P-256, SHA-384 with P-384, SHA-512
// with P-521): others get ErrCannotCheck.
func (c *ecdsaChecker) check(digest, sig []byte) error {
	if len(digest)*8 > c.n.BitLen() {
		return ErrCannotCheck // ECDSA would truncate it: left to a verify
	}
	rBytes, sBytes, ok := parseECDSASig(sig)
	if !ok {
		return errBadECDSA
	}
	if _, err := c.scalar(sBytes); err != nil { // s in [1, n-1]
		return err
	}
	e, err := bigmod.NewNat().SetOverflowingBytes(digest, c.n)
	if err != nil {
		return ErrCannotCheck
	}
	// w = s⁻¹. s is public, so math/big's variable-time inverse is fine,
	// and it is ten times faster than bigmod's.
	wBig := new(big.Int).SetBytes(sBytes)
	if wBig.ModInverse(wBig, c.nBig) == nil {
		return errBadECDSA
	}
	w, err := bigmod.NewNat().SetBytes(wBig.Bytes(), c.n)
	if err != nil {
		return errBadECDSA
	}
	u2d, err := c.scalar(rBytes) // r, checked to be in [1, n-1]
	if err != nil {
		return err
	}
	u1 := e.Mul(w, c.n)           // e·w, public
	u2d.Mul(w, c.n).Mul(c.d, c.n) // r·w·d, secret
	if u1.IsZero() == 1 {
		return ErrCannotCheck // u1·G is the point at infinity: left to a verify
	}
	p1, err := c.baseMul(u1)
	if err != nil {
		return err
	}
	p2, err := c.baseMul(u2d) // never zero: r, w and d are not
	if err != nil {
		return err
	}
	// R = p1 + p2, in affine coordinates. Both points are public (p2 is
	// u2·Q), so math/big's variable time is fine here.
	x1, y1 := p1[0], p1[1]
	x2, y2 := p2[0], p2[1]
	if x1.Cmp(x2) == 0 {
		return ErrCannotCheck // doubling or the point at infinity: left to a verify
	}
	lambda := new(big.Int).Sub(y2, y1)
	den := new(big.Int).Sub(x2, x1)
	den.Mod(den, c.p)
	if den.ModInverse(den, c.p) == nil {
		return ErrCannotCheck
	}
	lambda.Mul(lambda, den).Mod(lambda, c.p)
	x3 := new(big.Int).Mul(lambda, lambda)
	x3.Sub(x3, x1).Sub(x3, x2).Mod(x3, c.p)
	if x3.Mod(x3, c.nBig).Cmp(new(big.Int).SetBytes(rBytes)) != 0 {
		return errBadECDSA
	}
	return nil
}

// baseMul returns k·G as affine coordinates; k must not be zero.
func (c *ecdsaChecker) baseMul(k *bigmod.Nat) ([2]*big.Int, error) {
	priv, err := c.curve.NewPrivateKey(k.Bytes(c.n))
	if err != nil {
		return [2]*big.Int{}, ErrCannotCheck
	}
	point := priv.PublicKey().Bytes() // 0x04 || X || Y
	size := (len(point) - 1) / 2
	return [2]*big.Int{new(big.Int).SetBytes(point[1 : 1+size]), new(big.Int).SetBytes(point[1+size:])}, nil
}

// scalar reads a signature integer, which must be in [1, n-1].
func (c *ecdsaChecker) scalar(b []byte) (*bigmod.Nat, error) {
	if len(b) > c.size {
		return nil, errBadECDSA
	}
	x, err := bigmod.NewNat().SetBytes(b, c.n)
	if err != nil || x.IsZero() == 1 {
		return nil, errBadECDSA
	}
	return x, nil
}

// parseECDSASig reads ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER },
// both positive.
func parseECDSASig(sig []byte) (r, s []byte, ok bool) {
	var inner cryptobyte.String
	in := cryptobyte.String(sig)
	var rb, sb *big.Int = new(big.Int), new(big.Int)
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(rb) || !inner.ReadASN1Integer(sb) || !inner.Empty() ||
		rb.Sign() <= 0 || sb.Sign() <= 0 {
		return nil, nil, false
	}
	return rb.Bytes(), sb.Bytes(), true
}
