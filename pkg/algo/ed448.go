package algo

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/ed448"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Ed448 (RFC 8032) through circl, whose base-point multiplication (the
// only secret-dependent step of signing) runs in constant time. Keys use
// the RFC 8410 encodings. qpki uses it as the traditional half of
// MLDSA87-Ed448-SHAKE256; crypto/x509 cannot parse Ed448 certificates, so
// it is not offered as a CA algorithm of its own.
const Ed448 Algorithm = "ed448"

// FamilyEd448 is the Ed448 family.
const FamilyEd448 Family = "ed448"

var oidEd448 = asn1.ObjectIdentifier{1, 3, 101, 113}

func init() {
	var info *Info
	info = &Info{
		Name: Ed448, Family: FamilyEd448, Classical: true, CanSign: true, Bits: 448, OID: oidEd448,
		Generate: func(r io.Reader) (crypto.PrivateKey, error) {
			_, priv, err := ed448.GenerateKey(randOrDefault(r))
			return priv, err
		},
		Matches: func(pub crypto.PublicKey) bool {
			_, ok := pub.(ed448.PublicKey)
			return ok
		},
		// RFC 8410: privateKey is an OCTET STRING holding the 57-byte seed.
		MarshalPKCS8: func(priv crypto.PrivateKey) ([]byte, error) {
			k, ok := priv.(ed448.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%T is not an Ed448 private key", priv)
			}
			var b cryptobyte.Builder
			b.AddASN1OctetString(k.Seed())
			inner, err := b.Bytes()
			if err != nil {
				return nil, err
			}
			return marshalPKCS8(oidEd448, inner)
		},
		ParsePKCS8: func(der []byte) (crypto.PrivateKey, error) {
			inner, _, err := parsePKCS8(der, info)
			if err != nil {
				return nil, err
			}
			s := cryptobyte.String(inner)
			var seed []byte
			if !s.ReadASN1Bytes(&seed, cbasn1.OCTET_STRING) || !s.Empty() {
				return nil, fmt.Errorf("ed448 private key: malformed CurvePrivateKey")
			}
			return parseEd448Seed(seed)
		},
		MarshalPKIX: func(pub crypto.PublicKey) ([]byte, error) {
			k, ok := pub.(ed448.PublicKey)
			if !ok {
				return nil, fmt.Errorf("%T is not an Ed448 public key", pub)
			}
			return marshalSPKI(oidEd448, k)
		},
		ParsePKIX: func(der []byte) (crypto.PublicKey, error) {
			raw, err := parseSPKI(der, info)
			if err != nil {
				return nil, err
			}
			return parseEd448Public(raw)
		},
	}
	Register(info)
}

func parseEd448Public(raw []byte) (ed448.PublicKey, error) {
	if len(raw) != ed448.PublicKeySize {
		return nil, fmt.Errorf("ed448 public key is %d bytes, want %d", len(raw), ed448.PublicKeySize)
	}
	return ed448.PublicKey(bytes.Clone(raw)), nil
}

func parseEd448Seed(seed []byte) (ed448.PrivateKey, error) {
	if len(seed) != ed448.SeedSize {
		return nil, fmt.Errorf("ed448 private key is %d bytes, want %d", len(seed), ed448.SeedSize)
	}
	return ed448.NewKeyFromSeed(seed), nil
}
