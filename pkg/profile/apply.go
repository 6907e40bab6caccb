package profile

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/qpki/qpki/pkg/algo"
)

// Input is what Apply turns into a certificate template.
type Input struct {
	// Values are the caller's variables, normally from Resolve. Apply
	// checks them again, so values carried in a job are re-validated.
	Values Values
	// CSR, when not nil, supplies the subject key and, for variables the
	// caller left out, the names. Apply does not check its signature.
	CSR *x509.CertificateRequest
	// PublicKeyAlgorithm is the subject key's algorithm; when empty it is
	// taken from CSR.PublicKey or PublicKey.
	PublicKeyAlgorithm algo.Algorithm
	// PublicKey is the subject key when there is no CSR (a CA's own key at
	// `ca init`); used for the subject key identifier.
	PublicKey crypto.PublicKey
	// AltPublicKeyAlgorithm is a Catalyst subject's alternative key
	// algorithm, or empty.
	AltPublicKeyAlgorithm algo.Algorithm
	// Now is the issuance time; zero means time.Now().
	Now time.Time
}

// Apply turns the profile, the variables and an optional CSR into a
// certificate template. The template has no serial number, issuer or
// signature algorithm: pkg/ca sets those. It refuses names the profile
// does not allow, naming the name, and subject keys of other algorithms.
func (p *Profile) Apply(in Input) (*x509.Certificate, error) {
	tmpl, err := p.apply(in)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	return tmpl, nil
}

