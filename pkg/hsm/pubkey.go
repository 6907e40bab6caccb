package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/qpki/qpki/pkg/algo"
)

// Curve identifiers as they appear in CKA_EC_PARAMS (DER of the OID).
var (
	oidP256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384    = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521    = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
)

func curveOID(alg algo.Algorithm) (asn1.ObjectIdentifier, bool) {
	switch alg {
	case algo.ECDSAP256:
		return oidP256, true
	case algo.ECDSAP384:
		return oidP384, true
	case algo.ECDSAP521:
		return oidP521, true
	case algo.Ed25519:
		return oidEd25519, true
	}
	return nil, false
}

func curveByOID(oid asn1.ObjectIdentifier) elliptic.Curve {
	switch {
	case oid.Equal(oidP256):
		return elliptic.P256()
	case oid.Equal(oidP384):
		return elliptic.P384()
	case oid.Equal(oidP521):
		return elliptic.P521()
	}
	return nil
}

// ecPoint unwraps CKA_EC_POINT. PKCS#11 says it is the DER encoding of an
// OCTET STRING holding the point; some tokens return the bare point, which
// is accepted when its length is exactly a point's.
func ecPoint(attr []byte, pointLen int) ([]byte, error) {
	var inner []byte
	if rest, err := asn1.Unmarshal(attr, &inner); err == nil && len(rest) == 0 && len(inner) == pointLen {
		return inner, nil
	}
	if len(attr) == pointLen {
		return attr, nil
	}
	return nil, fmt.Errorf("CKA_EC_POINT of %d bytes is neither a DER OCTET STRING nor a bare point of %d bytes", len(attr), pointLen)
}

func decodeECPublic(params, point []byte) (*ecdsa.PublicKey, error) {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(params, &oid); err != nil || len(rest) != 0 {
		return nil, errors.New("CKA_EC_PARAMS is not a named-curve OID (explicit curve parameters are not supported)")
	}
	curve := curveByOID(oid)
	if curve == nil {
		return nil, fmt.Errorf("unsupported curve %v", oid)
	}
	size := (curve.Params().BitSize + 7) / 8
	raw, err := ecPoint(point, 1+2*size)
	if err != nil {
		return nil, err
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
	if err != nil {
		return nil, fmt.Errorf("CKA_EC_POINT: %v", err)
	}
	return pub, nil
}

// decodeEdwardsPublic reads an Ed25519 key: CKA_EC_PARAMS is the OID
// 1.3.101.112 or (PKCS#11 3.0) the PrintableString "edwards25519".
func decodeEdwardsPublic(params, point []byte) (ed25519.PublicKey, error) {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(params, &oid); err == nil && len(rest) == 0 {
		if !oid.Equal(oidEd25519) {
			return nil, fmt.Errorf("unsupported Edwards curve %v (only Ed25519)", oid)
		}
	} else {
		var name string
		if rest, err := asn1.Unmarshal(params, &name); err != nil || len(rest) != 0 || name != "edwards25519" {
			return nil, errors.New("CKA_EC_PARAMS names no supported Edwards curve (only Ed25519)")
		}
	}
	raw, err := ecPoint(point, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return ed25519.PublicKey(raw), nil
}

func decodeRSAPublic(modulus, exponent []byte) (*rsa.PublicKey, error) {
	n := new(big.Int).SetBytes(modulus)
	if n.Sign() <= 0 || n.BitLen() > 16384 {
		return nil, fmt.Errorf("CKA_MODULUS of %d bits is out of range", n.BitLen())
	}
	e := new(big.Int).SetBytes(exponent)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
		return nil, errors.New("CKA_PUBLIC_EXPONENT is out of range")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

// publicFromRaw wraps a raw post-quantum public key (CKA_VALUE) in a
// SubjectPublicKeyInfo and lets pkg/algo decode it.
func publicFromRaw(alg algo.Algorithm, raw []byte) (crypto.PublicKey, error) {
	info, ok := algo.Lookup(alg)
	if !ok || info.OID == nil {
		return nil, fmt.Errorf("algorithm %s is not available in this build", alg)
	}
	der, err := asn1.Marshal(struct {
		Algo pkix.AlgorithmIdentifier
		Key  asn1.BitString
	}{pkix.AlgorithmIdentifier{Algorithm: info.OID}, asn1.BitString{Bytes: raw, BitLength: 8 * len(raw)}})
	if err != nil {
		return nil, err
	}
	return algo.ParsePKIX(der)
}

// keyIDFor derives a CKA_ID from a public key: the leftmost 160 bits of the
// SHA-256 of the subjectPublicKey bits (RFC 7093 method 1), which is also
// how crypto/x509 derives a CA's subject key identifier, so that the id and
// the certificate's SKID agree.
func keyIDFor(pub crypto.PublicKey) ([]byte, error) {
	der, err := algo.MarshalPKIX(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algo asn1.RawValue
		Key  asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki.Key.Bytes)
	return sum[:20], nil
}
