package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// IssueRequest is one certificate to issue.
type IssueRequest struct {
	Profile string
	Vars    map[string]any
	// CSR, when set, gives the subject key (its signature already checked)
	// and the names asked for.
	CSR *x509x.CertificateRequest
	// PublicKey is the subject key when there is no CSR (`--pubkey`).
	PublicKey crypto.PublicKey
	// AltPublicKey is a Catalyst subject's second key.
	AltPublicKey crypto.PublicKey
	// Serial was reserved by the caller; nil lets Issue choose one.
	Serial *big.Int
	JobID  string
	Now    time.Time
}

// Prepared is a request checked against policy and turned into a
// template, ready to be signed.
type Prepared struct {
	Template     *x509.Certificate
	PublicKey    crypto.PublicKey
	AltPublicKey crypto.PublicKey
	Profile      string
	Algorithm    algo.Algorithm
	Lint         LintPolicy
}

// NewSerial returns a random positive serial number of 127 bits, well
// above the 64 bits CA/B Forum rules ask for.
func NewSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	if b[0] == 0 {
		b[0] = 0x40 // keep the full length so serials print alike
	}
	return new(big.Int).SetBytes(b), nil
}

// Prepare checks a request against the profile's policy and returns the
// certificate template. It touches no key and no store, so enroll and the
// worker both run it: a request the profile forbids never reaches a signer.
func (c *CA) Prepare(req IssueRequest) (*Prepared, error) {
	pub := req.PublicKey
	var csr *x509.CertificateRequest
	if req.CSR != nil {
		pub = req.CSR.PublicKey
		csr = req.CSR.CertificateRequest
		if req.AltPublicKey == nil {
			req.AltPublicKey = req.CSR.AltPublicKey
		}
	}
	if pub == nil {
		return nil, errors.New("no subject public key: give a CSR or a public key")
	}
	a, err := algo.Of(pub)
	if err != nil {
		return nil, err
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	pol, err := c.policy(req.Profile)
	if err != nil {
		return nil, err
	}
	if pol.isCA {
		return nil, fmt.Errorf("profile %s is a CA profile: use `qpki ca init --parent` for subordinate CAs", req.Profile)
	}
	tmpl, err := pol.apply(req.Vars, csr, pub, a, now)
	if err != nil {
		return nil, err
	}
	if err := pol.checkAltKey(req.AltPublicKey); err != nil {
		return nil, err
	}
	if csr != nil && len(csr.RawSubjectPublicKeyInfo) > 0 {
		tmpl.SubjectKeyId, err = spkiKeyID(csr.RawSubjectPublicKeyInfo)
	} else {
		tmpl.SubjectKeyId, err = subjectKeyID(pub)
	}
	if err != nil {
		return nil, err
	}
	if err := c.clampValidity(tmpl); err != nil {
		return nil, err
	}
	// A partitioned CA names the certificate's own shard, in place of the
	// profile's CRL URL; the shard follows from the reserved serial, so
	// enroll, the worker and the recorder's check agree on it.
	p := &Prepared{Template: tmpl, PublicKey: pub, AltPublicKey: req.AltPublicKey, Profile: pol.name, Algorithm: a, Lint: pol.lint}
	if req.Serial != nil {
		c.AssignShard(p, req.Serial)
	}
	return p, nil
}

// AssignShard names, in a template prepared without its serial, the CRL
// shard that serial gets on a partitioned CA.
func (c *CA) AssignShard(p *Prepared, serial *big.Int) {
	if cfg := c.Meta.CRL; p != nil && cfg.Partitioned() {
		p.Template.CRLDistributionPoints = []string{cfg.ShardURL(cfg.ShardOf(serial))}
	}
}

// clampValidity refuses certificates that would outlive the CA.
func (c *CA) clampValidity(t *x509.Certificate) error {
	cert, err := c.Certificate("")
	if err != nil {
		return err
	}
	if t.NotAfter.After(cert.NotAfter) {
		t.NotAfter = cert.NotAfter
	}
	if !t.NotBefore.Before(t.NotAfter) {
		return errors.New("the CA certificate expires before the requested validity starts")
	}
	return nil
}

// Sign signs a prepared certificate with the given issuer and lints it.
// It records nothing.
func Sign(p *Prepared, serial *big.Int, iss x509x.Issuer) ([]byte, error) {
	t := *p.Template
	t.SerialNumber = serial
	der, err := x509x.CreateCertificate(rand.Reader, &t, p.PublicKey, p.AltPublicKey, iss)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	if err := lintCert(der, p.Lint); err != nil {
		return nil, err
	}
	return der, nil
}

// Record stores an issued certificate under its serial.
func (c *CA) Record(der []byte, profile, jobID string) (*store.Cert, error) {
	rec, err := CertRecord(der, profile, c.Meta.Active, jobID)
	if err != nil {
		return nil, err
	}
	c.SetShard(rec)
	st, err := c.Store()
	if err != nil {
		return nil, err
	}
	// Audited first: a crash between the two leaves an entry for a
	// certificate that was never delivered, never a delivered one that
	// is missing from the log.
	if err := c.Audit(audit.EventIssue, IssueFields(rec)); err != nil {
		return nil, err
	}
	if err := st.PutCert(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// IssueFields are the audit fields of an issued certificate.
func IssueFields(rec *store.Cert) map[string]any {
	return map[string]any{"serial": rec.Serial, "subject": rec.Subject, "names": rec.Names, "profile": rec.Profile,
		"ca_version": rec.CAVersion, "algorithm": rec.Algorithm, "not_after": rec.NotAfter, "sha256": rec.Fingerprint, "job_id": rec.JobID}
}

// Issue runs the whole issuance in process: policy, serial, signature,
// lint, record. Nothing is recorded unless every step succeeded.
func (c *CA) Issue(ctx context.Context, req IssueRequest, opts KeyOptions) (*store.Cert, error) {
	chosen := req.Serial == nil
	if chosen {
		// Chosen before Prepare: a partitioned CA's template depends on it.
		var err error
		if req.Serial, err = NewSerial(); err != nil {
			return nil, err
		}
	}
	p, err := c.Prepare(req)
	if err != nil {
		return nil, err
	}
	iss, closer, err := c.Issuer("", opts)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	if _, err := c.Store(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		der, err := Sign(p, req.Serial, iss)
		if err != nil {
			return nil, err
		}
		rec, err := c.Record(der, p.Profile, req.JobID)
		if errors.Is(err, store.ErrSerialInUse) && chosen && attempt < 3 {
			// A 127-bit collision: draw again (and prepare again, the
			// shard follows the serial).
			if req.Serial, err = NewSerial(); err != nil {
				return nil, err
			}
			if p, err = c.Prepare(req); err != nil {
				return nil, err
			}
			continue
		}
		return rec, err
	}
}

// CertRecord describes a signed certificate for the store.
func CertRecord(der []byte, profile, caVersion, jobID string) (*store.Cert, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return CertRecordOf(cert, profile, caVersion, jobID), nil
}

// CertRecordOf is CertRecord for a certificate already parsed.
func CertRecordOf(cert *x509.Certificate, profile, caVersion, jobID string) *store.Cert {
	der := cert.Raw
	a, _ := x509x.KeyAlgorithm(cert)
	sum := sha256.Sum256(der)
	names := append([]string{}, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	names = append(names, cert.EmailAddresses...)
	for _, u := range cert.URIs {
		names = append(names, u.String())
	}
	return &store.Cert{
		Serial:      store.FormatSerial(cert.SerialNumber),
		Subject:     cert.Subject.String(),
		Names:       names,
		Profile:     profile,
		CAVersion:   caVersion,
		Algorithm:   string(a),
		NotBefore:   cert.NotBefore,
		NotAfter:    cert.NotAfter,
		Issued:      time.Now().UTC(),
		Fingerprint: hex.EncodeToString(sum[:]),
		JobID:       jobID,
		DER:         der,
	}
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// of the subject public key bit string.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := algo.MarshalPKIX(pub)
	if err != nil {
		return nil, err
	}
	return spkiKeyID(spki)
}

// spkiKeyID is subjectKeyID of a SubjectPublicKeyInfo's DER, which a CSR
// carries already encoded.
func spkiKeyID(spki []byte) ([]byte, error) {
	var info struct {
		Algo asn1.RawValue
		Key  asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(info.Key.Bytes)
	return sum[:20], nil
}

// SetShard records in rec the CRL shard its certificate names, if any.
func (c *CA) SetShard(rec *store.Cert) {
	if c.Meta.CRL == nil {
		return
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return
	}
	if k, ok := c.ShardOfCert(cert); ok {
		rec.Shard = &k
	}
}
