package algo

import (
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

// MaxKeyDER bounds the size of any encoded key qpki parses. The largest
// legitimate one (an expanded ML-DSA-87 private key in PKCS#8 "both" form)
// is under 5 KiB; RSA-4096 is under 2.5 KiB.
const MaxKeyDER = 64 << 10

// algorithmOf reads the algorithm identifier of a PKCS#8 or PKIX structure
// without decoding the key itself.
func algorithmOf(der []byte, pkcs8 bool) (asn1.ObjectIdentifier, error) {
	if len(der) > MaxKeyDER {
		return nil, fmt.Errorf("key encoding of %d bytes exceeds the %d-byte limit", len(der), MaxKeyDER)
	}
	if pkcs8 {
		var p struct {
			Version int
			Algo    pkix.AlgorithmIdentifier
			Key     []byte
			Rest    asn1.RawValue `asn1:"optional,tag:0"`
			Pub     asn1.RawValue `asn1:"optional,tag:1"`
		}
		if _, err := asn1.Unmarshal(der, &p); err != nil {
			return nil, fmt.Errorf("malformed PKCS#8 private key: %v", err)
		}
		return p.Algo.Algorithm, nil
	}
	var p struct {
		Algo pkix.AlgorithmIdentifier
		Key  asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &p); err != nil {
		return nil, fmt.Errorf("malformed public key: %v", err)
	}
	return p.Algo.Algorithm, nil
}

// ByOID returns the registered algorithm with the given key OID.
func ByOID(oid asn1.ObjectIdentifier) (*Info, bool) {
	mu.RLock()
	defer mu.RUnlock()
	for _, info := range registry {
		if info.OID != nil && info.OID.Equal(oid) {
			return info, true
		}
	}
	return nil, false
}

func infoFor(key any) *Info {
	mu.RLock()
	defer mu.RUnlock()
	for _, info := range registry {
		if info.MarshalPKCS8 == nil && info.MarshalPKIX == nil {
			continue
		}
		pub := key
		if k, ok := key.(interface{ Public() crypto.PublicKey }); ok {
			pub = k.Public()
		}
		if info.Matches != nil && info.Matches(pub) {
			return info
		}
	}
	return nil
}

// MarshalPKCS8 encodes a private key as PKCS#8 DER.
func MarshalPKCS8(priv crypto.PrivateKey) ([]byte, error) {
	if s, ok := priv.(softwareSigner); ok {
		priv = s.Signer
	}
	if info := infoFor(priv); info != nil && info.MarshalPKCS8 != nil {
		return info.MarshalPKCS8(priv)
	}
	return x509.MarshalPKCS8PrivateKey(priv)
}

// ParsePKCS8 decodes a PKCS#8 DER private key of any registered algorithm.
func ParsePKCS8(der []byte) (crypto.PrivateKey, error) {
	oid, err := algorithmOf(der, true)
	if err != nil {
		return nil, err
	}
	if info, ok := ByOID(oid); ok && info.ParsePKCS8 != nil {
		return info.ParsePKCS8(der)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("private key (algorithm %s): %v", oid, err)
	}
	if _, err := Of(mustPublic(key)); err != nil {
		return nil, err
	}
	return key, nil
}

// MarshalPKIX encodes a public key as a SubjectPublicKeyInfo.
func MarshalPKIX(pub crypto.PublicKey) ([]byte, error) {
	if info := infoFor(pub); info != nil && info.MarshalPKIX != nil {
		return info.MarshalPKIX(pub)
	}
	return x509.MarshalPKIXPublicKey(pub)
}

// ParsePKIX decodes a SubjectPublicKeyInfo of any registered algorithm.
func ParsePKIX(der []byte) (crypto.PublicKey, error) {
	oid, err := algorithmOf(der, false)
	if err != nil {
		return nil, err
	}
	if info, ok := ByOID(oid); ok && info.ParsePKIX != nil {
		return info.ParsePKIX(der)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("public key (algorithm %s): %v", oid, err)
	}
	if _, err := Of(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

func mustPublic(priv crypto.PrivateKey) crypto.PublicKey {
	pub, err := PublicKey(priv)
	if err != nil {
		return nil
	}
	return pub
}

// verifyOther is the fallback for key types with no Verify method.
func verifyOther(pub crypto.PublicKey, msg, sig []byte) error {
	if k, ok := pub.(ed25519.PublicKey); ok {
		if !ed25519.Verify(k, msg, sig) {
			return errors.New("ed25519 signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("cannot verify with %T", pub)
}
