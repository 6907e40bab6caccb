package enroll

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cose"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// The queue is a trust boundary: whoever holds a worker's NATS credential
// (or a worker's host) can publish a result for any job id it sees. The
// recorder therefore checks every result against the CA's key and against
// what the job's record in the store says was approved, never against what
// the result itself claims, before anything reaches the store or a client.

// ForgedError is a result that does not verify under the CA's key or does
// not match its job. The recorder refuses it: the job stays queued, so a
// genuine result can still be recorded, and the caller (the server's
// recorder loop) dead-letters it and raises the alarm.
type ForgedError struct {
	JobID  string
	Kind   string
	Reason string
}

func (e *ForgedError) Error() string {
	return fmt.Sprintf("forged result for job %s: %s", e.JobID, e.Reason)
}

func forged(j *store.Job, format string, args ...any) error {
	return &ForgedError{JobID: j.ID, Kind: j.Kind, Reason: fmt.Sprintf(format, args...)}
}

// IsForged reports whether err refuses a result as forged.
func IsForged(err error) bool {
	var f *ForgedError
	return errors.As(err, &f)
}

// maxClockSkew is how far a worker's clock may be from the recorder's: a
// certificate's validity is computed by the worker that signs it.
const maxClockSkew = 5 * time.Minute

// checkedCert returns the record of an issue or keygen job's certificate
// once it is shown to be the job's: signed by one of this CA's keys, with
// the reserved serial, the subject key and exactly the subject, names,
// extensions and validity that the profile gives the request stored with
// the job. A result that fails is forged (ForgedError); a request that no
// longer passes the profile's policy fails the job (a plain error).
func (s *Service) checkedCert(j *store.Job, res *jobspec.IssueResult) (*store.Cert, error) {
	cert, err := x509.ParseCertificate(res.DER)
	if err != nil {
		return nil, forged(j, "the certificate does not parse: %v", err)
	}
	if res.CAVersion == "" {
		return nil, forged(j, "the result names no CA version")
	}
	caCert, err := s.CA.Certificate(res.CAVersion)
	if err != nil {
		return nil, forged(j, "CA version %q: %v", res.CAVersion, err)
	}
	if !bytes.Equal(cert.RawIssuer, caCert.RawSubject) {
		return nil, forged(j, "issuer %q is not CA version %s (%q)", cert.Issuer, res.CAVersion, caCert.Subject)
	}
	if err := x509x.CheckIssued(cert, caCert); err != nil {
		return nil, forged(j, "the signature does not verify under the key of CA version %s: %v", res.CAVersion, err)
	}
	if got := store.FormatSerial(cert.SerialNumber); got != j.Serial {
		return nil, forged(j, "serial %s, the job reserved %s", got, j.Serial)
	}
	now := time.Now()
	var p *ca.Prepared
	var wantSPKI []byte
	preparedAt := now
	if a, ok := s.approvals.take(j.ID); ok && j.Kind == jobspec.KindIssue {
		// What this process approved at submission (the subject key is
		// compared through its encoding below).
		p, preparedAt = a.p, a.at
	} else if p, wantSPKI, err = s.approved(j, cert, now); err != nil {
		return nil, err
	}
	if !bytes.Equal(cert.RawSubjectPublicKeyInfo, wantSPKI) {
		if m, err := algo.MarshalPKIX(p.PublicKey); err != nil || !bytes.Equal(cert.RawSubjectPublicKeyInfo, m) {
			return nil, forged(j, "the subject key is not the one the job asked for")
		}
	}
	if err := matchTemplate(cert, p, caCert, j.Created, preparedAt, now); err != nil {
		return nil, forged(j, "%v", err)
	}
	rec := ca.CertRecordOf(cert, j.Profile, res.CAVersion, j.ID)
	if k, ok := s.CA.ShardOfCert(cert); ok {
		rec.Shard = &k
	}
	return rec, nil
}

