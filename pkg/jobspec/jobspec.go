// Package jobspec defines what a signing job carries and what its result
// returns, for each job kind. enroll writes them, workers read them; a job
// holds everything the worker needs except the private key.
package jobspec

import (
	"fmt"
	"time"

	"github.com/qpki/qpki/internal/codec"
)

// Kinds of job.
const (
	KindIssue = "issue"
	KindCRL   = "crl"
	KindCOSE  = "cose"
)

// Issue asks for a certificate.
type Issue struct {
	Profile string         `json:"profile"`
	Vars    map[string]any `json:"vars,omitempty"`
	// CSR (DER) or PublicKey (SubjectPublicKeyInfo DER) gives the subject
	// key; the worker re-checks the CSR's signature.
	CSR       []byte `json:"csr,omitempty"`
	PublicKey []byte `json:"public_key,omitempty"`
	// Serial was reserved by enroll; a re-sign after a crash reuses it.
	Serial string `json:"serial"`
}

// IssueResult is the certificate a worker signed.
type IssueResult struct {
	DER       []byte `json:"der"`
	CAVersion string `json:"ca_version"`
}

// CRL asks for a CRL signed by a CA version's key.
type CRL struct {
	Version  string        `json:"version,omitempty"`
	Validity time.Duration `json:"validity"`
	// Entries and Number are decided by enroll from the store, so the
	// worker needs no access to it.
	Number  string     `json:"number"`
	Entries []CRLEntry `json:"entries"`
	// ThisUpdate is fixed by enroll so that a re-sign is the same CRL.
	ThisUpdate time.Time `json:"this_update"`
	// Shard, for a partitioned CA's shard CRL, is its number; IDP its URL,
	// which the CRL names in a critical issuingDistributionPoint.
	Shard *int   `json:"shard,omitempty"`
	IDP   string `json:"idp,omitempty"`
}

// CRLEntry is one revoked certificate.
type CRLEntry struct {
	Serial string    `json:"serial"`
	Time   time.Time `json:"time"`
	Reason int       `json:"reason"`
}

// CRLResult is a signed CRL.
type CRLResult struct {
	DER     []byte `json:"der"`
	Version string `json:"version"`
}

// Encode marshals a payload: a CBOR map under the JSON field names.
func Encode(v any) ([]byte, error) { return codec.Marshal(v) }

// Decode unmarshals a payload written by Encode, or the JSON object an
// earlier version wrote (a job still queued, or kept in the store, across
// an upgrade).
func Decode(data []byte, v any) error {
	if err := codec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("malformed job payload: %v", err)
	}
	return nil
}

// KindOCSP asks for OCSP responses (package ocspx) about certificates of
// one CA version, signed by the CA key or its delegated responder.
const KindOCSP = "ocsp"

// MaxOCSPEntries bounds one OCSP job: a chunk of certificates small
// enough that its responses, even ML-DSA-87 ones, stay well within the
// queue's message limit.
const MaxOCSPEntries = 256

// OCSP certificate statuses in a job.
const (
	OCSPGood      = "good"
	OCSPRevoked   = "revoked"
	OCSPNotIssued = "not-issued" // answered in the RFC 6960 §2.2 form
)

// OCSP asks for OCSP responses. ThisUpdate and Validity are fixed by the
// front-end, so that a re-sign after a crash says the same.
type OCSP struct {
	// Version is the CA version whose certificate is the issuer in the
	// responses' CertIDs.
	Version string `json:"version"`
	// Delegated signs with the CA dir's delegated responder (its
	// certificate goes into each response) instead of the CA key.
	Delegated  bool          `json:"delegated,omitempty"`
	Hash       string        `json:"hash"` // CertID hash: sha1, sha256, ...
	ThisUpdate time.Time     `json:"this_update"`
	Validity   time.Duration `json:"validity"`
	Entries    []OCSPEntry   `json:"entries"`
	// Together answers all entries in one response (a request with
	// several CertIDs), else each in its own.
	Together bool `json:"together,omitempty"`
	// Nonce is echoed in the response (RFC 8954), with Together.
	Nonce []byte `json:"nonce,omitempty"`
}

// OCSPEntry is one certificate's status, decided from the store.
type OCSPEntry struct {
	Serial    string    `json:"serial"`
	Status    string    `json:"status"`
	RevokedAt time.Time `json:"revoked_at"`
	Reason    int       `json:"reason,omitempty"`
}

// OCSPResult holds the signed OCSPResponses, one per entry (or one for
// all, with Together), in the job's order.
type OCSPResult struct {
	Responses [][]byte `json:"responses"`
}

// Check refuses a job the worker must not sign.
func (o *OCSP) Check() error {
	switch {
	case len(o.Entries) == 0 || len(o.Entries) > MaxOCSPEntries:
		return fmt.Errorf("an OCSP job holds 1 to %d entries, not %d", MaxOCSPEntries, len(o.Entries))
	case o.ThisUpdate.IsZero() || o.Validity <= 0 || o.Validity > 366*24*time.Hour:
		return fmt.Errorf("an OCSP job needs a thisUpdate and a validity of up to a year")
	case o.Nonce != nil && (!o.Together || len(o.Nonce) > 64):
		return fmt.Errorf("an OCSP nonce goes with one response of up to 64 bytes")
	}
	for _, e := range o.Entries {
		switch e.Status {
		case OCSPGood, OCSPNotIssued:
		case OCSPRevoked:
			if e.RevokedAt.IsZero() || e.Reason < 0 || e.Reason > 10 || e.Reason == 7 {
				return fmt.Errorf("OCSP entry %s: a revocation needs its time and a CRL reason", e.Serial)
			}
		default:
			return fmt.Errorf("OCSP entry %s: unknown status %q", e.Serial, e.Status)
		}
	}
	return nil
}
