// Package probs defines ACME problem documents (RFC 8555 §6.7, RFC 7807):
// every error an ACME server returns is one, served as
// application/problem+json with an urn:ietf:params:acme:error:* type.
package probs

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/qpki/qpki/pkg/store"
)

// NS is the namespace of ACME error types.
const NS = "urn:ietf:params:acme:error:"

// Error types, without the namespace: RFC 8555 §6.7, RFC 9773
// (alreadyReplaced) and the ACME profiles extension (invalidProfile).
const (
	TypeAccountDoesNotExist     = "accountDoesNotExist"
	TypeAlreadyReplaced         = "alreadyReplaced"
	TypeAlreadyRevoked          = "alreadyRevoked"
	TypeBadCSR                  = "badCSR"
	TypeBadNonce                = "badNonce"
	TypeBadPublicKey            = "badPublicKey"
	TypeBadRevocationReason     = "badRevocationReason"
	TypeBadSignatureAlgorithm   = "badSignatureAlgorithm"
	TypeCAA                     = "caa"
	TypeCompound                = "compound"
	TypeConnection              = "connection"
	TypeDNS                     = "dns"
	TypeExternalAccountRequired = "externalAccountRequired"
	TypeIncorrectResponse       = "incorrectResponse"
	TypeInvalidContact          = "invalidContact"
	TypeInvalidProfile          = "invalidProfile"
	TypeMalformed               = "malformed"
	TypeOrderNotReady           = "orderNotReady"
	TypeRateLimited             = "rateLimited"
	TypeRejectedIdentifier      = "rejectedIdentifier"
	TypeServerInternal          = "serverInternal"
	TypeTLS                     = "tls"
	TypeUnauthorized            = "unauthorized"
	TypeUnsupportedContact      = "unsupportedContact"
	TypeUnsupportedIdentifier   = "unsupportedIdentifier"
	TypeUserActionRequired      = "userActionRequired"
)

// Problem is a problem document. It is also an error.
type Problem struct {
	Type        string       `json:"type"`
	Detail      string       `json:"detail,omitempty"`
	Status      int          `json:"status,omitempty"`
	Subproblems []Subproblem `json:"subproblems,omitempty"`
	// Algorithms lists the accepted JWS algorithms in a
	// badSignatureAlgorithm problem (RFC 8555 §6.2).
	Algorithms []string `json:"algorithms,omitempty"`
}

// Subproblem is a problem about one identifier (RFC 8555 §6.7.1).
type Subproblem struct {
	Type       string                `json:"type"`
	Detail     string                `json:"detail,omitempty"`
	Identifier *store.ACMEIdentifier `json:"identifier,omitempty"`
}

func (p *Problem) Error() string {
	if p.Detail == "" {
		return p.Type
	}
	return p.Type + ": " + p.Detail
}

// HasType reports whether p has the error type typ (given without
// namespace). (Not Is: errors.Is expects Is(error) bool.)
func (p *Problem) HasType(typ string) bool { return p != nil && p.Type == NS+typ }

// JSON is the problem document's encoding, as orders and challenges keep
// it.
func (p *Problem) JSON() json.RawMessage {
	b, _ := json.Marshal(p)
	return b
}

// Parse decodes a stored problem document.
func Parse(raw json.RawMessage) *Problem {
	if len(raw) == 0 {
		return nil
	}
	p := new(Problem)
	if json.Unmarshal(raw, p) != nil {
		return ServerInternal("unreadable stored error")
	}
	return p
}

// New returns a problem of an error type (without namespace) with an HTTP
// status.
func New(typ string, status int, format string, args ...any) *Problem {
	return &Problem{Type: NS + typ, Detail: fmt.Sprintf(format, args...), Status: status}
}

// With adds per-identifier subproblems.
func (p *Problem) With(subs ...Subproblem) *Problem {
	p.Subproblems = append(p.Subproblems, subs...)
	return p
}

// Sub returns a subproblem about one identifier.
func Sub(typ string, id store.ACMEIdentifier, format string, args ...any) Subproblem {
	return Subproblem{Type: NS + typ, Detail: fmt.Sprintf(format, args...), Identifier: &id}
}