// approved rebuilds, from the job's stored payload, the template the
// profile gives the request, as the worker did before signing, and the
// subject key the certificate must carry (as SubjectPublicKeyInfo DER).
func (s *Service) approved(j *store.Job, cert *x509.Certificate, now time.Time) (*ca.Prepared, []byte, error) {
	req := ca.IssueRequest{Profile: j.Profile, Now: now, Serial: cert.SerialNumber}
	var spki []byte
	if j.Kind == jobspec.KindKeygen {
		var spec jobspec.Keygen
		if err := jobspec.Decode(j.Payload, &spec); err != nil {
			return nil, nil, fmt.Errorf("the job's stored payload: %v", err)
		}
		// The worker generated the key: it must be of the algorithm
		// enroll chose; the names come from the client's template.
		pub, err := x509x.PublicKey(cert)
		if err != nil {
			return nil, nil, forged(j, "subject key: %v", err)
		}
		if a, err := algo.Of(pub); err != nil || string(a) != spec.Algorithm {
			return nil, nil, forged(j, "the generated key is %s, the job asked for %s", a, spec.Algorithm)
		}
		t, err := jobspec.KeygenTemplate(spec.Template, pub)
		if err != nil {
			return nil, nil, fmt.Errorf("the job's stored template: %v", err)
		}
		req.Profile, req.Vars, req.CSR, spki = spec.Profile, spec.Vars, t, cert.RawSubjectPublicKeyInfo
	} else {
		var spec jobspec.Issue
		if err := jobspec.Decode(j.Payload, &spec); err != nil {
			return nil, nil, fmt.Errorf("the job's stored payload: %v", err)
		}
		req.Profile, req.Vars = spec.Profile, spec.Vars
		switch {
		case len(spec.CSR) > 0:
			// Its signature was checked when the job was submitted.
			csr, err := x509x.ParseCertificateRequestUnverified(spec.CSR)
			if err != nil {
				return nil, nil, fmt.Errorf("the job's stored CSR: %v", err)
			}
			req.CSR, spki = csr, csr.RawSubjectPublicKeyInfo
		case len(spec.PublicKey) > 0:
			pub, err := algo.ParsePKIX(spec.PublicKey)
			if err != nil {
				return nil, nil, fmt.Errorf("the job's stored public key: %v", err)
			}
			req.PublicKey, spki = pub, spec.PublicKey
		default:
			return nil, nil, errors.New("the job's stored payload has no subject key")
		}
	}
	p, err := s.CA.Prepare(req)
	if err != nil {
		return nil, nil, fmt.Errorf("the request no longer passes the profile's policy: %w", err)
	}
	return p, spki, nil
}

// Extensions crypto/x509 writes from template fields.
var (
	oidSKI      = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidKU       = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSAN      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBC       = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidNC       = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidCDP      = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidPolicies = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidAKI      = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidEKU      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidAIA      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
)

