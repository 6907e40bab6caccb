// Package store keeps a CA's issued certificates, serial reservations,
// revocations and counters. The embedded implementation is a bbolt file
// (<ca-dir>/ca.db); a clustered one can live in JetStream key-value
// buckets behind the same interface.
package store

import (
	"errors"
	"math/big"
	"strings"
	"time"
)

// Errors callers test for.
var (
	ErrNotFound      = errors.New("not found")
	ErrSerialInUse   = errors.New("serial number already in use")
	ErrAlreadyExists = errors.New("already exists")
	ErrLocked        = errors.New("the CA store is locked by another process (is `qpki serve` running for this CA?)")
	ErrRevoked       = errors.New("certificate already revoked")
)

// Cert is the record of one issued certificate.
type Cert struct {
	Serial      string      `json:"serial"` // lowercase hex, no colons
	Subject     string      `json:"subject"`
	Names       []string    `json:"names,omitempty"`
	Profile     string      `json:"profile"`
	CAVersion   string      `json:"ca_version"`
	Algorithm   string      `json:"algorithm"`
	NotBefore   time.Time   `json:"not_before"`
	NotAfter    time.Time   `json:"not_after"`
	Issued      time.Time   `json:"issued"`
	Fingerprint string      `json:"fingerprint_sha256"`
	JobID       string      `json:"job_id,omitempty"`
	DER         []byte      `json:"der"`
	Revocation  *Revocation `json:"revocation,omitempty"`
	// Origin is who obtained the certificate, copied from its job when it
	// is recorded; records written before qpki kept it have none.
	Origin *Origin `json:"origin,omitempty"`
	// Shard is the CRL shard the certificate names in its
	// crlDistributionPoints (fixed at issuance); nil when the CA was not
	// partitioned then.
	Shard *int `json:"shard,omitempty"`
}

// Origin records through which front-end, under which label or account,
// and for which principal a certificate was issued: a renewal is allowed
// only through the same ones.
type Origin struct {
	// Frontend is the front-end's kind (acme, est, scep, cmp, cli, batch,
	// serve).
	Frontend string `json:"frontend"`
	// Label is the EST, SCEP or CMP label ("" for the unlabelled
	// endpoints).
	Label string `json:"label,omitempty"`
	// Account is the ACME account id.
	Account string `json:"account,omitempty"`
	// Principal names who authenticated: "user:NAME" for HTTP Basic,
	// "cert:SHA256" for a client certificate, the operator for the CLI.
	Principal string `json:"principal,omitempty"`
}

// Revocation records when and why a certificate was revoked.
type Revocation struct {
	Time   time.Time `json:"time"`
	Reason int       `json:"reason"` // RFC 5280 CRLReason
}

// Status is the certificate's state at a given time.
func (c *Cert) Status(now time.Time) string {
	switch {
	case c.Revocation != nil:
		return "revoked"
	case now.After(c.NotAfter):
		return "expired"
	}
	return "valid"
}

// Filter selects certificates in List.
type Filter struct {
	Status string // "", "valid", "revoked", "expired"
	Now    time.Time
}

// Store is what the CA and the pipeline need from storage.
type Store interface {
	// Reserve marks a serial as taken by a job before it is signed; the
	// same job may reserve the same serial again (a retry), anyone else
	// gets ErrSerialInUse.
	Reserve(serial *big.Int, jobID string) error
	// Reservation returns the job that reserved a serial.
	Reservation(serial *big.Int) (string, error)
	// PutCert records an issued certificate. The serial must be free or
	// reserved by c.JobID; recording the very same certificate twice is a
	// no-op, a different one under the same serial is ErrSerialInUse.
	PutCert(c *Cert) error
	// Cert returns one certificate by serial.
	Cert(serial *big.Int) (*Cert, error)
	// List returns the certificates that match f, oldest first.
	List(f Filter) ([]*Cert, error)
	// Revoke marks a certificate revoked.
	Revoke(serial *big.Int, r Revocation) (*Cert, error)
	// NextCRLNumber increments and returns the CRL number.
	NextCRLNumber() (*big.Int, error)
	Close() error
}

// FormatSerial prints a serial as lowercase hex.
func FormatSerial(s *big.Int) string { return s.Text(16) }

// ParseSerial accepts hex in any case, with or without colons or a 0x
// prefix.
func ParseSerial(s string) (*big.Int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimPrefix(t, "0x")
	t = strings.ReplaceAll(t, ":", "")
	if t == "" || len(t) > 64 {
		return nil, errors.New("invalid serial number " + quote(s))
	}
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() < 0 {
		return nil, errors.New("invalid serial number " + quote(s) + ": want hex")
	}
	return n, nil
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + s + `"`
}