func (p *Profile) apply(in Input) (*x509.Certificate, error) {
	vals, err := p.ResolveJSON(valuesAsAny(in.Values))
	if err != nil {
		return nil, err
	}
	alg, err := p.checkKey(in)
	if err != nil {
		return nil, err
	}
	if in.CSR != nil {
		if err := p.mergeCSR(vals, in.CSR); err != nil {
			return nil, err
		}
	}
	for _, v := range p.Variables {
		if v.Required && len(vals[v.Name]) == 0 {
			return nil, &VarError{Name: v.Name, Err: errors.New("a value is required")}
		}
	}

	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	validity := p.Validity
	if d, ok := vals.Duration(VarValidity); ok && p.vars[VarValidity] != nil {
		validity = d
	}
	if validity < time.Second {
		return nil, errors.New("validity must be longer than zero")
	}
	t := &x509.Certificate{
		NotBefore:  now.Add(-p.Backdate).UTC().Truncate(time.Second),
		MaxPathLen: -1,
	}
	// RFC 5280 counts both ends of the validity period, so the last second
	// is notBefore + validity - 1s: a 90d certificate is valid for 90 days.
	t.NotAfter = t.NotBefore.Add(validity - time.Second)
	if t.Subject, err = p.subject(vals); err != nil {
		return nil, err
	}
	if err := p.applyExtensions(t, vals, alg); err != nil {
		return nil, err
	}
	if p.IsCA() && t.Subject.String() == "" {
		return nil, errors.New("a CA certificate needs a subject name (set cn)")
	}
	if !p.IsCA() && t.Subject.CommonName == "" && len(t.DNSNames)+len(t.IPAddresses)+len(t.EmailAddresses)+len(t.URIs) == 0 {
		return nil, errors.New("the certificate would name no one: give cn, dns_names, ip_addresses, emails or uris (or a CSR with names)")
	}
	if p.Extensions.SubjectKeyID {
		if t.SubjectKeyId, err = subjectKeyID(in); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func valuesAsAny(v Values) map[string]any {
	out := make(map[string]any, len(v))
	for k, vs := range v {
		out[k] = vs
	}
	return out
}

// checkKey finds the subject key's algorithm and checks it against the
// profile.
func (p *Profile) checkKey(in Input) (algo.Algorithm, error) {
	alg := in.PublicKeyAlgorithm
	var pub crypto.PublicKey
	switch {
	case in.CSR != nil && in.CSR.PublicKey != nil:
		pub = in.CSR.PublicKey
	case in.PublicKey != nil:
		pub = in.PublicKey
	}
	if alg == "" {
		if pub == nil {
			return "", errors.New("the subject key's algorithm is unknown")
		}
		a, err := algo.Of(pub)
		if err != nil {
			return "", fmt.Errorf("subject key: %v", err)
		}
		alg = a
	} else if pub != nil {
		if err := algo.CheckKey(pub, alg); err != nil {
			return "", fmt.Errorf("subject key: %v", err)
		}
	}
	if !containsAlg(p.AllowedAlgorithms, alg) {
		return "", fmt.Errorf("key algorithm %s is not allowed (allowed: %s)", alg, joinAlgs(p.AllowedAlgorithms))
	}
	if alt := in.AltPublicKeyAlgorithm; alt != "" {
		if p.Mode != ModeCatalyst {
			return "", fmt.Errorf("an alternative %s key needs a catalyst profile", alt)
		}
		if !containsAlg(p.AllowedAltAlgorithms, alt) {
			return "", fmt.Errorf("alternative key algorithm %s is not allowed (allowed: %s)", alt, joinAlgs(p.AllowedAltAlgorithms))
		}
	}
	return alg, nil
}

func joinAlgs(as []algo.Algorithm) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// csrNames are the CSR's names by standard variable.
var csrNames = []struct {
	varName, kind string
	get           func(*x509.CertificateRequest) []string
}{
	{VarDNSNames, "DNS name", func(c *x509.CertificateRequest) []string { return c.DNSNames }},
	{VarIPAddresses, "IP address", func(c *x509.CertificateRequest) []string {
		out := make([]string, len(c.IPAddresses))
		for i, ip := range c.IPAddresses {
			out[i] = ip.String()
		}
		return out
	}},
	{VarEmails, "e-mail address", func(c *x509.CertificateRequest) []string { return c.EmailAddresses }},
	{VarURIs, "URI", func(c *x509.CertificateRequest) []string {
		out := make([]string, len(c.URIs))
		for i, u := range c.URIs {
			out[i] = u.String()
		}
		return out
	}},
}

// mergeCSR takes names from the CSR for the name variables the caller
// left out, and otherwise requires the CSR's names to be among the
// caller's. Either way each name passes the variable's constraints.
func (p *Profile) mergeCSR(vals Values, csr *x509.CertificateRequest) error {
	for _, n := range csrNames {
		names := n.get(csr)
		if len(names) == 0 {
			continue
		}
		v := p.vars[n.varName]
		if v == nil {
			return &NameError{Kind: n.kind, Name: names[0], Err: fmt.Errorf("the profile allows no %s variable", n.varName)}
		}
		canon, err := v.normalize(names)
		if err != nil {
			var ve *VarError
			if errors.As(err, &ve) && ve.Value != "" {
				return &NameError{Kind: n.kind, Name: ve.Value, Err: fmt.Errorf("refused by variable %q: %v", n.varName, ve.Err)}
			}
			return fmt.Errorf("the CSR's %ss: %w", n.kind, err)
		}
		given := vals[n.varName]
		if len(given) == 0 {
			vals[n.varName] = canon
			continue
		}
		for i, c := range canon {
			if !containsFold(given, c) {
				return &NameError{Kind: n.kind, Name: names[i], Err: fmt.Errorf("not among the requested %s", n.varName)}
			}
		}
	}
	cn := strings.TrimSpace(csr.Subject.CommonName)
	v := p.vars[VarCN]
	if cn == "" || v == nil {
		return nil // the subject comes from the profile
	}
	canon, err := v.normalize(cn)
	if err != nil {
		var ve *VarError
		if errors.As(err, &ve) {
			err = ve.Err
		}
		return &NameError{Kind: "common name", Name: cn, Err: fmt.Errorf("refused by variable %q: %v", VarCN, err)}
	}
	given := vals.Get(VarCN)
	switch {
	case given == "":
		vals[VarCN] = canon
	case strings.EqualFold(given, canon[0]):
	case containsFold(vals[VarDNSNames], canon[0]) || containsFold(vals[VarIPAddresses], canon[0]) || containsFold(vals[VarEmails], canon[0]):
	default:
		return &NameError{Kind: "common name", Name: cn, Err: errors.New("not among the requested names")}
	}
	return nil
}

// NameError is a name in a CSR that the profile or the caller's variables
// do not allow (ACME's rejectedIdentifier).
type NameError struct {
	Kind string // "DNS name", "IP address", "e-mail address", "URI", "common name"
	Name string
	Err  error
}

func (e *NameError) Error() string {
	return fmt.Sprintf("the CSR asks for %s %q: %v", e.Kind, e.Name, e.Err)
}

func (e *NameError) Unwrap() error { return e.Err }

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// Upper bounds of X.520 attributes (RFC 5280 Appendix A), in characters.
var subjectLimits = map[string]int{
	"cn": 64, "o": 64, "ou": 64, "c": 2, "l": 128, "st": 128, "street": 128, "postalCode": 40, "serialNumber": 64,
}

func (p *Profile) subject(vals Values) (pkix.Name, error) {
	var n pkix.Name
	for _, a := range p.Subject {
		s, ok := a.Value.render(vals)
		s = strings.TrimSpace(s)
		if !ok || s == "" {
			continue
		}
		if max := subjectLimits[a.Key]; utf8.RuneCountInString(s) > max {
			return n, fmt.Errorf("subject %s %q is longer than %d characters", a.Key, s, max)
		}
		switch a.Key {
		case "cn":
			n.CommonName = s
		case "o":
			n.Organization = []string{s}
		case "ou":
			n.OrganizationalUnit = []string{s}
		case "c":
			if len(s) != 2 || strings.ToUpper(s) != s {
				return n, fmt.Errorf("subject c %q: want a two-letter upper-case country code", s)
			}
			n.Country = []string{s}
		case "l":
			n.Locality = []string{s}
		case "st":
			n.Province = []string{s}
		case "street":
			n.StreetAddress = []string{s}
		case "postalCode":
			n.PostalCode = []string{s}
		case "serialNumber":
			n.SerialNumber = s
		}
	}
	return n, nil
}

func (p *Profile) applyExtensions(t *x509.Certificate, vals Values, alg algo.Algorithm) error {
	e := &p.Extensions
	if ku := e.KeyUsage; ku != nil {
		t.KeyUsage = ku.For(alg)
		if !ku.Critical { // crypto/x509 always marks keyUsage critical
			der, err := marshalKeyUsage(t.KeyUsage)
			if err != nil {
				return err
			}
			t.ExtraExtensions = append(t.ExtraExtensions, extension(oidKeyUsage, false, der))
		}
	}
	if eku := e.ExtKeyUsage; eku != nil {
		t.ExtKeyUsage = eku.Usages
		t.UnknownExtKeyUsage = eku.Unknown
		if eku.Critical { // crypto/x509 never marks it critical
			der, err := marshalExtKeyUsage(eku)
			if err != nil {
				return err
			}
			t.ExtraExtensions = append(t.ExtraExtensions, extension(oidExtKeyUsage, true, der))
		}
	}
	if bc := e.BasicConstraints; bc != nil {
		t.BasicConstraintsValid = true
		t.IsCA = bc.CA
		if bc.CA && bc.PathLen != nil {
			t.MaxPathLen = *bc.PathLen
			t.MaxPathLenZero = *bc.PathLen == 0
		}
		if !bc.Critical { // crypto/x509 always marks it critical
			der, err := marshalBasicConstraints(bc.CA, bc.PathLen)
			if err != nil {
				return err
			}
			t.ExtraExtensions = append(t.ExtraExtensions, extension(oidBasicConstraints, false, der))
		}
	}
	if san := e.SubjectAltName; san != nil {
		var err error
		if t.DNSNames, err = renderDNS("subjectAltName.dns", san.DNS, vals, true); err != nil {
			return err
		}
		for _, s := range renderAll(san.IP, vals) {
			a, err := parseIP(s)
			if err != nil {
				return fmt.Errorf("subjectAltName.ip %q: %v", s, err)
			}
			t.IPAddresses = append(t.IPAddresses, net.IP(a.AsSlice()))
		}
		for _, s := range renderAll(san.Email, vals) {
			c, _, err := checkEmail(s)
			if err != nil {
				return fmt.Errorf("subjectAltName.email %q: %v", s, err)
			}
			t.EmailAddresses = append(t.EmailAddresses, c)
		}
		for _, s := range renderAll(san.URI, vals) {
			if _, err := checkURI(s); err != nil {
				return fmt.Errorf("subjectAltName.uri %q: %v", s, err)
			}
			u, _ := url.Parse(s)
			t.URIs = append(t.URIs, u)
		}
	}
	var err error
	if t.CRLDistributionPoints, err = renderURLs("crlDistributionPoints", e.CRLDistributionPoints, vals); err != nil {
		return err
	}
	if aia := e.AuthorityInfoAccess; aia != nil {
		if t.OCSPServer, err = renderURLs("authorityInfoAccess.ocsp", aia.OCSP, vals); err != nil {
			return err
		}
		if t.IssuingCertificateURL, err = renderURLs("authorityInfoAccess.caIssuers", aia.CAIssuers, vals); err != nil {
			return err
		}
	}
	if len(e.CertificatePolicies) > 0 {
		// Written by hand: crypto/x509 cannot add a CPS qualifier.
		pols := make([]policyValue, len(e.CertificatePolicies))
		for i, pol := range e.CertificatePolicies {
			pols[i].oid = pol.OID
			t.Policies = append(t.Policies, pol.OID)
			if cps, ok := pol.CPS.render(vals); ok && cps != "" {
				if err := checkURL(cps); err != nil {
					return fmt.Errorf("certificatePolicies cps: %v", err)
				}
				pols[i].cps = cps
			}
		}
		der, err := marshalPolicies(pols)
		if err != nil {
			return err
		}
		t.ExtraExtensions = append(t.ExtraExtensions, extension(oidCertPolicies, false, der))
	}
	if nc := e.NameConstraints; nc != nil {
		t.PermittedDNSDomainsCritical = nc.Critical
		if err := applyNameSet(nc.Permitted, vals, "permitted", &t.PermittedDNSDomains, &t.PermittedIPRanges, &t.PermittedEmailAddresses, &t.PermittedURIDomains); err != nil {
			return err
		}
		if err := applyNameSet(nc.Excluded, vals, "excluded", &t.ExcludedDNSDomains, &t.ExcludedIPRanges, &t.ExcludedEmailAddresses, &t.ExcludedURIDomains); err != nil {
			return err
		}
	}
	for _, c := range e.Custom {
		t.ExtraExtensions = append(t.ExtraExtensions, extension(c.OID, c.Critical, c.Value))
	}
	return nil
}

func renderDNS(field string, ts []Template, vals Values, wildcard bool) ([]string, error) {
	var out []string
	for _, s := range renderAll(ts, vals) {
		s = strings.ToLower(s)
		if err := checkDNSName(s, wildcard); err != nil {
			return nil, fmt.Errorf("%s %q: %v", field, s, err)
		}
		if !containsFold(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func renderURLs(field string, ts []Template, vals Values) ([]string, error) {
	out := renderAll(ts, vals)
	for _, s := range out {
		if err := checkURL(s); err != nil {
			return nil, fmt.Errorf("%s: %v", field, err)
		}
	}
	return out, nil
}

// applyNameSet renders name constraints. DNS and URI constraints are
// domains, optionally with a leading "."; e-mail constraints are a
// mailbox, a domain or ".domain" (RFC 5280 §4.2.1.10).
func applyNameSet(s NameSet, vals Values, which string, dns *[]string, ips *[]*net.IPNet, emails, uris *[]string) error {
	field := "nameConstraints." + which
	for _, list := range []struct {
		name string
		ts   []Template
		dst  *[]string
	}{{".dns", s.DNS, dns}, {".uri", s.URI, uris}} {
		for _, d := range renderAll(list.ts, vals) {
			d = strings.ToLower(d)
			if err := checkDNSName(strings.TrimPrefix(d, "."), false); err != nil {
				return fmt.Errorf("%s%s %q: %v", field, list.name, d, err)
			}
			*list.dst = append(*list.dst, d)
		}
	}
	for _, m := range renderAll(s.Email, vals) {
		if strings.Contains(m, "@") {
			if _, _, err := checkEmail(m); err != nil {
				return fmt.Errorf("%s.email %q: %v", field, m, err)
			}
		} else if err := checkDNSName(strings.TrimPrefix(strings.ToLower(m), "."), false); err != nil {
			return fmt.Errorf("%s.email %q: %v", field, m, err)
		}
		*emails = append(*emails, m)
	}
	for _, c := range renderAll(s.IP, vals) {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("%s.ip %q: not a CIDR prefix", field, c)
		}
		pfx = pfx.Masked()
		*ips = append(*ips, &net.IPNet{IP: net.IP(pfx.Addr().AsSlice()), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())})
	}
	return nil
}

// subjectKeyID computes the key identifier as crypto/x509 does for CAs:
// the leftmost 160 bits of the SHA-256 of the subjectPublicKey BIT STRING
// (RFC 7093 §2 method 1). Set for every certificate, as RFC 5280 advises.
func subjectKeyID(in Input) ([]byte, error) {
	var spki []byte
	switch {
	case in.CSR != nil && len(in.CSR.RawSubjectPublicKeyInfo) > 0:
		spki = in.CSR.RawSubjectPublicKeyInfo
	case in.PublicKey != nil:
		der, err := algo.MarshalPKIX(in.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("subject key: %v", err)
		}
		spki = der
	default:
		return nil, nil // pkg/ca or crypto/x509 sets it
	}
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(spki, &info); err != nil || len(rest) > 0 {
		return nil, errors.New("subject key: malformed SubjectPublicKeyInfo")
	}
	h := sha256.Sum256(info.PublicKey.Bytes)
	return h[:20], nil
}
