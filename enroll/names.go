package enroll

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// NamePolicy is the one schema for which names a principal may be issued,
// shared by EST labels and users (and later SCEP and CMP labels). It is
// checked against the certificate the profile would make, so names a
// profile adds from variables are checked too. A request passes when each
// of the certificate's names is granted by an entry:
//
//	dns:     "host.example.com"   exactly that name
//	         "*.example.com"      one label under example.com (a.example.com,
//	                              and the wildcard name *.example.com itself)
//	         ".example.com"       any name under example.com, at any depth
//	ip:      "192.0.2.0/24", "2001:db8::/64", or one address
//	email:   "user@example.com"   that mailbox; "@example.com" any at that domain
//	uri:     "spiffe://example.org/dev/42" exactly; "spiffe://example.org/dev/*"
//	         anything under that path
//	subject: attribute -> allowed values, "*" for any value, e.g.
//	         {O: ["Example Corp"], CN: ["*"]}. The CN may always be one of
//	         the certificate's own names; any other attribute or CN value
//	         needs an entry here.
//	client_cert: "idevid"         IEEE 802.1AR IDevID -> LDevID: the subject
//	         is the authenticating client certificate's CN and serialNumber,
//	         copied, with no other attribute and no subjectAltName.
//
// Names compare case-insensitively (DNS, the domain of an e-mail). The
// zero policy grants nothing.
type NamePolicy struct {
	DNS     []string            `yaml:"dns" json:"dns,omitempty"`
	IP      []string            `yaml:"ip" json:"ip,omitempty"`
	Email   []string            `yaml:"email" json:"email,omitempty"`
	URI     []string            `yaml:"uri" json:"uri,omitempty"`
	Subject map[string][]string `yaml:"subject" json:"subject,omitempty"`
	// ClientCert is ClientCertIDevID or "".
	ClientCert string `yaml:"client_cert" json:"client_cert,omitempty"`

	any   bool // AnyName: the operator's policy, never from a file
	exact bool // ExactNames: DNS entries are names, not patterns
}

// ClientCertIDevID copies the subject of an IEEE 802.1AR IDevID.
const ClientCertIDevID = "idevid"

// ErrNotGranted is what every NameError is (errors.Is).
var ErrNotGranted = errors.New("name not granted")

// ErrNoPrincipal refuses a request that names no principal.
var ErrNoPrincipal = errors.New("enroll: the request names no principal (Request.Principal)")

// NameError is a name the principal's policy does not grant. Front-ends
// map it to their own refusal (EST 403, ACME rejectedIdentifier).
type NameError struct {
	Kind   string // "dns", "ip", "email", "uri", "subject", or "" for the policy as a whole
	Name   string
	Reason string
}

func (e *NameError) Error() string {
	switch {
	case e.Kind == "":
		return e.Reason
	case e.Kind == "subject" && e.Reason != "":
		return fmt.Sprintf("subject %s: %s", e.Name, e.Reason)
	case e.Kind == "subject":
		return fmt.Sprintf("subject %s is not granted to this caller", e.Name)
	case e.Reason != "":
		return fmt.Sprintf("%s name %q: %s", e.Kind, e.Name, e.Reason)
	}
	return fmt.Sprintf("%s name %q is not granted to this caller", e.Kind, e.Name)
}

// Is makes errors.Is(err, ErrNotGranted) true.
func (e *NameError) Is(target error) bool { return target == ErrNotGranted }

// AnyName is the policy of an operator: every name the profile allows.
func AnyName() *NamePolicy { return &NamePolicy{any: true} }

// ExactNames grants exactly these DNS names and IP addresses, each
// literally ("*.example.com" is the wildcard name alone): an ACME order's
// authorized identifiers.
func ExactNames(dns, ips []string) *NamePolicy {
	return &NamePolicy{DNS: slices.Clone(dns), IP: slices.Clone(ips), exact: true}
}

// Empty reports whether p grants nothing at all.
func (p *NamePolicy) Empty() bool {
	return p == nil || !p.any && len(p.DNS)+len(p.IP)+len(p.Email)+len(p.URI)+len(p.Subject) == 0 && p.ClientCert == ""
}

// Join returns a policy granting what p or q grants (a label's policy
// and a user's grants). Nil stands for nothing.
func (p *NamePolicy) Join(q *NamePolicy) *NamePolicy {
	switch {
	case p == nil:
		return q
	case q == nil:
		return p
	}
	out := &NamePolicy{
		DNS: concat(p.DNS, q.DNS), IP: concat(p.IP, q.IP), Email: concat(p.Email, q.Email), URI: concat(p.URI, q.URI),
		ClientCert: p.ClientCert, any: p.any || q.any, exact: p.exact && q.exact,
	}
	if out.ClientCert == "" {
		out.ClientCert = q.ClientCert
	}
	if len(p.Subject)+len(q.Subject) > 0 {
		out.Subject = map[string][]string{}
		for _, m := range []map[string][]string{p.Subject, q.Subject} {
			for k, v := range m {
				out.Subject[k] = concat(out.Subject[k], v)
			}
		}
	}
	return out
}

