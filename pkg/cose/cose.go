// Package cose signs and verifies COSE_Sign1 and COSE_Sign messages
// (RFC 9052) and CBOR Web Tokens (RFC 8392) with any algo.Signer: file keys,
// HSM keys, classical and post-quantum, and hybrid tokens that carry one
// signature per key.
//
// Messages carry the signer's certificate chain in the x5chain header
// (RFC 9360) by default, so that a verifier needs only the CA certificate.
// Verification checks the chain, then every signature, then the token's
// validity period; an error names the part that failed.
package cose

import (
	"errors"
	"time"
)

// CBOR tags (RFC 9052 §2, RFC 8392 §6).
const (
	TagSign1 = 18
	TagSign  = 98
	TagCWT   = 61

	tagEncrypt0     = 16
	tagMac0         = 17
	tagEncrypt      = 96
	tagMac          = 97
	tagSelfDescribe = 55799
)

// Header parameter labels (RFC 9052 §3.1, RFC 9360 §2).
const (
	HeaderAlg         int64 = 1
	HeaderCrit        int64 = 2
	HeaderContentType int64 = 3
	HeaderKID         int64 = 4
	HeaderX5Chain     int64 = 33
)

// CWT claim keys (RFC 8392 §4).
const (
	ClaimIss int64 = 1
	ClaimSub int64 = 2
	ClaimAud int64 = 3
	ClaimExp int64 = 4
	ClaimNbf int64 = 5
	ClaimIat int64 = 6
	ClaimCti int64 = 7
)

// Type is the kind of message.
type Type string

const (
	// TypeSign1 is a COSE_Sign1 message: one signer.
	TypeSign1 Type = "sign1"
	// TypeSign is a COSE_Sign message: one signature per signer.
	TypeSign Type = "sign"
	// TypeCWT is a CBOR Web Token: a claims map signed as COSE_Sign1 (one
	// signer) or COSE_Sign (several, e.g. classical + ML-DSA).
	TypeCWT Type = "cwt"
)

// ParseType turns a user-supplied type name into a Type.
func ParseType(s string) (Type, error) {
	switch t := Type(s); t {
	case TypeSign1, TypeSign, TypeCWT:
		return t, nil
	}
	return "", errors.New(`cose: unknown message type "` + s + `" (want sign1, sign or cwt)`)
}

// Limits on what the parser accepts. COSE arrives from the network and from
// users; nothing legitimate comes close.
const (
	// DefaultMaxSize bounds the encoded message. The largest post-quantum
	// parts (an SLH-DSA-256f signature, ML-DSA-87 certificates) are tens of
	// kilobytes.
	DefaultMaxSize = 4 << 20
	// MaxSigners bounds the signatures of a COSE_Sign message.
	MaxSigners = 8
	// MaxChain bounds the certificates of one x5chain.
	MaxChain = 16
)

// DefaultClockSkew is the tolerance applied to exp and nbf when
// VerifyOptions.ClockSkew is zero.
const DefaultClockSkew = 60 * time.Second

// Error classes. Every error this package returns wraps one of them, so
// callers can tell a forged token from a malformed one with errors.Is.
var (
	ErrMalformed      = errors.New("cose: malformed message")
	ErrUnsupported    = errors.New("cose: unsupported")
	ErrCritical       = errors.New("cose: critical header not understood")
	ErrUntrusted      = errors.New("cose: certificate chain not trusted")
	ErrSignature      = errors.New("cose: signature does not verify")
	ErrExpired        = errors.New("cose: token expired")
	ErrNotYetValid    = errors.New("cose: token not yet valid")
	ErrClaims         = errors.New("cose: claims rejected")
	ErrInvalidRequest = errors.New("cose: invalid sign request")
)
