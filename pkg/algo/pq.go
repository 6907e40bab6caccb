package algo

import (
	"crypto"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ContextOpts asks an ML-DSA, SLH-DSA or composite key to sign the whole
// message (no pre-hash) under a context string (FIPS 204 / FIPS 205 ctx,
// at most 255 bytes). crypto.Hash(0) as options means an empty context.
type ContextOpts struct {
	Context []byte
}

// HashFunc returns 0: these algorithms sign the message itself.
func (*ContextOpts) HashFunc() crypto.Hash { return 0 }

// contextOf extracts the context from signer options, refusing a digest.
func contextOf(a Algorithm, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		return nil, nil
	}
	if opts.HashFunc() != 0 {
		return nil, fmt.Errorf("%s signs the message itself, not a %v digest", a, opts.HashFunc())
	}
	var ctx []byte
	if o, ok := opts.(*ContextOpts); ok && o != nil {
		ctx = o.Context
	}
	if len(ctx) > 255 {
		return nil, fmt.Errorf("%s: context of %d bytes exceeds 255", a, len(ctx))
	}
	return ctx, nil
}

// The post-quantum and composite keys all use the same X.509 shapes: an
// AlgorithmIdentifier with absent parameters, the raw key in the
// subjectPublicKey BIT STRING, and an algorithm-specific octet string in
// the PKCS#8 privateKey field.

// marshalSPKI builds SubjectPublicKeyInfo ::= SEQUENCE { SEQUENCE { oid },
// BIT STRING key }.
func marshalSPKI(oid asn1.ObjectIdentifier, key []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
		})
		b.AddASN1BitString(key)
	})
	return b.Bytes()
}

// parseAlgorithmIdentifier reads an AlgorithmIdentifier whose parameters
// must be absent and returns its OID.
func parseAlgorithmIdentifier(s *cryptobyte.String, name Algorithm) (asn1.ObjectIdentifier, error) {
	var ai cryptobyte.String
	if !s.ReadASN1(&ai, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%s: malformed algorithm identifier", name)
	}
	var oid asn1.ObjectIdentifier
	if !ai.ReadASN1ObjectIdentifier(&oid) {
		return nil, fmt.Errorf("%s: malformed algorithm identifier OID", name)
	}
	if !ai.Empty() {
		return nil, fmt.Errorf("%s: algorithm identifier parameters must be absent", name)
	}
	return oid, nil
}

// parseSPKI checks a SubjectPublicKeyInfo of algorithm info and returns the
// raw key bytes.
func parseSPKI(der []byte, info *Info) ([]byte, error) {
	if len(der) > MaxKeyDER {
		return nil, fmt.Errorf("%s public key: %d bytes exceeds the %d-byte limit", info.Name, len(der), MaxKeyDER)
	}
	s := cryptobyte.String(der)
	var spki cryptobyte.String
	if !s.ReadASN1(&spki, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, fmt.Errorf("%s public key: malformed SubjectPublicKeyInfo", info.Name)
	}
	oid, err := parseAlgorithmIdentifier(&spki, info.Name)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if !oid.Equal(info.OID) {
		return nil, fmt.Errorf("%s public key: algorithm %s, want %s", info.Name, oid, info.OID)
	}
	var bits asn1.BitString
	if !spki.ReadASN1BitString(&bits) || !spki.Empty() {
		return nil, fmt.Errorf("%s public key: malformed subjectPublicKey BIT STRING", info.Name)
	}
	if bits.BitLength%8 != 0 {
		return nil, fmt.Errorf("%s public key: subjectPublicKey is not a whole number of bytes", info.Name)
	}
	return bits.Bytes, nil
}

// marshalPKCS8 builds a version 0 OneAsymmetricKey around privateKey.
func marshalPKCS8(oid asn1.ObjectIdentifier, privateKey []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
		})
		b.AddASN1OctetString(privateKey)
	})
	return b.Bytes()
}

// parsePKCS8 checks a OneAsymmetricKey (RFC 5958, version 0 or 1) of
// algorithm info and returns the privateKey octets and, if present, the
// publicKey field.
func parsePKCS8(der []byte, info *Info) (priv, pub []byte, err error) {
	if len(der) > MaxKeyDER {
		return nil, nil, fmt.Errorf("%s private key: %d bytes exceeds the %d-byte limit", info.Name, len(der), MaxKeyDER)
	}
	s := cryptobyte.String(der)
	var oak cryptobyte.String
	var version int64
	if !s.ReadASN1(&oak, cbasn1.SEQUENCE) || !s.Empty() || !oak.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return nil, nil, fmt.Errorf("%s private key: malformed PKCS#8", info.Name)
	}
	if version != 0 && version != 1 {
		return nil, nil, fmt.Errorf("%s private key: unsupported PKCS#8 version %d", info.Name, version)
	}
	oid, err := parseAlgorithmIdentifier(&oak, info.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("private key: %w", err)
	}
	if !oid.Equal(info.OID) {
		return nil, nil, fmt.Errorf("%s private key: algorithm %s, want %s", info.Name, oid, info.OID)
	}
	if !oak.ReadASN1Bytes(&priv, cbasn1.OCTET_STRING) {
		return nil, nil, fmt.Errorf("%s private key: malformed privateKey OCTET STRING", info.Name)
	}
	// attributes [0] are ignored; publicKey [1] IMPLICIT BIT STRING is
	// returned so the caller can check it against the private key.
	oak.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific())
	if oak.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific()) {
		var bits cryptobyte.String
		var unused uint8
		if !oak.ReadASN1(&bits, cbasn1.Tag(1).ContextSpecific()) || !bits.ReadUint8(&unused) || unused != 0 {
			return nil, nil, fmt.Errorf("%s private key: malformed publicKey field", info.Name)
		}
		pub = bits
	}
	if !oak.Empty() {
		return nil, nil, fmt.Errorf("%s private key: trailing data in PKCS#8", info.Name)
	}
	return priv, pub, nil
}

// ErrVerify is wrapped by every post-quantum and composite "signature does
// not verify" error, so callers can tell a bad signature from bad input.
var ErrVerify = errors.New("signature does not verify")

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
