package cmp

import (
	"crypto"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"

	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// Bounds on a MAC's cost, which the client chooses: too few iterations
// weaken the secret, too many make each request a denial of service.
const (
	minIterations = 100
	maxIterations = 100000
)

// pbmParameter is PasswordBasedMac's parameter (RFC 9810 §5.1.3.1).
type pbmParameter struct {
	Salt           []byte
	OWF            pkix.AlgorithmIdentifier
	IterationCount int
	MAC            pkix.AlgorithmIdentifier
}

// pbmac1Params and pbkdf2Params are PBMAC1's (RFC 8018, RFC 9481 §6.1.1).
type pbmac1Params struct {
	KeyDerivationFunc pkix.AlgorithmIdentifier
	MessageAuthScheme pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt           []byte
	IterationCount int
	KeyLength      int                      `asn1:"optional"`
	PRF            pkix.AlgorithmIdentifier `asn1:"optional"`
}

var errMACAlg = errors.New("cmp: unsupported MAC algorithm")

func digestOf(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	switch {
	case oid.Equal(OIDSHA1):
		return crypto.SHA1, true
	case oid.Equal(OIDSHA256):
		return crypto.SHA256, true
	case oid.Equal(OIDSHA384):
		return crypto.SHA384, true
	case oid.Equal(OIDSHA512):
		return crypto.SHA512, true
	}
	return 0, false
}

func hmacOf(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	switch {
	case oid.Equal(OIDHMACSHA1), oid.Equal(OIDHMACWithSHA1):
		return crypto.SHA1, true
	case oid.Equal(OIDHMACWithSHA256):
		return crypto.SHA256, true
	case oid.Equal(OIDHMACWithSHA384):
		return crypto.SHA384, true
	case oid.Equal(OIDHMACWithSHA512):
		return crypto.SHA512, true
	}
	return 0, false
}

// IsMAC reports whether alg is a MAC protection this package knows.
func IsMAC(alg pkix.AlgorithmIdentifier) bool {
	return alg.Algorithm.Equal(OIDPasswordBasedMAC) || alg.Algorithm.Equal(OIDPBMAC1)
}

// computeMAC is the MAC of data under secret with the parameters of alg.
func computeMAC(alg pkix.AlgorithmIdentifier, secret, data []byte) ([]byte, error) {
	switch {
	case alg.Algorithm.Equal(OIDPasswordBasedMAC):
		var p pbmParameter
		if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil || len(rest) > 0 {
			return nil, fmt.Errorf("%w: PBMParameter", errMACAlg)
		}
		if p.IterationCount < minIterations || p.IterationCount > maxIterations || len(p.Salt) == 0 || len(p.Salt) > 128 {
			return nil, fmt.Errorf("%w: iteration count %d or salt length %d out of bounds", errMACAlg, p.IterationCount, len(p.Salt))
		}
		owf, ok := digestOf(p.OWF.Algorithm)
		mh, ok2 := hmacOf(p.MAC.Algorithm)
		if !ok || !ok2 {
			return nil, errMACAlg
		}
		h := owf.New()
		h.Write(secret)
		h.Write(p.Salt)
		key := h.Sum(nil)
		for i := 1; i < p.IterationCount; i++ {
			h.Reset()
			h.Write(key)
			key = h.Sum(key[:0])
		}
		return hmacSum(mh.New, key, data), nil
	case alg.Algorithm.Equal(OIDPBMAC1):
		var p pbmac1Params
		if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil || len(rest) > 0 || !p.KeyDerivationFunc.Algorithm.Equal(OIDPBKDF2) {
			return nil, fmt.Errorf("%w: PBMAC1 parameters", errMACAlg)
		}
		var kp pbkdf2Params
		if rest, err := asn1.Unmarshal(p.KeyDerivationFunc.Parameters.FullBytes, &kp); err != nil || len(rest) > 0 {
			return nil, fmt.Errorf("%w: PBKDF2 parameters", errMACAlg)
		}
		if kp.IterationCount < minIterations || kp.IterationCount > maxIterations || len(kp.Salt) == 0 || len(kp.Salt) > 128 || kp.KeyLength < 0 || kp.KeyLength > 64 {
			return nil, fmt.Errorf("%w: PBKDF2 bounds", errMACAlg)
		}
		prf := crypto.SHA1
		if len(kp.PRF.Algorithm) > 0 {
			var ok bool
			if prf, ok = hmacOf(kp.PRF.Algorithm); !ok {
				return nil, errMACAlg
			}
		}
		mh, ok := hmacOf(p.MessageAuthScheme.Algorithm)
		if !ok {
			return nil, errMACAlg
		}
		n := kp.KeyLength
		if n == 0 {
			n = mh.Size()
		}
		key, err := pbkdf2.Key(prf.New, string(secret), kp.Salt, kp.IterationCount, n)
		if err != nil {
			return nil, err
		}
		return hmacSum(mh.New, key, data), nil
	}
	return nil, errMACAlg
}

func hmacSum(h func() hash.Hash, key, data []byte) []byte {
	m := hmac.New(h, key)
	m.Write(data)
	return m.Sum(nil)
}

// freshMACAlg is the response's MAC algorithm: the request's, with a new
// salt.
func freshMACAlg(req pkix.AlgorithmIdentifier) (pkix.AlgorithmIdentifier, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return pkix.AlgorithmIdentifier{}, err
	}
	switch {
	case req.Algorithm.Equal(OIDPasswordBasedMAC):
		var p pbmParameter
		if _, err := asn1.Unmarshal(req.Parameters.FullBytes, &p); err != nil {
			return pkix.AlgorithmIdentifier{}, err
		}
		p.Salt = salt
		der, err := asn1.Marshal(p)
		if err != nil {
			return pkix.AlgorithmIdentifier{}, err
		}
		return pkix.AlgorithmIdentifier{Algorithm: OIDPasswordBasedMAC, Parameters: asn1.RawValue{FullBytes: der}}, nil
	case req.Algorithm.Equal(OIDPBMAC1):
		var p pbmac1Params
		if _, err := asn1.Unmarshal(req.Parameters.FullBytes, &p); err != nil {
			return pkix.AlgorithmIdentifier{}, err
		}
		var kp pbkdf2Params
		if _, err := asn1.Unmarshal(p.KeyDerivationFunc.Parameters.FullBytes, &kp); err != nil {
			return pkix.AlgorithmIdentifier{}, err
		}
		kp.Salt = salt
		kder, err := asn1.Marshal(kp)
		if err != nil {
			return pkix.AlgorithmIdentifier{}, err
		}
		p.KeyDerivationFunc.Parameters = asn1.RawValue{FullBytes: kder}
		der, err := asn1.Marshal(p)
		if err != nil {
			return pkix.AlgorithmIdentifier{}, err
		}
		return pkix.AlgorithmIdentifier{Algorithm: OIDPBMAC1, Parameters: asn1.RawValue{FullBytes: der}}, nil
	}
	return pkix.AlgorithmIdentifier{}, errMACAlg
}

