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