func concat(a, b []string) []string {
	if len(a)+len(b) == 0 {
		return nil
	}
	return append(slices.Clip(a), b...)
}

// Validate checks every entry's syntax, so that a typo is found when the
// configuration is loaded, not when a device enrolls.
func (p *NamePolicy) Validate() error {
	if p == nil {
		return nil
	}
	for _, d := range p.DNS {
		if err := validDNSPattern(d); err != nil {
			return fmt.Errorf("dns %q: %v", d, err)
		}
	}
	for _, s := range p.IP {
		if _, err := parsePrefix(s); err != nil {
			return fmt.Errorf("ip %q: want a CIDR or an address", s)
		}
	}
	for _, e := range p.Email {
		local, domain, ok := strings.Cut(e, "@")
		if !ok || domain == "" || strings.ContainsAny(domain, "@*") || strings.ContainsAny(local, "@*") {
			return fmt.Errorf("email %q: want user@domain or @domain", e)
		}
	}
	for _, u := range p.URI {
		if i := strings.IndexByte(u, '*'); i >= 0 && (i != len(u)-1 || !strings.HasSuffix(u, "/*")) {
			return fmt.Errorf("uri %q: a * may only end the pattern, after a /", u)
		}
		if !strings.Contains(u, ":") {
			return fmt.Errorf("uri %q: want an absolute URI", u)
		}
	}
	for k, vs := range p.Subject {
		if _, ok := subjectOID(k); !ok {
			return fmt.Errorf("subject: unknown attribute %q (want CN, serialNumber, O, OU, C, L, ST, street, postalCode or a dotted OID)", k)
		}
		if len(vs) == 0 {
			return fmt.Errorf("subject %s: list the allowed values, or \"*\"", k)
		}
	}
	if p.ClientCert != "" && p.ClientCert != ClientCertIDevID {
		return fmt.Errorf("client_cert %q: the only mode is %q", p.ClientCert, ClientCertIDevID)
	}
	return nil
}

func validDNSPattern(d string) error {
	if d != strings.TrimSpace(d) || d == "" {
		return errors.New("empty or with spaces")
	}
	rest := d
	switch {
	case strings.HasPrefix(d, "*."):
		rest = d[2:]
	case strings.HasPrefix(d, "."):
		rest = d[1:]
	}
	if rest == "" || strings.Contains(rest, "*") || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") || strings.Contains(rest, "..") {
		return errors.New(`want host.example.com, *.example.com or .example.com`)
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Check checks a certificate template's names and subject against the
// policy; client is the certificate that authenticated the caller (for
// client_cert).
func (p *NamePolicy) Check(t *x509.Certificate, client *x509.Certificate) error {
	if p.Empty() {
		return &NameError{Reason: "no name policy grants this caller any name"}
	}
	if p.any {
		return nil
	}
	if p.ClientCert == ClientCertIDevID {
		return checkIDevID(t, client)
	}
	for _, d := range t.DNSNames {
		if !slices.ContainsFunc(p.DNS, func(pat string) bool { return p.exact && strings.EqualFold(pat, d) || !p.exact && dnsMatch(pat, d) }) {
			return &NameError{Kind: "dns", Name: d}
		}
	}
	for _, ip := range t.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok || !slices.ContainsFunc(p.IP, func(s string) bool { pf, err := parsePrefix(s); return err == nil && pf.Contains(a.Unmap()) }) {
			return &NameError{Kind: "ip", Name: ip.String()}
		}
	}
	for _, e := range t.EmailAddresses {
		if !slices.ContainsFunc(p.Email, func(pat string) bool { return emailMatch(pat, e) }) {
			return &NameError{Kind: "email", Name: e}
		}
	}
	for _, u := range t.URIs {
		s := u.String()
		if !slices.ContainsFunc(p.URI, func(pat string) bool { return uriMatch(pat, s) }) {
			return &NameError{Kind: "uri", Name: s}
		}
	}
	return p.checkSubject(t)
}

// dnsMatch applies one dns entry to a name (see NamePolicy).
func dnsMatch(pat, name string) bool {
	pat, name = strings.ToLower(pat), strings.TrimSuffix(strings.ToLower(name), ".")
	switch {
	case strings.HasPrefix(pat, "*."):
		label, rest, ok := strings.Cut(name, ".")
		return ok && label != "" && rest == pat[2:]
	case strings.HasPrefix(pat, "."):
		return strings.HasSuffix(name, pat) && len(name) > len(pat) && !strings.HasPrefix(name, ".")
	}
	return name == pat
}

func emailMatch(pat, addr string) bool {
	pl, pd, _ := strings.Cut(pat, "@")
	al, ad, ok := strings.Cut(addr, "@")
	if !ok || !strings.EqualFold(pd, ad) {
		return false
	}
	return pl == "" || pl == al
}

func uriMatch(pat, u string) bool {
	if prefix, ok := strings.CutSuffix(pat, "*"); ok {
		return strings.HasPrefix(u, prefix) && len(u) > len(prefix)
	}
	return u == pat
}

