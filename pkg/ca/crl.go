package ca

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// RFC 5280 CRLReason names, in the spelling operators know from OpenSSL.
var reasons = []string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
	4: "superseded", 5: "cessationOfOperation", 6: "certificateHold",
	8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// ParseReason accepts a reason name (any case) or its number.
func ParseReason(s string) (int, error) {
	for i, r := range reasons {
		if r != "" && (strings.EqualFold(r, s) || fmt.Sprint(i) == s) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown revocation reason %q (known: %s)", s, strings.Join(reasonList(), ", "))
}

func reasonList() []string {
	var out []string
	for _, r := range reasons {
		if r != "" {
			out = append(out, r)
		}
	}
	return out
}

// ReasonName prints a reason code.
func ReasonName(code int) string {
	if code >= 0 && code < len(reasons) && reasons[code] != "" {
		return reasons[code]
	}
	return fmt.Sprintf("reason-%d", code)
}

// Revoke marks an issued certificate revoked.
func (c *CA) Revoke(serial string, reason int, t time.Time) (*store.Cert, error) {
	n, err := store.ParseSerial(serial)
	if err != nil {
		return nil, err
	}
	if reason == 7 || reason < 0 || reason > 10 {
		return nil, fmt.Errorf("invalid revocation reason %d", reason)
	}
	st, err := c.Store()
	if err != nil {
		return nil, err
	}
	rec, err := st.Cert(n)
	if err != nil {
		return nil, err
	}
	if rec.Revocation != nil {
		return nil, fmt.Errorf("certificate %s: %w", rec.Serial, store.ErrRevoked)
	}
	if err := c.Audit(audit.EventRevoke, map[string]any{"serial": rec.Serial, "subject": rec.Subject, "reason": ReasonName(reason)}); err != nil {
		return nil, err
	}
	rec, err = st.Revoke(n, store.Revocation{Time: now(t).UTC().Truncate(time.Second), Reason: reason})
	if err == nil && c.OnRevoke != nil {
		c.OnRevoke(rec)
	}
	return rec, err
}

// CRLOptions controls GenerateCRL.
type CRLOptions struct {
	// Version whose key signs; empty means the active version. A CRL lists
	// the revoked certificates that this version's key issued.
	Version  string
	Validity time.Duration
	Keys     KeyOptions
	Now      time.Time
}

// CRLRequest decides what a CRL lists: the revoked certificates that a
// version's key issued, and the next CRL number. Whoever holds the store
// (the CLI or the server's enroll) calls it; the signer needs no store.
func (c *CA) CRLRequest(o CRLOptions) (*jobspec.CRL, error) {
	name, _, err := c.Version(o.Version)
	if err != nil {
		return nil, err
	}
	if o.Validity <= 0 {
		o.Validity = 7 * 24 * time.Hour
	}
	t := now(o.Now).UTC().Truncate(time.Second)
	st, err := c.Store()
	if err != nil {
		return nil, err
	}
	revoked, err := st.List(store.Filter{Status: "revoked", Now: t})
	if err != nil {
		return nil, err
	}
	req := &jobspec.CRL{Version: name, Validity: o.Validity, ThisUpdate: t, Entries: []jobspec.CRLEntry{}}
	for _, rc := range revoked {
		if rc.CAVersion != name {
			continue
		}
		req.Entries = append(req.Entries, jobspec.CRLEntry{Serial: rc.Serial, Time: rc.Revocation.Time, Reason: rc.Revocation.Reason})
	}
	n, err := st.NextCRLNumber()
	if err != nil {
		return nil, err
	}
	req.Number = n.Text(16)
	return req, nil
}

// SignCRL signs a CRL request with the version's issuer.
func SignCRL(req *jobspec.CRL, iss x509x.Issuer) ([]byte, error) {
	number, ok := new(big.Int).SetString(req.Number, 16)
	if !ok {
		return nil, fmt.Errorf("invalid CRL number %q", req.Number)
	}
	tmpl := &x509.RevocationList{Number: number, ThisUpdate: req.ThisUpdate, NextUpdate: req.ThisUpdate.Add(req.Validity)}
	for _, e := range req.Entries {
		serial, err := store.ParseSerial(e.Serial)
		if err != nil {
			return nil, err
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: serial, RevocationTime: e.Time, ReasonCode: e.Reason,
		})
	}
	der, err := x509x.CreateRevocationList(rand.Reader, tmpl, iss)
	if err != nil {
		return nil, fmt.Errorf("signing CRL: %w", err)
	}
	return der, nil
}

// StoreCRL writes a signed CRL into the CA dir: crl/ca.crl (PEM) and
// crl/ca.crl.der for the active version, crl/ca-vN.crl(.der) for another.
func (c *CA) StoreCRL(version string, der []byte) error {
	base := "ca"
	if version != "" && version != c.Meta.Active {
		base = "ca-" + version
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, CRLDir), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(c.Dir, CRLDir, base+".crl.der"), der, 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.Dir, CRLDir, base+".crl"), EncodeCRL(der), 0o644)
}

// GenerateCRL signs a CRL v2 (CRL number, AKI, per-entry reason codes)
// in process and stores it in the CA dir.
func (c *CA) GenerateCRL(o CRLOptions) ([]byte, error) {
	name, _, err := c.Version(o.Version)
	if err != nil {
		return nil, err
	}
	iss, closer, err := c.Issuer(name, o.Keys)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	o.Version = name
	req, err := c.CRLRequest(o)
	if err != nil {
		return nil, err
	}
	der, err := SignCRL(req, iss)
	if err != nil {
		return nil, err
	}
	if err := c.Audit(audit.EventCRL, CRLFields(req)); err != nil {
		return nil, err
	}
	return der, c.StoreCRL(name, der)
}

// CRLFields are the audit fields of a signed CRL.
func CRLFields(req *jobspec.CRL) map[string]any {
	return map[string]any{"version": req.Version, "number": req.Number, "entries": len(req.Entries),
		"this_update": req.ThisUpdate, "next_update": req.ThisUpdate.Add(req.Validity)}
}

// EncodeCRL returns a CRL as PEM.
func EncodeCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}