// Subproblem turns a problem into a subproblem about an identifier.
func (p *Problem) Subproblem(id store.ACMEIdentifier) Subproblem {
	return Subproblem{Type: p.Type, Detail: p.Detail, Identifier: &id}
}

// Constructors for common problems, with the HTTP status of each.

func Malformed(f string, a ...any) *Problem {
	return New(TypeMalformed, http.StatusBadRequest, f, a...)
}
func NotFound(f string, a ...any) *Problem { return New(TypeMalformed, http.StatusNotFound, f, a...) }
func Conflict(f string, a ...any) *Problem { return New(TypeMalformed, http.StatusConflict, f, a...) }
func BadNonce(f string, a ...any) *Problem { return New(TypeBadNonce, http.StatusBadRequest, f, a...) }
func Unauthorized(f string, a ...any) *Problem {
	return New(TypeUnauthorized, http.StatusForbidden, f, a...)
}
func ServerInternal(f string, a ...any) *Problem {
	return New(TypeServerInternal, http.StatusInternalServerError, f, a...)
}
func BadCSR(f string, a ...any) *Problem { return New(TypeBadCSR, http.StatusBadRequest, f, a...) }
func RejectedIdentifier(f string, a ...any) *Problem {
	return New(TypeRejectedIdentifier, http.StatusBadRequest, f, a...)
}
func UnsupportedIdentifier(f string, a ...any) *Problem {
	return New(TypeUnsupportedIdentifier, http.StatusBadRequest, f, a...)
}
func OrderNotReady(f string, a ...any) *Problem {
	return New(TypeOrderNotReady, http.StatusForbidden, f, a...)
}
func AccountDoesNotExist(f string, a ...any) *Problem {
	return New(TypeAccountDoesNotExist, http.StatusBadRequest, f, a...)
}
func RateLimited(f string, a ...any) *Problem {
	return New(TypeRateLimited, http.StatusTooManyRequests, f, a...)
}
func BadSignatureAlgorithm(f string, a ...any) *Problem {
	return New(TypeBadSignatureAlgorithm, http.StatusBadRequest, f, a...)
}
func BadPublicKey(f string, a ...any) *Problem {
	return New(TypeBadPublicKey, http.StatusBadRequest, f, a...)
}
func InvalidContact(f string, a ...any) *Problem {
	return New(TypeInvalidContact, http.StatusBadRequest, f, a...)
}
func UnsupportedContact(f string, a ...any) *Problem {
	return New(TypeUnsupportedContact, http.StatusBadRequest, f, a...)
}
func ExternalAccountRequired(f string, a ...any) *Problem {
	return New(TypeExternalAccountRequired, http.StatusBadRequest, f, a...)
}
func AlreadyRevoked(f string, a ...any) *Problem {
	return New(TypeAlreadyRevoked, http.StatusBadRequest, f, a...)
}
func AlreadyReplaced(f string, a ...any) *Problem {
	return New(TypeAlreadyReplaced, http.StatusConflict, f, a...)
}
func BadRevocationReason(f string, a ...any) *Problem {
	return New(TypeBadRevocationReason, http.StatusBadRequest, f, a...)
}
func InvalidProfile(f string, a ...any) *Problem {
	return New(TypeInvalidProfile, http.StatusBadRequest, f, a...)
}
func UserActionRequired(f string, a ...any) *Problem {
	return New(TypeUserActionRequired, http.StatusForbidden, f, a...)
}

// Validation failures (RFC 8555 §8), kept in challenges.

func Connection(f string, a ...any) *Problem {
	return New(TypeConnection, http.StatusBadRequest, f, a...)
}
func DNS(f string, a ...any) *Problem { return New(TypeDNS, http.StatusBadRequest, f, a...) }
func TLS(f string, a ...any) *Problem { return New(TypeTLS, http.StatusBadRequest, f, a...) }
func CAA(f string, a ...any) *Problem { return New(TypeCAA, http.StatusForbidden, f, a...) }
func IncorrectResponse(f string, a ...any) *Problem {
	return New(TypeIncorrectResponse, http.StatusForbidden, f, a...)
}