// checkSubject: the CN is one of the certificate's names, a name the
// policy grants (a device that names its host only in the CN), or
// listed; every other attribute is listed with its value.
func (p *NamePolicy) checkSubject(t *x509.Certificate) error {
	names := sanValues(t)
	for _, atv := range subjectAttrs(t.Subject) {
		v := fmt.Sprint(atv.Value)
		if atv.Type.Equal(oidCN) && (slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, v) }) || p.grantsCN(v)) {
			continue
		}
		if !p.subjectAllows(atv.Type, v) {
			return &NameError{Kind: "subject", Name: attrName(atv.Type) + "=" + v}
		}
	}
	return nil
}

// grantsCN reports whether a CN value is a DNS name, IP address or
// e-mail address the policy grants.
func (p *NamePolicy) grantsCN(v string) bool {
	if a, err := netip.ParseAddr(v); err == nil {
		return slices.ContainsFunc(p.IP, func(s string) bool { pf, err := parsePrefix(s); return err == nil && pf.Contains(a.Unmap()) })
	}
	if strings.Contains(v, "@") {
		return slices.ContainsFunc(p.Email, func(pat string) bool { return emailMatch(pat, v) })
	}
	return slices.ContainsFunc(p.DNS, func(pat string) bool { return p.exact && strings.EqualFold(pat, v) || !p.exact && dnsMatch(pat, v) })
}

func (p *NamePolicy) subjectAllows(oid asn1.ObjectIdentifier, v string) bool {
	for k, vals := range p.Subject {
		if o, ok := subjectOID(k); ok && o.Equal(oid) && (slices.Contains(vals, "*") || slices.Contains(vals, v)) {
			return true
		}
	}
	return false
}

// checkIDevID: LDevID names are the IDevID's CN and serialNumber, copied.
func checkIDevID(t, client *x509.Certificate) error {
	if client == nil {
		return &NameError{Reason: "names.client_cert: idevid needs a TLS client certificate (IDevID) to copy the subject from"}
	}
	if n := sanValues(t); len(n) > 0 {
		return &NameError{Kind: "subject", Name: n[0], Reason: "names.client_cert: idevid allows no subjectAltName"}
	}
	want := map[string]string{oidCN.String(): client.Subject.CommonName, oidSerialNumber.String(): client.Subject.SerialNumber}
	seen := map[string]bool{}
	for _, atv := range subjectAttrs(t.Subject) {
		v, k := fmt.Sprint(atv.Value), atv.Type.String()
		w, ok := want[k]
		if !ok || v != w || seen[k] {
			return &NameError{Kind: "subject", Name: attrName(atv.Type) + "=" + v, Reason: "names.client_cert: idevid copies only the client certificate's CN and serialNumber"}
		}
		seen[k] = true
	}
	for k, w := range want {
		if w != "" && !seen[k] {
			return &NameError{Kind: "subject", Name: k, Reason: "names.client_cert: idevid: the subject must carry the client certificate's " + attrName(asn1OID(k))}
		}
	}
	return nil
}

func sanValues(t *x509.Certificate) []string {
	out := slices.Clone(t.DNSNames)
	for _, ip := range t.IPAddresses {
		out = append(out, ip.String())
	}
	out = append(out, t.EmailAddresses...)
	for _, u := range t.URIs {
		out = append(out, u.String())
	}
	return out
}

// subjectAttrs lists every attribute the subject will carry.
func subjectAttrs(n pkix.Name) []pkix.AttributeTypeAndValue {
	var out []pkix.AttributeTypeAndValue
	for _, rdn := range n.ToRDNSequence() {
		out = append(out, rdn...)
	}
	return out
}

var (
	oidCN           = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
)

var subjectAttrOIDs = map[string]asn1.ObjectIdentifier{
	"CN": oidCN, "serialNumber": oidSerialNumber, "C": {2, 5, 4, 6}, "L": {2, 5, 4, 7}, "ST": {2, 5, 4, 8},
	"street": {2, 5, 4, 9}, "O": {2, 5, 4, 10}, "OU": {2, 5, 4, 11}, "postalCode": {2, 5, 4, 17},
}

func subjectOID(k string) (asn1.ObjectIdentifier, bool) {
	if o, ok := subjectAttrOIDs[k]; ok {
		return o, true
	}
	o := asn1OID(k)
	return o, len(o) >= 2
}

func asn1OID(s string) asn1.ObjectIdentifier {
	var o asn1.ObjectIdentifier
	for part := range strings.SplitSeq(s, ".") {
		n := 0
		if part == "" || len(part) > 9 {
			return nil
		}
		for _, c := range part {
			if c < '0' || c > '9' {
				return nil
			}
			n = n*10 + int(c-'0')
		}
		o = append(o, n)
	}
	return o
}

func attrName(oid asn1.ObjectIdentifier) string {
	for k, o := range subjectAttrOIDs {
		if o.Equal(oid) {
			return k
		}
	}
	return oid.String()
}
