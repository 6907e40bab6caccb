// Package ocspx encodes and parses OCSP (RFC 6960) messages for every
// algorithm qpki signs with: requests are parsed with size limits,
// responses are built as ResponseData and signed over its DER by any
// algo.Signer — ECDSA, RSA, Ed25519, ML-DSA, SLH-DSA or composite —
// which golang.org/x/crypto/ocsp cannot do. It holds no keys and reaches
// no network: the worker signs with it, the ocsp front-end parses with it.
package ocspx

import (
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxRequest bounds an OCSP request, on the wire and once decoded from a
// GET URL.
const MaxRequest = 64 << 10

// MaxCertIDs bounds the CertIDs of one request: RFC 5019 clients send
// one; a handful answered together is plenty.
const MaxCertIDs = 16

// MaxNonce is the longest nonce a responder must accept (RFC 8954 §2.1).
const MaxNonce = 32

// Object identifiers (RFC 6960 §4.4, RFC 8954).
var (
	OIDBasic          = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	OIDNonce          = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	OIDNoCheck        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}
	OIDExtendedRevoke = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 9}
	OIDOCSPSigning    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 9}

	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// ResponseStatus is OCSPResponseStatus.
type ResponseStatus int

// Response statuses (RFC 6960 §4.2.1; 4 is not used).
const (
	Successful       ResponseStatus = 0
	MalformedRequest ResponseStatus = 1
	InternalError    ResponseStatus = 2
	TryLater         ResponseStatus = 3
	SigRequired      ResponseStatus = 5
	Unauthorized     ResponseStatus = 6
)

func (s ResponseStatus) String() string {
	switch s {
	case Successful:
		return "successful"
	case MalformedRequest:
		return "malformedRequest"
	case InternalError:
		return "internalError"
	case TryLater:
		return "tryLater"
	case SigRequired:
		return "sigRequired"
	case Unauthorized:
		return "unauthorized"
	}
	return fmt.Sprintf("status-%d", int(s))
}

// ErrorResponse is the unsigned OCSPResponse for a status other than
// successful: SEQUENCE { ENUMERATED status }.
func ErrorResponse(s ResponseStatus) []byte {
	return []byte{0x30, 0x03, 0x0a, 0x01, byte(s)}
}

// Hash is a CertID hash algorithm.
type Hash string

// CertID hash algorithms: SHA-1, what RFC 5019 clients send, and the SHA-2
// family.
const (
	SHA1   Hash = "sha1"
	SHA256 Hash = "sha256"
	SHA384 Hash = "sha384"
	SHA512 Hash = "sha512"
)

// Hashes lists the CertID hash algorithms a responder matches.
var Hashes = []Hash{SHA1, SHA256, SHA384, SHA512}

// ErrUnknownHash is a CertID under a hash algorithm this package does not
// know.
var ErrUnknownHash = errors.New("ocspx: unknown CertID hash algorithm")

func (h Hash) oid() asn1.ObjectIdentifier {
	switch h {
	case SHA1:
		return oidSHA1
	case SHA256:
		return oidSHA256
	case SHA384:
		return oidSHA384
	case SHA512:
		return oidSHA512
	}
	return nil
}

func (h Hash) new() hash.Hash {
	switch h {
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SHA384:
		return sha512.New384()
	case SHA512:
		return sha512.New()
	}
	return nil
}

// Crypto returns the crypto.Hash of h.
func (h Hash) Crypto() crypto.Hash {
	switch h {
	case SHA1:
		return crypto.SHA1
	case SHA256:
		return crypto.SHA256
	case SHA384:
		return crypto.SHA384
	case SHA512:
		return crypto.SHA512
	}
	return 0
}

// Valid reports whether h is a known hash.
func (h Hash) Valid() bool { return h.oid() != nil }

func hashByOID(oid asn1.ObjectIdentifier) Hash {
	for _, h := range Hashes {
		if oid.Equal(h.oid()) {
			return h
		}
	}
	return ""
}

// IssuerHashes are the issuerNameHash and issuerKeyHash of a CA
// certificate under one hash algorithm.
type IssuerHashes struct {
	Hash     Hash
	NameHash []byte
	KeyHash  []byte
}

// HashIssuer computes an issuer's CertID hashes: of the DER of its
// subject name, and of the value of its subjectPublicKey BIT STRING.
func HashIssuer(issuer *x509.Certificate, h Hash) (IssuerHashes, error) {
	if !h.Valid() {
		return IssuerHashes{}, ErrUnknownHash
	}
	key, err := subjectPublicKeyBits(issuer.RawSubjectPublicKeyInfo)
	if err != nil {
		return IssuerHashes{}, err
	}
	nh := h.new()
	nh.Write(issuer.RawSubject)
	kh := h.new()
	kh.Write(key)
	return IssuerHashes{Hash: h, NameHash: nh.Sum(nil), KeyHash: kh.Sum(nil)}, nil
}

// KeyHashSHA1 is the SHA-1 of a certificate's subjectPublicKey bits, the
// ResponderID byKey of a responder with that certificate.
func KeyHashSHA1(c *x509.Certificate) ([]byte, error) {
	key, err := subjectPublicKeyBits(c.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum(key)
	return sum[:], nil
}

func subjectPublicKeyBits(spki []byte) ([]byte, error) {
	s := cryptobyte.String(spki)
	var seq cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.SkipASN1(cbasn1.SEQUENCE) || !seq.ReadASN1BitString(&bits) {
		return nil, errors.New("ocspx: malformed subject public key info")
	}
	return bits.Bytes, nil
}
