package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// VerifyOptions are the trust anchors, untrusted intermediates and CRLs
// for VerifyChain.
type VerifyOptions struct {
	Roots         []*x509.Certificate
	Intermediates []*x509.Certificate
	// CRLs, DER or PEM, are checked for every certificate of the chain
	// whose issuer has one here.
	CRLs [][]byte
	Now  time.Time
}

// VerifyChain builds a path from leaf to one of the roots and checks it,
// then checks revocation against the given CRLs. A chain that is classical
// throughout is checked by crypto/x509 (name constraints and extended key
// usage nesting included). When any certificate in play has a
// post-quantum or composite key or signature, or Catalyst extensions, the
// chain is checked by x509x.Verify, which checks every signature, both of
// each Catalyst certificate; if crypto/x509 can read the chain (a Catalyst
// chain's classical view), it must accept it too. Signatures reports each
// signature of the chain VerifyChain returns.
func VerifyChain(leaf *x509.Certificate, o VerifyOptions) ([]*x509.Certificate, error) {
	if len(o.Roots) == 0 {
		return nil, errors.New("no trust anchor given")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	chain, err := buildChain(leaf, o)
	if err != nil {
		return nil, err
	}
	crls, err := parseCRLs(o.CRLs)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := checkRevocation(chain[i], chain[i+1], crls, o.Now); err != nil {
			return chain, err
		}
	}
	return chain, nil
}

func buildChain(leaf *x509.Certificate, o VerifyOptions) ([]*x509.Certificate, error) {
	if !allClassical(leaf, o) {
		chain, err := x509x.Verify(leaf, o.Intermediates, o.Roots, o.Now)
		if err != nil {
			return nil, err
		}
		if classicallyReadable(chain) {
			if _, err := classicalChain(leaf, o); err != nil {
				return nil, fmt.Errorf("classical view: %w", err)
			}
		}
		return chain, nil
	}
	return classicalChain(leaf, o)
}

// classicalChain verifies with crypto/x509 alone.
func classicalChain(leaf *x509.Certificate, o VerifyOptions) ([]*x509.Certificate, error) {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range o.Roots {
		roots.AddCert(c)
	}
	for _, c := range o.Intermediates {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: o.Now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, err
	}
	return chains[0], nil
}

func parseCRLs(raw [][]byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	for _, data := range raw {
		rest := data
		found := false
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "X509 CRL" {
				continue
			}
			crl, err := x509.ParseRevocationList(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("malformed CRL: %v", err)
			}
			out, found = append(out, crl), true
		}
		if !found {
			crl, err := x509.ParseRevocationList(data)
			if err != nil {
				return nil, fmt.Errorf("malformed CRL: %v", err)
			}
			out = append(out, crl)
		}
	}
	return out, nil
}

// RevokedError says that a certificate of the chain is revoked.
type RevokedError struct {
	Subject string
	Serial  string
	Time    time.Time
	Reason  int
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("certificate %s (serial %s) was revoked on %s, reason %s",
		e.Subject, e.Serial, e.Time.UTC().Format(time.RFC3339), ReasonName(e.Reason))
}

func checkRevocation(cert, issuer *x509.Certificate, crls []*x509.RevocationList, now time.Time) error {
	for _, crl := range crls {
		if !bytes.Equal(crl.RawIssuer, cert.RawIssuer) {
			continue
		}
		if len(crl.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(crl.AuthorityKeyId, issuer.SubjectKeyId) {
			continue // the same name under another key: a rotated CA's other CRL
		}
		if err := CheckCRLSignature(crl, issuer); err != nil {
			return fmt.Errorf("CRL from %s: %v", issuer.Subject, err)
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			return fmt.Errorf("CRL from %s is stale: nextUpdate %s has passed", issuer.Subject, crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return &RevokedError{Subject: cert.Subject.String(), Serial: cert.SerialNumber.Text(16), Time: e.RevocationTime, Reason: e.ReasonCode}
			}
		}
	}
	return nil
}

// CheckCRLSignature verifies a CRL's signature with the issuer's key.
func CheckCRLSignature(crl *x509.RevocationList, issuer *x509.Certificate) error {
	return x509x.CheckCRLSignature(crl, issuer)
}

// isClassical reports whether crypto/x509 alone can check c: a classical
// key and signature, and no Catalyst extensions.
func isClassical(c *x509.Certificate) bool {
	return c.PublicKey != nil && c.SignatureAlgorithm != x509.UnknownSignatureAlgorithm &&
		!x509x.IsCatalyst(c) && !hasAltKey(c)
}

func hasAltKey(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(x509x.OIDSubjectAltPublicKeyInfo) {
			return true
		}
	}
	return false
}

func allClassical(leaf *x509.Certificate, o VerifyOptions) bool {
	if !isClassical(leaf) {
		return false
	}
	for _, pool := range [][]*x509.Certificate{o.Intermediates, o.Roots} {
		for _, c := range pool {
			if !isClassical(c) {
				return false
			}
		}
	}
	return true
}