// NewPBMAlg is a PasswordBasedMac algorithm as OpenSSL 3.0 makes it
// (SHA-256 one-way function, HMAC-SHA1, 500 iterations), for clients.
func NewPBMAlg() pkix.AlgorithmIdentifier {
	p := pbmParameter{Salt: make([]byte, 16), OWF: pkix.AlgorithmIdentifier{Algorithm: OIDSHA256}, IterationCount: 500,
		MAC: pkix.AlgorithmIdentifier{Algorithm: OIDHMACSHA1}}
	rand.Read(p.Salt)
	der, _ := asn1.Marshal(p)
	return pkix.AlgorithmIdentifier{Algorithm: OIDPasswordBasedMAC, Parameters: asn1.RawValue{FullBytes: der}}
}

// NewPBMAC1Alg is a PBMAC1 algorithm (PBKDF2 with HMAC-SHA256, 10000
// iterations, HMAC-SHA256), for clients.
func NewPBMAC1Alg() pkix.AlgorithmIdentifier {
	kp := pbkdf2Params{Salt: make([]byte, 16), IterationCount: 10000, KeyLength: 32, PRF: pkix.AlgorithmIdentifier{Algorithm: OIDHMACWithSHA256, Parameters: asn1.NullRawValue}}
	rand.Read(kp.Salt)
	kder, _ := asn1.Marshal(kp)
	der, _ := asn1.Marshal(pbmac1Params{KeyDerivationFunc: pkix.AlgorithmIdentifier{Algorithm: OIDPBKDF2, Parameters: asn1.RawValue{FullBytes: kder}},
		MessageAuthScheme: pkix.AlgorithmIdentifier{Algorithm: OIDHMACWithSHA256, Parameters: asn1.NullRawValue}})
	return pkix.AlgorithmIdentifier{Algorithm: OIDPBMAC1, Parameters: asn1.RawValue{FullBytes: der}}
}

// verifyMAC checks a MAC-protected message under secret.
func verifyMAC(m *Message, secret []byte) error {
	want, err := computeMAC(m.Header.ProtectionAlg, secret, protectedPart(m.RawHeader, m.Body.FullBytes))
	if err != nil {
		return err
	}
	if m.Protection.BitLength != len(want)*8 || !hmac.Equal(m.Protection.Bytes, want) {
		return errors.New("cmp: the MAC does not verify")
	}
	return nil
}
