package ca

import (
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
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
	// Shard, for a partitioned CA, asks for that shard's CRL instead of
	// the full one.
	Shard *int
}

// CRLRequest decides what a CRL lists: the revoked certificates that a
// version's key issued, and the next CRL number. Whoever holds the store
// (the CLI or the server's enroll) calls it; the signer needs no store.
func (c *CA) CRLRequest(o CRLOptions) (*jobspec.CRL, error) {
	req, err := c.crlHeader(o)
	if err != nil {
		return nil, err
	}
	req.Entries = []jobspec.CRLEntry{}
	err = c.eachCRLEntry(req, func(r store.Revoked) error {
		req.Entries = append(req.Entries, jobspec.CRLEntry{Serial: store.FormatSerial(r.Serial), Time: r.Time, Reason: r.Reason})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return req, nil
}

// crlHeader fixes a CRL's version, validity, thisUpdate and number: the
// request without its entries.
func (c *CA) crlHeader(o CRLOptions) (*jobspec.CRL, error) {
	name, _, err := c.Version(o.Version)
	if err != nil {
		return nil, err
	}
	if o.Validity <= 0 {
		o.Validity = 7 * 24 * time.Hour
	}
	st, err := c.Store()
	if err != nil {
		return nil, err
	}
	var idp string
	if o.Shard != nil {
		cfg := c.Meta.CRL
		if cfg == nil || *o.Shard < 0 || *o.Shard >= cfg.Published {
			return nil, fmt.Errorf("no CRL shard %d: the CA has %d (qpki ca crl-config)", *o.Shard, publishedShards(cfg))
		}
		idp = cfg.ShardURL(*o.Shard)
	}
	var n *big.Int
	if o.Shard != nil {
		n, err = store.NextShardCRLNumber(st, *o.Shard)
	} else {
		n, err = st.NextCRLNumber()
	}
	if err != nil {
		return nil, err
	}
	t := now(o.Now).UTC().Truncate(time.Second)
	return &jobspec.CRL{Version: name, Validity: o.Validity, ThisUpdate: t, Number: n.Text(16), Shard: o.Shard, IDP: idp}, nil
}

func publishedShards(cfg *CRLConfig) int {
	if cfg == nil {
		return 0
	}
	return cfg.Published
}

// eachCRLEntry walks the store's revocations that req's CRL lists: of
// certificates that its version's key issued and, for a shard, of that
// shard only, without the certificates expired before the previous issue
// of the shard (RFC 5280 §3.3: an expired certificate is listed on one
// more CRL after its notAfter, then leaves).
func (c *CA) eachCRLEntry(req *jobspec.CRL, fn func(store.Revoked) error) error {
	st, err := c.Store()
	if err != nil {
		return err
	}
	shard := store.AllShards
	var keepAfter time.Time
	if req.Shard != nil {
		shard = *req.Shard
		keepAfter = req.ThisUpdate.Add(-req.Validity)
	}
	return store.EachRevoked(st, shard, func(r store.Revoked) error {
		if r.CAVersion != req.Version || r.NotAfter.Before(keepAfter) {
			return nil
		}
		return fn(r)
	})
}

// newCRLBuilder starts the CRL that req describes (its entries aside).
func newCRLBuilder(req *jobspec.CRL, iss x509x.Issuer, sizeHint int) (*x509x.CRLBuilder, error) {
	number, ok := new(big.Int).SetString(req.Number, 16)
	if !ok {
		return nil, fmt.Errorf("invalid CRL number %q", req.Number)
	}
	hdr := x509x.CRLHeader{Number: number, ThisUpdate: req.ThisUpdate, NextUpdate: req.ThisUpdate.Add(req.Validity)}
	if req.IDP != "" {
		ext, err := issuingDistributionPoint(req.IDP)
		if err != nil {
			return nil, err
		}
		hdr.ExtraExtensions = append(hdr.ExtraExtensions, ext)
	}
	b, err := x509x.NewCRLBuilder(hdr, iss, sizeHint)
	if err != nil {
		return nil, fmt.Errorf("signing CRL: %w", err)
	}
	return b, nil
}

// SignCRL signs a CRL request with the version's issuer.
func SignCRL(req *jobspec.CRL, iss x509x.Issuer) ([]byte, error) {
	b, err := newCRLBuilder(req, iss, len(req.Entries))
	if err != nil {
		return nil, err
	}
	for _, e := range req.Entries {
		serial, err := store.ParseSerial(e.Serial)
		if err != nil {
			return nil, err
		}
		if err := b.Add(serial, e.Time, e.Reason); err != nil {
			return nil, err
		}
	}
	return signBuilt(b)
}

func signBuilt(b *x509x.CRLBuilder) ([]byte, error) {
	der, err := b.Sign(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("signing CRL: %w", err)
	}
	return der, nil
}

// signCRLFromStore builds and signs the CRL that req heads, streaming its
// entries from the store's revocation index straight into the DER: no
// list of entries is ever held, only the CRL's own bytes. It returns the
// number of entries with the DER.
func (c *CA) signCRLFromStore(req *jobspec.CRL, iss x509x.Issuer) ([]byte, int, error) {
	b, err := newCRLBuilder(req, iss, 0)
	if err != nil {
		return nil, 0, err
	}
	err = c.eachCRLEntry(req, func(r store.Revoked) error { return b.Add(r.Serial, r.Time, r.Reason) })
	if err != nil {
		return nil, 0, err
	}
	n := b.Len()
	der, err := signBuilt(b)
	return der, n, err
}

// StoreCRL writes a signed CRL into the CA dir: crl/ca.crl (PEM) and
// crl/ca.crl.der for the active version, crl/ca-vN.crl(.der) for another;
// a shard's as crl/<shard>.crl(.der) (crl/<shard>-vN.crl for another
// version).
func (c *CA) StoreCRL(version string, der []byte) error { return c.StoreShardCRL(version, nil, der) }

// StoreShardCRL is StoreCRL for a shard's CRL (shard nil: the full one).
func (c *CA) StoreShardCRL(version string, shard *int, der []byte) error {
	base := "ca"
	if shard != nil {
		base = strconv.Itoa(*shard)
	}
	if version != "" && version != c.Meta.Active {
		base += "-" + version
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
	req, err := c.crlHeader(o)
	if err != nil {
		return nil, err
	}
	der, n, err := c.signCRLFromStore(req, iss)
	if err != nil {
		return nil, err
	}
	fields := CRLFields(req)
	fields["entries"] = n
	if err := c.Audit(audit.EventCRL, fields); err != nil {
		return nil, err
	}
	return der, c.StoreShardCRL(name, req.Shard, der)
}

// CRLFields are the audit fields of a signed CRL.
func CRLFields(req *jobspec.CRL) map[string]any {
	f := map[string]any{"version": req.Version, "number": req.Number, "entries": len(req.Entries),
		"this_update": req.ThisUpdate, "next_update": req.ThisUpdate.Add(req.Validity)}
	if req.Shard != nil {
		f["shard"] = *req.Shard
	}
	return f
}

// EncodeCRL returns a CRL as PEM.
func EncodeCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}