// matchTemplate compares a certificate with the template it should have
// been made from: the same subject and names, the template's extensions
// and no other, and a validity that the template bounds. The template was
// computed at preparedAt, between the job's creation and now, and the
// worker signed in between: its validity may start up to preparedAt -
// created earlier and end up to now - preparedAt later than the
// template's (and maxClockSkew, for the worker's clock).
func matchTemplate(cert *x509.Certificate, p *ca.Prepared, caCert *x509.Certificate, created, preparedAt, now time.Time) error {
	t := p.Template
	wantSubject := t.RawSubject
	if len(wantSubject) == 0 {
		var err error
		if wantSubject, err = asn1.Marshal(t.Subject.ToRDNSequence()); err != nil {
			return err
		}
	}
	if !bytes.Equal(cert.RawSubject, wantSubject) {
		return fmt.Errorf("subject %q, the job was approved for %q", cert.Subject, t.Subject)
	}
	if cert.NotAfter.After(t.NotAfter.Add(now.Sub(preparedAt) + maxClockSkew)) {
		return fmt.Errorf("valid until %s, past the %s the profile allows", cert.NotAfter.UTC().Format(time.RFC3339), t.NotAfter.UTC().Format(time.RFC3339))
	}
	if cert.NotBefore.Before(t.NotBefore.Add(-preparedAt.Sub(created) - maxClockSkew)) {
		return fmt.Errorf("valid from %s, before the job was submitted", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	extra := make(map[string]int, len(t.ExtraExtensions))
	for i, e := range t.ExtraExtensions {
		extra[e.Id.String()] = i
	}
	from := func(oid asn1.ObjectIdentifier) bool { _, ok := extra[oid.String()]; return ok }
	allowed := map[string]bool{oidSKI.String(): true, oidAKI.String(): true}
	allow := func(oid asn1.ObjectIdentifier, when bool) {
		if when {
			allowed[oid.String()] = true
		}
	}
	names := len(t.DNSNames)+len(t.EmailAddresses)+len(t.IPAddresses)+len(t.URIs) > 0
	allow(oidSAN, names)
	allow(oidKU, t.KeyUsage != 0)
	allow(oidEKU, len(t.ExtKeyUsage)+len(t.UnknownExtKeyUsage) > 0)
	allow(oidBC, t.BasicConstraintsValid)
	allow(oidCDP, len(t.CRLDistributionPoints) > 0)
	allow(oidAIA, len(t.OCSPServer)+len(t.IssuingCertificateURL) > 0)
	allow(oidPolicies, len(t.PolicyIdentifiers)+len(t.Policies) > 0)
	allow(oidNC, len(t.PermittedDNSDomains)+len(t.ExcludedDNSDomains)+len(t.PermittedIPRanges)+len(t.ExcludedIPRanges)+
		len(t.PermittedEmailAddresses)+len(t.ExcludedEmailAddresses)+len(t.PermittedURIDomains)+len(t.ExcludedURIDomains) > 0)
	allow(x509x.OIDSubjectAltPublicKeyInfo, p.AltPublicKey != nil)
	if x509x.IsCatalyst(cert) {
		// Its alternative signature was checked with the CA's second key.
		allow(x509x.OIDAltSignatureAlgorithm, true)
		allow(x509x.OIDAltSignatureValue, true)
	}
	seen := 0
	for _, e := range cert.Extensions {
		id := e.Id.String()
		if i, ok := extra[id]; ok {
			if w := t.ExtraExtensions[i]; w.Critical != e.Critical || !bytes.Equal(w.Value, e.Value) {
				return fmt.Errorf("extension %s differs from the profile's", id)
			}
			seen++
			continue
		}
		if !allowed[id] {
			return fmt.Errorf("extension %s, which the profile does not give", id)
		}
	}
	if seen != len(t.ExtraExtensions) {
		return errors.New("an extension of the profile is missing")
	}
	if !from(oidSAN) {
		if !slices.Equal(cert.DNSNames, t.DNSNames) || !slices.Equal(cert.EmailAddresses, t.EmailAddresses) ||
			!slices.EqualFunc(cert.IPAddresses, t.IPAddresses, net.IP.Equal) ||
			!slices.EqualFunc(cert.URIs, t.URIs, func(a, b *url.URL) bool { return a.String() == b.String() }) {
			return fmt.Errorf("names %v, the job was approved for %v", certNames(cert.DNSNames, cert.IPAddresses, cert.EmailAddresses, cert.URIs),
				certNames(t.DNSNames, t.IPAddresses, t.EmailAddresses, t.URIs))
		}
	}
	if !from(oidKU) && cert.KeyUsage != t.KeyUsage {
		return fmt.Errorf("key usage %#x, the profile gives %#x", cert.KeyUsage, t.KeyUsage)
	}
	if !from(oidEKU) && (!slices.Equal(cert.ExtKeyUsage, t.ExtKeyUsage) ||
		!slices.EqualFunc(cert.UnknownExtKeyUsage, t.UnknownExtKeyUsage, asn1.ObjectIdentifier.Equal)) {
		return errors.New("extended key usage differs from the profile's")
	}
	if !from(oidBC) && (cert.BasicConstraintsValid != t.BasicConstraintsValid || cert.IsCA != t.IsCA) {
		return errors.New("basic constraints differ from the profile's")
	}
	if cert.IsCA {
		return errors.New("a CA certificate")
	}
	if !slices.Equal(cert.CRLDistributionPoints, t.CRLDistributionPoints) || !slices.Equal(cert.OCSPServer, t.OCSPServer) ||
		!slices.Equal(cert.IssuingCertificateURL, t.IssuingCertificateURL) {
		return errors.New("CRL or OCSP locations differ from the profile's")
	}
	if len(t.SubjectKeyId) > 0 && !bytes.Equal(cert.SubjectKeyId, t.SubjectKeyId) {
		return errors.New("subject key identifier is not the subject key's")
	}
	if len(caCert.SubjectKeyId) > 0 && !bytes.Equal(cert.AuthorityKeyId, caCert.SubjectKeyId) {
		return errors.New("authority key identifier is not the CA's")
	}
	if p.AltPublicKey != nil {
		alt, err := x509x.AltPublicKey(cert)
		if err != nil || alt == nil || !publicKeysEqual(alt, p.AltPublicKey) {
			return errors.New("the alternative subject key is not the one the job asked for")
		}
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// certNames lists names for an error message.
func certNames(dns []string, ips []net.IP, emails []string, uris []*url.URL) []string {
	out := append([]string{}, dns...)
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	out = append(out, emails...)
	for _, u := range uris {
		out = append(out, u.String())
	}
	return out
}

// checkedCRL checks a CRL job's result: signed by the CA version the job
// named (the active one when it named none), with exactly the number, the
// dates and the entries enroll decided.
func (s *Service) checkedCRL(j *store.Job, req *jobspec.CRL, res *jobspec.CRLResult) error {
	if res.Version != req.Version {
		return forged(j, "CRL of CA version %q, the job asked for %q", res.Version, req.Version)
	}
	crl, err := x509.ParseRevocationList(res.DER)
	if err != nil {
		return forged(j, "the CRL does not parse: %v", err)
	}
	if !s.crlSignedByCA(crl, req.Version) {
		return forged(j, "the CRL's signature does not verify under the CA's key")
	}
	number, ok := new(big.Int).SetString(req.Number, 16)
	if !ok || crl.Number == nil || crl.Number.Cmp(number) != 0 {
		return forged(j, "CRL number %v, the job asked for %s", crl.Number, req.Number)
	}
	this := req.ThisUpdate.Truncate(time.Second)
	if !crl.ThisUpdate.Equal(this) || !crl.NextUpdate.Equal(req.ThisUpdate.Add(req.Validity).Truncate(time.Second)) {
		return forged(j, "CRL dates %s to %s differ from the job's", crl.ThisUpdate, crl.NextUpdate)
	}
	if got := ca.IssuingDistributionPointURL(crl); got != req.IDP {
		return forged(j, "CRL issuingDistributionPoint %q, the job asked for %q", got, req.IDP)
	}
	if len(crl.RevokedCertificateEntries) != len(req.Entries) {
		return forged(j, "%d CRL entries, the job has %d", len(crl.RevokedCertificateEntries), len(req.Entries))
	}
	for i, e := range crl.RevokedCertificateEntries {
		w := req.Entries[i]
		if store.FormatSerial(e.SerialNumber) != w.Serial || !e.RevocationTime.Equal(w.Time.Truncate(time.Second)) || e.ReasonCode != w.Reason {
			return forged(j, "CRL entry %d (serial %s) differs from the job's", i, store.FormatSerial(e.SerialNumber))
		}
	}
	return nil
}

// crlSignedByCA checks a CRL against the version asked for or, when the
// job named none, against each version (the worker signed with the one
// that was active when it started).
func (s *Service) crlSignedByCA(crl *x509.RevocationList, version string) bool {
	versions := []string{version}
	if version == "" {
		versions = append(versions, s.CA.Meta.VersionNames()...)
	}
	for _, v := range versions {
		caCert, err := s.CA.Certificate(v)
		if err != nil || !bytes.Equal(crl.RawIssuer, caCert.RawSubject) {
			continue
		}
		if ca.CheckCRLSignature(crl, caCert) == nil {
			return true
		}
	}
	return false
}

// checkedCOSE checks a COSE job's result: one signature, by the key of the
// CA version enroll chose, over exactly the payload or claims of the job.
func (s *Service) checkedCOSE(j *store.Job, res *jobspec.COSEResult) error {
	var spec jobspec.COSE
	if err := jobspec.Decode(j.Payload, &spec); err != nil {
		return fmt.Errorf("the job's stored payload: %v", err)
	}
	if res.CAVersion != spec.Version {
		return forged(j, "signed by CA version %q, the job asked for %q", res.CAVersion, spec.Version)
	}
	_, v, err := s.CA.Version(spec.Version)
	if err != nil {
		return forged(j, "CA version %q: %v", spec.Version, err)
	}
	caCert, err := s.CA.Certificate(spec.Version)
	if err != nil {
		return forged(j, "CA version %q: %v", spec.Version, err)
	}
	pub, err := s.caPublic(spec.Version, v.Keys, caCert)
	if err != nil {
		return err
	}
	req := &spec.Request
	o := cose.VerifyOptions{PublicKeys: []crypto.PublicKey{pub.pub}, ExternalAAD: req.ExternalAAD, Now: j.Created}
	if req.Detached {
		o.Detached = req.Payload
	}
	if c := req.Claims; c != nil {
		// A token is checked at a time it was meant to be valid.
		o.Now = c.IssuedAt
		if !c.NotBefore.IsZero() {
			o.Now = c.NotBefore
		}
	}
	m, err := cose.Verify(res.Message, o)
	if err != nil {
		return forged(j, "the COSE message does not verify under the key of CA version %s: %v", spec.Version, err)
	}
	if len(m.Signatures) != 1 {
		return forged(j, "%d signatures, the job asked for the CA's one", len(m.Signatures))
	}
	want := req.Type
	if want == "" {
		want = cose.TypeSign1
	}
	if m.Type != want {
		return forged(j, "a %s message, the job asked for a %s", m.Type, want)
	}
	if want != cose.TypeCWT {
		if !req.Detached && !bytes.Equal(m.Payload, req.Payload) {
			return forged(j, "the signed payload is not the job's")
		}
		return nil
	}
	got, w := m.Claims, req.Claims
	if got == nil || w == nil || got.Issuer != w.Issuer || got.Subject != w.Subject || !slices.Equal(got.Audience, w.Audience) ||
		!bytes.Equal(got.CTI, w.CTI) || !got.IssuedAt.Equal(w.IssuedAt.Truncate(time.Second)) ||
		!got.Expiry.Equal(w.Expiry.Truncate(time.Second)) || !got.NotBefore.Equal(w.NotBefore.Truncate(time.Second)) ||
		len(got.Extra) != len(w.Extra) {
		return forged(j, "the token's claims are not the job's")
	}
	return nil
}

// approvals keeps, for the issue jobs this process submitted, the
// certificate that enroll's policies approved, so that the recorder
// compares a result with it instead of parsing the stored CSR and running
// the profile again. It is this process's own memory of the very request
// whose payload the store keeps; a job not found in it (submitted through
// another front-end, before a restart, or past the bound) is compared with
// the template rebuilt from the stored payload.
type approvals struct {
	mu sync.Mutex
	m  map[string]approval
}

type approval struct {
	p  *ca.Prepared
	at time.Time
}

// maxApprovals bounds the approvals kept (a few KiB each): a backlog
// beyond it is checked from the store.
const maxApprovals = 1 << 15

func (a *approvals) remember(id string, p *ca.Prepared) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[string]approval)
	}
	if len(a.m) < maxApprovals {
		a.m[id] = approval{p, time.Now()}
	}
}

// take returns a job's approval and forgets it: a result is checked once
// against it, and a second result for the job (after a forged one) is
// checked from the store.
func (a *approvals) take(id string) (approval, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.m[id]
	delete(a.m, id)
	return v, ok
}
