package cms

import (
	"crypto"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/asn1"
	"fmt"

	"github.com/qpki/qpki/pkg/algo"
)

// digestAlg is a message digest algorithm CMS names by OID.
type digestAlg struct {
	oid  asn1.ObjectIdentifier
	name string
	sum  func([]byte) []byte
}

var digestAlgs = []digestAlg{
	{oidSHA256, "sha256", func(b []byte) []byte { d := sha256.Sum256(b); return d[:] }},
	{oidSHA384, "sha384", func(b []byte) []byte { d := sha512.Sum384(b); return d[:] }},
	{oidSHA512, "sha512", func(b []byte) []byte { d := sha512.Sum512(b); return d[:] }},
	// RFC 8702: SHAKE128 gives 32 bytes, SHAKE256 64.
	{oidSHAKE128, "shake128", func(b []byte) []byte { return sha3.SumSHAKE128(b, 32) }},
	{oidSHAKE256, "shake256", func(b []byte) []byte { return sha3.SumSHAKE256(b, 64) }},
}

func digestByOID(oid asn1.ObjectIdentifier) (digestAlg, error) {
	for _, d := range digestAlgs {
		if d.oid.Equal(oid) {
			return d, nil
		}
	}
	return digestAlg{}, fmt.Errorf("cms: unsupported digest algorithm %s", oid)
}

func digestByHash(h crypto.Hash) digestAlg {
	switch h {
	case crypto.SHA384:
		return digestAlgs[1]
	case crypto.SHA512:
		return digestAlgs[2]
	}
	return digestAlgs[0]
}

// digestFor is the digest algorithm a signer of algorithm a uses for the
// content: the hash of its signature algorithm for ECDSA and RSA, SHA-512
// for Ed25519 (RFC 8419) and ML-DSA (RFC 9882), the set's own for SLH-DSA
// (RFC 9814), and SHA-512 for composite ML-DSA, the digest
// draft-ietf-lamps-cms-composite-sigs requires every verifier to support.
func digestFor(a algo.Algorithm) digestAlg {
	switch a.Family() {
	case algo.FamilyECDSA, algo.FamilyRSA:
		return digestByHash(algo.HashFor(a))
	case algo.FamilySLHDSA:
		switch a {
		case algo.SLHDSASHA2128s, algo.SLHDSASHA2128f:
			return digestAlgs[0]
		case algo.SLHDSASHAKE128s, algo.SLHDSASHAKE128f:
			return digestAlgs[3]
		case algo.SLHDSASHAKE192s, algo.SLHDSASHAKE192f, algo.SLHDSASHAKE256s, algo.SLHDSASHAKE256f:
			return digestAlgs[4]
		}
	}
	return digestAlgs[2]
}
