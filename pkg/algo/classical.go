package algo

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"io"
)

func init() {
	for _, c := range []struct {
		name  Algorithm
		curve elliptic.Curve
	}{{ECDSAP256, elliptic.P256()}, {ECDSAP384, elliptic.P384()}, {ECDSAP521, elliptic.P521()}} {
		curve := c.curve
		Register(&Info{
			Name: c.name, Family: FamilyECDSA, Classical: true, CanSign: true,
			Bits: curve.Params().BitSize,
			Generate: func(r io.Reader) (crypto.PrivateKey, error) {
				return ecdsa.GenerateKey(curve, r)
			},
			Matches: func(pub crypto.PublicKey) bool {
				k, ok := pub.(*ecdsa.PublicKey)
				return ok && k.Curve == curve
			},
		})
	}
	for _, c := range []struct {
		name Algorithm
		bits int
	}{{RSA2048, 2048}, {RSA3072, 3072}, {RSA4096, 4096}} {
		bits := c.bits
		Register(&Info{
			Name: c.name, Family: FamilyRSA, Classical: true, CanSign: true, Bits: bits,
			Generate: func(r io.Reader) (crypto.PrivateKey, error) {
				return rsa.GenerateKey(r, bits)
			},
			Matches: func(pub crypto.PublicKey) bool {
				k, ok := pub.(*rsa.PublicKey)
				return ok && k.N.BitLen() == bits
			},
		})
	}
	Register(&Info{
		Name: Ed25519, Family: FamilyEd25519, Classical: true, CanSign: true, Bits: 256,
		Generate: func(r io.Reader) (crypto.PrivateKey, error) {
			_, priv, err := ed25519.GenerateKey(r)
			return priv, err
		},
		Matches: func(pub crypto.PublicKey) bool {
			_, ok := pub.(ed25519.PublicKey)
			return ok
		},
	})
}