// classicallyReadable reports whether every certificate of a chain has a
// key and signature crypto/x509 knows and no critical extension it does
// not (Bouncy Castle marks subjectAltPublicKeyInfo critical).
func classicallyReadable(chain []*x509.Certificate) bool {
	for _, c := range chain {
		if c.PublicKey == nil || c.SignatureAlgorithm == x509.UnknownSignatureAlgorithm || len(c.UnhandledCriticalExtensions) > 0 {
			return false
		}
	}
	return true
}

// SignatureStatus is how one certificate's signature, or both signatures
// of a Catalyst certificate, checked out against its issuer's keys.
type SignatureStatus struct {
	Subject string
	// Algorithm names the signature algorithm, AltAlgorithm the Catalyst
	// alternative one ("" when the certificate has none).
	Algorithm, AltAlgorithm string
	Err, AltErr             error
	// Anchor marks the trust anchor: its self-signature is reported but
	// trust in it does not depend on it.
	Anchor bool
}

// OK reports whether every signature checked verified.
func (s SignatureStatus) OK() bool { return s.Err == nil && s.AltErr == nil }

// String reads "ecdsa-with-SHA384: OK" or, for a Catalyst certificate,
// "classical (ecdsa-with-SHA384): OK, alternative (ml-dsa-65): OK".
func (s SignatureStatus) String() string {
	var b strings.Builder
	if s.Anchor {
		b.WriteString("trust anchor, self-signed ")
	}
	if s.AltAlgorithm == "" {
		fmt.Fprintf(&b, "%s: %s", s.Algorithm, result(s.Err))
		return b.String()
	}
	fmt.Fprintf(&b, "classical (%s): %s, alternative (%s): %s", s.Algorithm, result(s.Err), s.AltAlgorithm, result(s.AltErr))
	return b.String()
}

func result(err error) string {
	if err == nil {
		return "OK"
	}
	return "FAILED (" + err.Error() + ")"
}

// Signatures checks each certificate of a chain (leaf first) with the next
// one's keys, reporting each signature of a Catalyst certificate on its
// own. The last certificate is checked against itself when it is
// self-signed, and left out otherwise.
func Signatures(chain []*x509.Certificate) []SignatureStatus {
	var out []SignatureStatus
	for i, c := range chain {
		issuer := c
		if i+1 < len(chain) {
			issuer = chain[i+1]
		} else if !bytes.Equal(c.RawIssuer, c.RawSubject) {
			break
		}
		out = append(out, signatureStatus(c, issuer, i+1 == len(chain)))
	}
	return out
}

func signatureStatus(c, issuer *x509.Certificate, anchor bool) SignatureStatus {
	alg, altAlg := x509x.SignatureAlgorithms(c)
	s := SignatureStatus{Subject: c.Subject.String(), Algorithm: alg, AltAlgorithm: altAlg, Anchor: anchor}
	s.Err, s.AltErr = x509x.VerifyCatalyst(c, issuer)
	if errors.Is(s.AltErr, x509x.ErrNotCatalyst) {
		s.AltErr = nil
	}
	return s
}

// DiagnoseSignatures follows leaf's issuers by name through roots and
// intermediates, as far as they go, and reports every signature on the
// way: after VerifyChain failed, it shows which signature did.
func DiagnoseSignatures(leaf *x509.Certificate, o VerifyOptions) []SignatureStatus {
	var out []SignatureStatus
	chain := []*x509.Certificate{leaf}
	for len(chain) <= 10 {
		child := chain[len(chain)-1]
		parent, root := issuerOf(child, chain, o)
		if parent == nil {
			break
		}
		if bytes.Equal(parent.Raw, child.Raw) {
			out = append(out, signatureStatus(child, child, true))
			break
		}
		out = append(out, signatureStatus(child, parent, false))
		chain = append(chain, parent)
		if root {
			if bytes.Equal(parent.RawIssuer, parent.RawSubject) {
				out = append(out, signatureStatus(parent, parent, true))
			}
			break
		}
	}
	return out
}

// issuerOf picks child's issuer: by name and key identifier, trust anchors
// first, preferring one whose key verifies child's primary signature.
func issuerOf(child *x509.Certificate, chain []*x509.Certificate, o VerifyOptions) (*x509.Certificate, bool) {
	var fallback *x509.Certificate
	var fallbackRoot bool
	for _, pool := range []struct {
		certs []*x509.Certificate
		root  bool
	}{{o.Roots, true}, {o.Intermediates, false}} {
		for _, p := range pool.certs {
			if bytes.Equal(p.Raw, child.Raw) && pool.root {
				return p, true // the leaf is itself an anchor
			}
			if !bytes.Equal(p.RawSubject, child.RawIssuer) || inChain(p, chain) {
				continue
			}
			if len(child.AuthorityKeyId) > 0 && len(p.SubjectKeyId) > 0 && !bytes.Equal(child.AuthorityKeyId, p.SubjectKeyId) {
				continue
			}
			if primary, _ := x509x.VerifyCatalyst(child, p); primary == nil {
				return p, pool.root
			}
			if fallback == nil {
				fallback, fallbackRoot = p, pool.root
			}
		}
	}
	return fallback, fallbackRoot
}

