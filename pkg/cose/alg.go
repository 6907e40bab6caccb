package cose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strconv"
	"strings"

	"github.com/qpki/qpki/pkg/algo"
)

// Algorithm is a COSE algorithm identifier (IANA "COSE Algorithms").
type Algorithm int64

// Signature algorithms. Values from the IANA registry: RFC 9053 (ES*, EdDSA),
// RFC 8230 (PS*), RFC 9864 (fully specified ESP*, Ed25519), RFC 9964
// (ML-DSA).
const (
	AlgES256 Algorithm = -7
	AlgES384 Algorithm = -35
	AlgES512 Algorithm = -36
	AlgEdDSA Algorithm = -8

	AlgPS256 Algorithm = -37
	AlgPS384 Algorithm = -38
	AlgPS512 Algorithm = -39

	AlgESP256  Algorithm = -9
	AlgESP384  Algorithm = -51
	AlgESP512  Algorithm = -52
	AlgEd25519 Algorithm = -19

	AlgMLDSA44 Algorithm = -48
	AlgMLDSA65 Algorithm = -49
	AlgMLDSA87 Algorithm = -50
)

// SLH-DSA (draft-ietf-cose-sphincs-plus). The draft registers only
// SLH-DSA-SHA2-128s and SLH-DSA-SHAKE-128s, as TBD1 and TBD2, and requests
// -51 and -52 — values RFC 9864 has since given to ESP384 and ESP512. Until
// IANA assigns others, qpki uses these private-use values (below -65536),
// which no registered algorithm can collide with. Change them here when the
// draft becomes an RFC.
const (
	AlgSLHDSASHA2128s  Algorithm = -65536 - 51
	AlgSLHDSASHAKE128s Algorithm = -65536 - 52
)

// kind groups algorithms by how they sign.
type kind int

const (
	kindECDSA kind = iota + 1
	kindEdDSA
	kindPSS
	kindPure // ML-DSA, SLH-DSA: the key signs the whole message
)

type algInfo struct {
	id    Algorithm
	name  string
	kind  kind
	hash  crypto.Hash    // ECDSA and PSS only
	curve elliptic.Curve // ECDSA only
	key   algo.Algorithm // pure algorithms: the one key algorithm allowed
	fully bool           // fully specified (RFC 9864) identifier
}

var algs = []*algInfo{
	{id: AlgES256, name: "ES256", kind: kindECDSA, hash: crypto.SHA256, curve: elliptic.P256()},
	{id: AlgES384, name: "ES384", kind: kindECDSA, hash: crypto.SHA384, curve: elliptic.P384()},
	{id: AlgES512, name: "ES512", kind: kindECDSA, hash: crypto.SHA512, curve: elliptic.P521()},
	{id: AlgESP256, name: "ESP256", kind: kindECDSA, hash: crypto.SHA256, curve: elliptic.P256(), fully: true},
	{id: AlgESP384, name: "ESP384", kind: kindECDSA, hash: crypto.SHA384, curve: elliptic.P384(), fully: true},
	{id: AlgESP512, name: "ESP512", kind: kindECDSA, hash: crypto.SHA512, curve: elliptic.P521(), fully: true},
	{id: AlgEdDSA, name: "EdDSA", kind: kindEdDSA},
	{id: AlgEd25519, name: "Ed25519", kind: kindEdDSA, fully: true},
	{id: AlgPS256, name: "PS256", kind: kindPSS, hash: crypto.SHA256, fully: true},
	{id: AlgPS384, name: "PS384", kind: kindPSS, hash: crypto.SHA384, fully: true},
	{id: AlgPS512, name: "PS512", kind: kindPSS, hash: crypto.SHA512, fully: true},
	{id: AlgMLDSA44, name: "ML-DSA-44", kind: kindPure, key: "ml-dsa-44", fully: true},
	{id: AlgMLDSA65, name: "ML-DSA-65", kind: kindPure, key: "ml-dsa-65", fully: true},
	{id: AlgMLDSA87, name: "ML-DSA-87", kind: kindPure, key: "ml-dsa-87", fully: true},
	{id: AlgSLHDSASHA2128s, name: "SLH-DSA-SHA2-128s", kind: kindPure, key: "slh-dsa-sha2-128s", fully: true},
	{id: AlgSLHDSASHAKE128s, name: "SLH-DSA-SHAKE-128s", kind: kindPure, key: "slh-dsa-shake-128s", fully: true},
}

