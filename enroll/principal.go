package enroll

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"

	"github.com/qpki/qpki/pkg/store"
)

// Frontend is the kind of front-end a request came through.
type Frontend string

// The front-ends. Serve is the server's own listener certificate.
const (
	FrontendACME  Frontend = "acme"
	FrontendEST   Frontend = "est"
	FrontendSCEP  Frontend = "scep"
	FrontendCMP   Frontend = "cmp"
	FrontendCLI   Frontend = "cli"
	FrontendBatch Frontend = "batch"
	FrontendServe Frontend = "serve"
)

// Valid reports whether f is one of the known front-ends.
func (f Frontend) Valid() bool {
	switch f {
	case FrontendACME, FrontendEST, FrontendSCEP, FrontendCMP, FrontendCLI, FrontendBatch, FrontendServe:
		return true
	}
	return false
}

// Principal is who asks for a certificate: the front-end, the label or
// account it asked under, and who authenticated. Every front-end passes
// one in Request; enroll checks the request's names against its Names and
// records the principal (Origin) with the job and the certificate.
type Principal struct {
	Frontend Frontend
	// Label is the EST, SCEP or CMP label ("" for the unlabelled
	// endpoints).
	Label string
	// Account is the ACME account id.
	Account string
	// User is the HTTP Basic user, or the operator of the CLI or batch.
	User string
	// ClientCert is the TLS client certificate that authenticated the
	// caller, when one did.
	ClientCert *x509.Certificate
	// Names is what this principal may be issued: the label's policy,
	// joined with its user's grants (NamePolicy.Join). Nil grants nothing,
	// so a request for a certificate is refused.
	Names *NamePolicy
}

// Operator is the principal of a local operator (the CLI, batch, serve's
// own certificate), who holds the CA directory and so may issue any name
// the profile allows.
func Operator(f Frontend, user string) Principal {
	return Principal{Frontend: f, User: user, Names: AnyName()}
}

// ID names who authenticated, as Origin.Principal records it:
// "user:NAME" (a password, even next to a client certificate),
// "cert:SHA256-of-the-client-certificate", or "".
func (p Principal) ID() string {
	switch {
	case p.User != "":
		return "user:" + p.User
	case p.ClientCert != nil:
		sum := sha256.Sum256(p.ClientCert.Raw)
		return "cert:" + hex.EncodeToString(sum[:])
	}
	return ""
}

// Origin is the principal as the store records it.
func (p Principal) Origin() *store.Origin {
	return &store.Origin{Frontend: string(p.Frontend), Label: p.Label, Account: p.Account, Principal: p.ID()}
}