func inChain(c *x509.Certificate, chain []*x509.Certificate) bool {
	for _, x := range chain {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// CheckStatementRequest parses an RFC 9883 request, for a key that cannot
// sign (ML-KEM), and checks what RFC 9883 section 4 leaves to the CA: the
// signature certificate the privateKeyPossessionStatement names is one
// this CA issued (lookup finds its record by serial, nil: the CA's store)
// and that a version of this CA signed, it is valid at now, not revoked,
// allowed to sign (digitalSignature), and has the request's subject; and
// the request's signature verifies with its key.
func (c *CA) CheckStatementRequest(der []byte, lookup func(serial *big.Int) (*store.Cert, error), now time.Time) (*x509x.CertificateRequest, error) {
	if now.IsZero() {
		now = time.Now()
	}
	if lookup == nil {
		st, err := c.Store()
		if err != nil {
			return nil, err
		}
		lookup = st.Cert
	}
	var rec *store.Cert
	find := func(rawIssuer []byte, serial *big.Int) (*x509.Certificate, error) {
		var err error
		if rec, err = lookup(serial); err != nil {
			return nil, fmt.Errorf("this CA issued no certificate with serial %s: %w", serial.Text(16), err)
		}
		return x509.ParseCertificate(rec.DER)
	}
	csr, signer, err := x509x.ParseCertificateRequestWithStatement(der, find)
	if err != nil {
		return nil, err
	}
	if rec == nil { // the statement included the certificate
		if _, err := find(signer.RawIssuer, signer.SerialNumber); err != nil {
			return nil, fmt.Errorf("statement of possession: %w", err)
		}
	}
	if !bytes.Equal(rec.DER, signer.Raw) {
		return nil, errors.New("statement of possession: the included certificate is not the one this CA issued with that serial")
	}
	if err := c.issuedBy(signer); err != nil {
		return nil, fmt.Errorf("statement of possession: %w", err)
	}
	switch {
	case rec.Revocation != nil:
		return nil, fmt.Errorf("statement of possession: the signature certificate (serial %s) is revoked", rec.Serial)
	case now.Before(signer.NotBefore) || now.After(signer.NotAfter):
		return nil, fmt.Errorf("statement of possession: the signature certificate (serial %s) is not valid now", rec.Serial)
	case signer.KeyUsage != 0 && signer.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return nil, errors.New("statement of possession: the signature certificate's key usage does not allow digitalSignature")
	case !bytes.Equal(signer.RawSubject, csr.RawSubject):
		return nil, fmt.Errorf("statement of possession: the request's subject %q is not the signature certificate's %q", csr.Subject, signer.Subject)
	}
	return csr, nil
}

// issuedBy checks that one of this CA's versions signed cert.
func (c *CA) issuedBy(cert *x509.Certificate) error {
	for _, name := range c.Meta.VersionNames() {
		caCert, err := c.Certificate(name)
		if err != nil || !bytes.Equal(caCert.RawSubject, cert.RawIssuer) {
			continue
		}
		if err := x509x.CheckSignatureFrom(cert, caCert); err == nil {
			return nil
		}
	}
	return errors.New("the signature certificate was not signed by this CA")
}

// RequestVars returns vars completed with the names a checked request asks
// for, for issuing it from its public key (an RFC 9883 request, whose key
// cannot sign a CSR that enroll would accept). The names are checked
// against the profile exactly as a CSR's are, and fill only the variables
// the caller left out: cn, dns_names, ip_addresses, emails, uris.
func (c *CA) RequestVars(profileName string, csr *x509x.CertificateRequest, vars map[string]any) (map[string]any, error) {
	pol, err := c.policy(profileName)
	if err != nil {
		return nil, err
	}
	if _, err := pol.apply(vars, csr.CertificateRequest, csr.PublicKey, csr.Algorithm, time.Now()); err != nil {
		return nil, err
	}
	out := make(map[string]any, len(vars)+5)
	for k, v := range vars {
		out[k] = v
	}
	ips := make([]string, len(csr.IPAddresses))
	for i, ip := range csr.IPAddresses {
		ips[i] = ip.String()
	}
	uris := make([]string, len(csr.URIs))
	for i, u := range csr.URIs {
		uris[i] = u.String()
	}
	for _, n := range []struct {
		name  string
		value []string
	}{
		{profile.VarCN, []string{csr.Subject.CommonName}}, {profile.VarDNSNames, csr.DNSNames},
		{profile.VarIPAddresses, ips}, {profile.VarEmails, csr.EmailAddresses}, {profile.VarURIs, uris},
	} {
		if _, given := out[n.name]; given || pol.p.Var(n.name) == nil || len(n.value) == 0 || n.value[0] == "" {
			continue
		}
		if n.name == profile.VarCN {
			out[n.name] = n.value[0]
		} else {
			out[n.name] = n.value
		}
	}
	return out, nil
}