func lookupAlg(id Algorithm) (*algInfo, bool) {
	for _, a := range algs {
		if a.id == id {
			return a, true
		}
	}
	return nil, false
}

// String returns the registered name, e.g. "ES256", or the number for an
// algorithm qpki does not know.
func (a Algorithm) String() string {
	if info, ok := lookupAlg(a); ok {
		return info.name
	}
	return strconv.FormatInt(int64(a), 10)
}

// ParseAlgorithm accepts a registered name (case-insensitive) or a number.
func ParseAlgorithm(s string) (Algorithm, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if _, ok := lookupAlg(Algorithm(n)); ok {
			return Algorithm(n), nil
		}
		return 0, fmt.Errorf("%w: COSE algorithm %d", ErrUnsupported, n)
	}
	for _, a := range algs {
		if strings.EqualFold(a.name, s) {
			return a.id, nil
		}
	}
	return 0, fmt.Errorf("%w: COSE algorithm %q (known: %s)", ErrUnsupported, s, strings.Join(algNames(), ", "))
}

func algNames() []string {
	names := make([]string, len(algs))
	for i, a := range algs {
		names[i] = a.name
	}
	return names
}

// AlgorithmFor returns the COSE algorithm that goes with a key algorithm.
// fullySpecified selects the RFC 9864 identifiers (ESP256, Ed25519, ...)
// instead of the polymorphic ES256 and EdDSA. RSA keys sign with PSS, with
// the digest algo.HashFor gives the key (SHA-384 for RSA-4096).
func AlgorithmFor(a algo.Algorithm, fullySpecified bool) (Algorithm, error) {
	pick := func(poly, fully Algorithm) Algorithm {
		if fullySpecified {
			return fully
		}
		return poly
	}
	switch a {
	case algo.ECDSAP256:
		return pick(AlgES256, AlgESP256), nil
	case algo.ECDSAP384:
		return pick(AlgES384, AlgESP384), nil
	case algo.ECDSAP521:
		return pick(AlgES512, AlgESP512), nil
	case algo.Ed25519:
		return pick(AlgEdDSA, AlgEd25519), nil
	case algo.RSA2048, algo.RSA3072:
		return AlgPS256, nil
	case algo.RSA4096:
		return AlgPS384, nil
	}
	for _, info := range algs {
		if info.kind == kindPure && info.key == a {
			return info.id, nil
		}
	}
	if strings.HasPrefix(string(a), "slh-dsa-") {
		return 0, fmt.Errorf("%w: no COSE algorithm for %s (draft-ietf-cose-sphincs-plus registers only SLH-DSA-SHA2-128s and SLH-DSA-SHAKE-128s)", ErrUnsupported, a)
	}
	return 0, fmt.Errorf("%w: no COSE algorithm for %s keys", ErrUnsupported, a)
}

// checkKey reports whether pub may verify (or its private half sign) with
// this algorithm. COSE binds ES256 to P-256 and so on; qpki enforces it for
// the polymorphic identifiers too, as go-cose does.
func (info *algInfo) checkKey(pub crypto.PublicKey) error {
	switch info.kind {
	case kindECDSA:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != info.curve {
			return fmt.Errorf("%s needs a %s key, not %s", info.name, info.curve.Params().Name, describeKey(pub))
		}
	case kindEdDSA:
		if _, ok := pub.(ed25519.PublicKey); !ok {
			return fmt.Errorf("%s needs an Ed25519 key, not %s", info.name, describeKey(pub))
		}
	case kindPSS:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%s needs an RSA key, not %s", info.name, describeKey(pub))
		}
		// RFC 8230 §2: keys of 2048 bits or more.
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%s needs an RSA key of at least 2048 bits, not %d", info.name, k.N.BitLen())
		}
	case kindPure:
		if !info.key.Valid() {
			return fmt.Errorf("%w: %s keys are not available in this build", ErrUnsupported, info.key)
		}
		if err := algo.CheckKey(pub, info.key); err != nil {
			return fmt.Errorf("%s: %v", info.name, err)
		}
	}
	return nil
}

func describeKey(pub crypto.PublicKey) string {
	if a, err := algo.Of(pub); err == nil {
		return "a " + string(a) + " key"
	}
	return fmt.Sprintf("a %T key", pub)
}
