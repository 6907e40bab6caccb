package cose

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/qpki/qpki/pkg/x509x"
)

// Description is what Info prints, as data: `qpki cose info --json`.
type Description struct {
	Type        string                 `json:"type"` // "COSE_Sign1", "COSE_Sign" or "CWT"
	Structure   string                 `json:"structure"`
	Tagged      bool                   `json:"tagged"`
	Size        int                    `json:"size"`
	Detached    bool                   `json:"detached,omitempty"`
	PayloadSize int                    `json:"payload_size"`
	Protected   map[string]any         `json:"protected,omitempty"`   // COSE_Sign body headers
	Unprotected map[string]any         `json:"unprotected,omitempty"` // COSE_Sign body headers
	Claims      *Claims                `json:"claims,omitempty"`
	ClaimsError string                 `json:"claims_error,omitempty"`
	Signatures  []SignatureDescription `json:"signatures"`
}

// SignatureDescription describes one signature, not verified.
type SignatureDescription struct {
	Alg         string                   `json:"alg"` // "" when the protected header names none
	AlgID       int64                    `json:"alg_id,omitempty"`
	Size        int                      `json:"size"`
	KID         string                   `json:"kid,omitempty"` // hex
	Protected   map[string]any           `json:"protected,omitempty"`
	Unprotected map[string]any           `json:"unprotected,omitempty"`
	Chain       []CertificateDescription `json:"x5chain,omitempty"`
}

// CertificateDescription names a certificate of an x5chain header.
type CertificateDescription struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Key         string    `json:"key"`
	Fingerprint string    `json:"fingerprint_sha256"`
}

// Describe decodes a message, without verifying it, into a Description.
func Describe(data []byte) (*Description, error) {
	m, err := parse(data, DefaultMaxSize, false)
	if err != nil {
		return nil, err
	}
	structure := map[Type]string{TypeSign1: "COSE_Sign1", TypeSign: "COSE_Sign"}[m.Structure]
	d := &Description{Type: structure, Structure: structure, Tagged: m.Tagged, Size: len(data),
		Detached: m.Detached, PayloadSize: len(m.Payload), Signatures: []SignatureDescription{}}
	if m.Type == TypeCWT {
		d.Type = "CWT"
		if m.claimsErr != nil {
			d.ClaimsError = m.claimsErr.Error()
		} else {
			d.Claims = m.Claims
		}
	}
	if m.Structure == TypeSign {
		d.Protected, d.Unprotected = headerMap(&m.Protected), headerMap(&m.Unprotected)
	}
	for i := range m.Signatures {
		s := &m.Signatures[i]
		sd := SignatureDescription{Size: len(s.Value), Protected: headerMap(&s.Protected), Unprotected: headerMap(&s.Unprotected)}
		if s.Alg() != 0 {
			sd.Alg, sd.AlgID = s.Alg().String(), int64(s.Alg())
		}
		if kid := s.KID(); kid != nil {
			sd.KID = hex.EncodeToString(kid)
		}
		for _, c := range s.X5Chain() {
			key := "unknown"
			if a, err := x509x.KeyAlgorithm(c); err == nil {
				key = string(a)
			}
			fp := sha256.Sum256(c.Raw)
			sd.Chain = append(sd.Chain, CertificateDescription{Subject: c.Subject.String(), Issuer: c.Issuer.String(),
				Serial: c.SerialNumber.Text(16), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Key: key,
				Fingerprint: hex.EncodeToString(fp[:])})
		}
		d.Signatures = append(d.Signatures, sd)
	}
	return d, nil
}

// headerMap gives a header's parameters by name (or label), with byte
// strings in hex; nil for an empty header.
func headerMap(h *Header) map[string]any {
	if h.Empty() {
		return nil
	}
	out := map[string]any{}
	if h.Alg != 0 {
		out["alg"] = h.Alg.String()
	}
	if h.Crit != nil {
		out["crit"] = h.Crit
	}
	if h.ContentType != nil {
		out["content_type"] = h.ContentType
	}
	if h.KID != nil {
		out["kid"] = hex.EncodeToString(h.KID)
	}
	if h.X5Chain != nil {
		out["x5chain"] = len(h.X5Chain)
	}
	for l, v := range h.Other {
		switch x := v.(type) {
		case []byte:
			v = hex.EncodeToString(x)
		case string, int64, uint64, bool, float64:
		default:
			v = valueString(v) // CBOR maps and arrays have no JSON form
		}
		out[fmt.Sprint(l)] = v
	}
	return out
}
