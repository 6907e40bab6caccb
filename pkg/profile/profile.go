// Package profile reads certificate profiles: YAML files that say which
// key algorithms, validity, subject and extensions a certificate gets, and
// which variables (--var cn=..., dns_names=...) a caller may supply.
//
// A set of built-in profiles is embedded in the binary (builtin/<family>/
// <name>.yaml); a file <ca-dir>/profiles/<name>.yaml overrides the built-in
// of the same name. builtin/ec/tls-server.yaml is the commented reference
// of the whole schema.
//
// The flow is Load → Resolve (the caller's variables) → Apply (variables
// and CSR into an x509.Certificate template, which pkg/ca signs).
package profile

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"go.yaml.in/yaml/v3"
)

// MaxProfileSize bounds a profile file.
const MaxProfileSize = 256 << 10

// Mode is how a profile with two algorithms combines them.
type Mode string

const (
	// ModeCatalyst: a classical certificate carrying an alternative
	// post-quantum key and signature (ITU-T X.509 §9.8).
	ModeCatalyst Mode = "catalyst"
	// ModeComposite: one composite key and signature made of both.
	ModeComposite Mode = "composite"
)

// Signature schemes for RSA issuers.
const (
	SignaturePKCS1v15 = "pkcs1v15"
	SignaturePSS      = "pss"
)

// Profile is a parsed, checked profile.
type Profile struct {
	Name        string
	Description string
	// Algorithm is the key algorithm of a CA profile's own key, and the
	// default key algorithm for end-entity keys. It is Algorithms[0] except
	// in composite mode, where it is the composite algorithm.
	Algorithm algo.Algorithm
	// Algorithms lists the algorithms of a hybrid profile, classical first;
	// it is [Algorithm] otherwise. In catalyst mode Algorithms[1] is the
	// alternative key's algorithm.
	Algorithms []algo.Algorithm
	// Mode is "" for a single algorithm, else catalyst or composite.
	Mode Mode
	// AllowedAlgorithms are the key algorithms a certificate's subject key
	// may have. By default, every algorithm of Algorithm's family.
	AllowedAlgorithms []algo.Algorithm
	// AllowedAltAlgorithms are the algorithms a Catalyst subject's
	// alternative key may have. By default, Algorithms[1]'s family.
	AllowedAltAlgorithms []algo.Algorithm
	// Validity is the certificate lifetime when the profile declares no
	// "validity" variable or the caller gives none.
	Validity time.Duration
	// Backdate moves notBefore into the past to tolerate clock skew.
	Backdate time.Duration
	// Signature is how an RSA issuer signs: pkcs1v15 (default) or pss.
	Signature string
	// Subject is the subject name template, in the order written.
	Subject    []SubjectAttribute
	Extensions Extensions
	// Variables are the declared variables, in the order written.
	Variables []*Variable
	Lint      LintConfig

	// Source is "builtin" or the file the profile came from.
	Source string
	// Raw is the YAML text, for `qpki profile show`.
	Raw []byte

	vars map[string]*Variable
}

// IsCA reports whether the profile makes CA certificates.
func (p *Profile) IsCA() bool {
	bc := p.Extensions.BasicConstraints
	return bc != nil && bc.CA
}

// PathLen returns the pathLenConstraint of a CA profile, or -1 when there
// is none.
func (p *Profile) PathLen() int {
	if bc := p.Extensions.BasicConstraints; bc != nil && bc.CA && bc.PathLen != nil {
		return *bc.PathLen
	}
	return -1
}

// PSS reports whether an RSA issuer signs with RSASSA-PSS.
func (p *Profile) PSS() bool { return p.Signature == SignaturePSS }

// LintConfig says whether pkg/ca lints certificates made with this profile
// before returning them.
type LintConfig struct {
	// Enabled runs the RFC 5280 lints; on by default for CA profiles.
	Enabled bool
	// CABF adds the CA/Browser Forum lints, for publicly trusted TLS.
	CABF bool
}

// SubjectAttribute is one attribute of the subject name template.
type SubjectAttribute struct {
	Key   string // cn, o, ou, c, l, st, street, postalCode, serialNumber
	Value Template
}

// Extensions are the certificate extensions a profile asks for. Nil
// pointers and empty lists mean the extension is absent.
type Extensions struct {
	KeyUsage         *KeyUsage
	ExtKeyUsage      *ExtKeyUsage
	BasicConstraints *BasicConstraints
	SubjectAltName   *SubjectAltName
	// SubjectKeyID writes the subject key identifier (default true; RFC
	// 5280 requires it in CA certificates, the Baseline Requirements
	// advise against it in subscriber certificates).
	SubjectKeyID          bool
	CRLDistributionPoints []Template
	AuthorityInfoAccess   *AuthorityInfoAccess
	CertificatePolicies   []Policy
	NameConstraints       *NameConstraints
	Custom                []CustomExtension
}

type KeyUsage struct {
	Critical bool
	Usage    x509.KeyUsage
	Names    []string
	// ByKeyType replaces Usage for subject keys of a family (RSA keys
	// also encipher, ECDSA keys only sign), so that one profile serves
	// several key types as public CAs' do.
	ByKeyType map[algo.Family]x509.KeyUsage
}

// For returns the key usage of a certificate whose subject key is alg.
func (ku *KeyUsage) For(alg algo.Algorithm) x509.KeyUsage {
	if u, ok := ku.ByKeyType[alg.Family()]; ok {
		return u
	}
	return ku.Usage
}

type ExtKeyUsage struct {
	Critical bool
	Usages   []x509.ExtKeyUsage
	Unknown  []asn1.ObjectIdentifier
	Names    []string
}

type BasicConstraints struct {
	Critical bool
	CA       bool
	PathLen  *int
}

// SubjectAltName lists templates for each name type; a template that is
// just a list variable ("{{ dns_names }}") expands to all its values.
type SubjectAltName struct {
	DNS, IP, Email, URI []Template
}

type AuthorityInfoAccess struct {
	OCSP, CAIssuers []Template
}

type Policy struct {
	OID x509.OID
	CPS Template
}

type NameConstraints struct {
	Critical            bool
	Permitted, Excluded NameSet
}

// NameSet holds name constraint templates; IP entries are CIDR prefixes.
type NameSet struct {
	DNS, IP, Email, URI []Template
}

type CustomExtension struct {
	OID      asn1.ObjectIdentifier
	Critical bool
	Value    []byte // DER
}

// --- the YAML document ---

type document struct {
	Name                 string             `yaml:"name"`
	Description          string             `yaml:"description"`
	Algorithm            string             `yaml:"algorithm"`
	Algorithms           []string           `yaml:"algorithms"`
	Mode                 string             `yaml:"mode"`
	AllowedAlgorithms    []string           `yaml:"allowedAlgorithms"`
	AllowedAltAlgorithms []string           `yaml:"allowedAltAlgorithms"`
	Validity             string             `yaml:"validity"`
	Backdate             string             `yaml:"backdate"`
	Signature            string             `yaml:"signature"`
	Subject              subjectDoc         `yaml:"subject"`
	Extensions           extensionsDoc      `yaml:"extensions"`
	Variables            map[string]*varDoc `yaml:"variables"`
	Lint                 *lintDoc           `yaml:"lint"`
}

type subjectDoc struct {
	CN           string `yaml:"cn"`
	O            string `yaml:"o"`
	OU           string `yaml:"ou"`
	C            string `yaml:"c"`
	L            string `yaml:"l"`
	ST           string `yaml:"st"`
	Street       string `yaml:"street"`
	PostalCode   string `yaml:"postalCode"`
	SerialNumber string `yaml:"serialNumber"`
}

type extensionsDoc struct {
	KeyUsage              *usageDoc   `yaml:"keyUsage"`
	ExtKeyUsage           *usageDoc   `yaml:"extKeyUsage"`
	BasicConstraints      *bcDoc      `yaml:"basicConstraints"`
	SubjectAltName        *namesDoc   `yaml:"subjectAltName"`
	SubjectKeyIdentifier  *bool       `yaml:"subjectKeyIdentifier"`
	CRLDistributionPoints []string    `yaml:"crlDistributionPoints"`
	AuthorityInfoAccess   *aiaDoc     `yaml:"authorityInfoAccess"`
	CertificatePolicies   []policyDoc `yaml:"certificatePolicies"`
	NameConstraints       *ncDoc      `yaml:"nameConstraints"`
	Custom                []customDoc `yaml:"custom"`
}

type usageDoc struct {
	Critical  *bool               `yaml:"critical"`
	Values    []string            `yaml:"values"`
	ByKeyType map[string][]string `yaml:"byKeyType"`
}

type bcDoc struct {
	Critical *bool `yaml:"critical"`
	CA       bool  `yaml:"ca"`
	PathLen  *int  `yaml:"pathLen"`
}

type namesDoc struct {
	DNS   []string `yaml:"dns"`
	IP    []string `yaml:"ip"`
	Email []string `yaml:"email"`
	URI   []string `yaml:"uri"`
}

type aiaDoc struct {
	OCSP      []string `yaml:"ocsp"`
	CAIssuers []string `yaml:"caIssuers"`
}

type policyDoc struct {
	OID string `yaml:"oid"`
	CPS string `yaml:"cps"`
}

type ncDoc struct {
	Critical  *bool     `yaml:"critical"`
	Permitted *namesDoc `yaml:"permitted"`
	Excluded  *namesDoc `yaml:"excluded"`
}

type customDoc struct {
	OID      string  `yaml:"oid"`
	Critical bool    `yaml:"critical"`
	DER      *string `yaml:"der"`
	UTF8     *string `yaml:"utf8"`
}

type varDoc struct {
	Type            string   `yaml:"type"`
	Description     string   `yaml:"description"`
	Required        bool     `yaml:"required"`
	Default         any      `yaml:"default"`
	Pattern         string   `yaml:"pattern"`
	Values          []string `yaml:"values"`
	AllowedSuffixes []string `yaml:"allowedSuffixes"`
	AllowedNetworks []string `yaml:"allowedNetworks"`
	Wildcard        bool     `yaml:"wildcard"`
	Min             string   `yaml:"min"`
	Max             string   `yaml:"max"`
}

type lintDoc struct {
	Enabled *bool `yaml:"enabled"`
	CABF    bool  `yaml:"cabf"`
}

var profileNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$`)

// Parse reads a profile. Unknown keys, unknown algorithms, bad templates
// and references to undeclared variables are errors.
func Parse(data []byte) (*Profile, error) {
	p, err := parse(data)
	if err != nil {
		if p != nil && p.Name != "" {
			return nil, fmt.Errorf("profile %s: %w", p.Name, err)
		}
		return nil, fmt.Errorf("profile: %w", err)
	}
	return p, nil
}

func parse(data []byte) (*Profile, error) {
	if len(data) > MaxProfileSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxProfileSize)
	}
	var doc document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document")
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	order, err := variableOrder(data)
	if err != nil {
		return nil, yamlError(err)
	}

	p := &Profile{Name: doc.Name, Description: doc.Description, Raw: data, Signature: doc.Signature}
	if p.Name != "" && !profileNameRE.MatchString(p.Name) {
		return nil, fmt.Errorf("name %q: use lower-case family/name", p.Name)
	}
	if err := p.parseVariables(doc.Variables, order); err != nil {
		return p, err
	}
	if err := p.parseAlgorithms(&doc); err != nil {
		return p, err
	}
	if doc.Validity == "" {
		return p, errors.New("validity is required")
	}
	if p.Validity, err = ParseDuration(doc.Validity); err != nil || p.Validity == 0 {
		return p, fmt.Errorf("validity: %v", orPositive(err))
	}
	if doc.Backdate != "" {
		if p.Backdate, err = ParseDuration(doc.Backdate); err != nil {
			return p, fmt.Errorf("backdate: %v", err)
		}
	}
	switch doc.Signature {
	case "", SignaturePKCS1v15, SignaturePSS:
	default:
		return p, fmt.Errorf("signature %q: want %s or %s", doc.Signature, SignaturePKCS1v15, SignaturePSS)
	}
	if err := p.parseSubject(doc.Subject); err != nil {
		return p, err
	}
	if err := p.parseExtensions(&doc.Extensions); err != nil {
		return p, fmt.Errorf("extensions: %w", err)
	}
	p.Lint = LintConfig{Enabled: p.IsCA()}
	if doc.Lint != nil {
		if doc.Lint.Enabled != nil {
			p.Lint.Enabled = *doc.Lint.Enabled
		}
		p.Lint.CABF = doc.Lint.CABF
	}
	if err := p.checkRefs(); err != nil {
		return p, err
	}
	return p, nil
}

func orPositive(err error) error {
	if err == nil {
		return errors.New("must be longer than zero")
	}
	return err
}

var (
	yamlFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)
	yamlListRE  = regexp.MustCompile(`into \[\]\*?profile\.\S+`)
	yamlTypeRE  = regexp.MustCompile(`into \S*profile\.\S+`)
)

// yamlError makes yaml.v3's messages read as profile errors.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			m = yamlFieldRE.ReplaceAllString(m, `unknown key "$1"`)
			m = yamlListRE.ReplaceAllString(m, "where a list is expected")
			msgs[i] = yamlTypeRE.ReplaceAllString(m, "where a mapping is expected")
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// variableOrder returns the variable names in the order the file lists
// them (a Go map forgets it).
func variableOrder(data []byte) ([]string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, nil
	}
	top := root.Content[0].Content
	for i := 0; i+1 < len(top); i += 2 {
		if top[i].Value == "variables" && top[i+1].Kind == yaml.MappingNode {
			var names []string
			for j := 0; j < len(top[i+1].Content); j += 2 {
				names = append(names, top[i+1].Content[j].Value)
			}
			return names, nil
		}
	}
	return nil, nil
}

func (p *Profile) parseAlgorithms(doc *document) error {
	var err error
	if doc.Algorithm == "" && len(doc.Algorithms) == 0 {
		return errors.New("algorithm is required")
	}
	if len(doc.Algorithms) > 0 {
		if p.Algorithms, err = parseAlgs(doc.Algorithms); err != nil {
			return fmt.Errorf("algorithms: %w", err)
		}
	}
	if doc.Algorithm != "" {
		if p.Algorithm, err = algo.Parse(doc.Algorithm); err != nil {
			return fmt.Errorf("algorithm: %w", err)
		}
	}
	switch Mode(doc.Mode) {
	case "":
		if len(p.Algorithms) > 1 {
			return errors.New("algorithms: two algorithms need mode: catalyst or composite")
		}
	case ModeCatalyst, ModeComposite:
		if len(p.Algorithms) != 2 {
			return fmt.Errorf("mode %s needs algorithms: [classical, post-quantum]", doc.Mode)
		}
		p.Mode = Mode(doc.Mode)
	default:
		return fmt.Errorf("mode %q: want catalyst or composite", doc.Mode)
	}
	switch {
	case len(p.Algorithms) == 0:
		p.Algorithms = []algo.Algorithm{p.Algorithm}
	case p.Mode == ModeComposite:
		// One key made of both: algorithm names the composite algorithm,
		// or it is found by the composite-<pq>-<classical> convention.
		if p.Algorithm == "" {
			name := "composite-" + strings.ReplaceAll(string(p.Algorithms[1]), "-", "") + "-" + string(p.Algorithms[0])
			if p.Algorithm, err = algo.Parse(name); err != nil {
				return fmt.Errorf("mode composite: no algorithm %s; name the composite algorithm in the algorithm key", name)
			}
		}
		if p.Algorithm.Family() != algo.FamilyComposite {
			return fmt.Errorf("mode composite: algorithm %s is not a composite algorithm", p.Algorithm)
		}
	case p.Algorithm == "":
		p.Algorithm = p.Algorithms[0]
	case p.Algorithm != p.Algorithms[0]:
		return errors.New("algorithm and algorithms[0] differ: give one of them")
	}
	for _, a := range append([]algo.Algorithm{p.Algorithm}, p.Algorithms...) {
		if err := a.Info().SignRefused; err != nil {
			if pure, ok := algo.PreHashOf(a); ok {
				return fmt.Errorf("algorithm %s: %w; use %s", a, err, pure)
			}
			return fmt.Errorf("algorithm %s: %w", a, err)
		}
	}
	if len(doc.AllowedAlgorithms) > 0 {
		if p.AllowedAlgorithms, err = parseAlgs(doc.AllowedAlgorithms); err != nil {
			return fmt.Errorf("allowedAlgorithms: %w", err)
		}
	} else {
		p.AllowedAlgorithms = familyOf(p.Algorithm)
	}
	if len(doc.AllowedAltAlgorithms) > 0 {
		if p.Mode != ModeCatalyst {
			return errors.New("allowedAltAlgorithms needs mode: catalyst")
		}
		if p.AllowedAltAlgorithms, err = parseAlgs(doc.AllowedAltAlgorithms); err != nil {
			return fmt.Errorf("allowedAltAlgorithms: %w", err)
		}
	} else if p.Mode == ModeCatalyst {
		p.AllowedAltAlgorithms = familyOf(p.Algorithms[1])
	}
	return nil
}

func parseAlgs(names []string) ([]algo.Algorithm, error) {
	out := make([]algo.Algorithm, 0, len(names))
	for _, n := range names {
		a, err := algo.Parse(n)
		if err != nil {
			return nil, err
		}
		if containsAlg(out, a) {
			return nil, fmt.Errorf("%s listed twice", a)
		}
		out = append(out, a)
	}
	return out, nil
}

func containsAlg(as []algo.Algorithm, a algo.Algorithm) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// familyOf lists the registered algorithms of a's family, so that an
// algorithm registered later is allowed without editing any profile.
func familyOf(a algo.Algorithm) []algo.Algorithm {
	var out []algo.Algorithm
	for _, x := range algo.All() {
		if x.Family() == a.Family() {
			out = append(out, x)
		}
	}
	return out
}

func (p *Profile) parseVariables(docs map[string]*varDoc, order []string) error {
	p.vars = map[string]*Variable{}
	for _, name := range order {
		d := docs[name]
		if d == nil {
			return fmt.Errorf("variable %q: empty declaration (give at least its type)", name)
		}
		v, err := parseVariable(name, d)
		if err != nil {
			return err
		}
		p.Variables = append(p.Variables, v)
		p.vars[name] = v
	}
	return nil
}

func parseVariable(name string, d *varDoc) (*Variable, error) {
	if !varNameRE.MatchString(name) {
		return nil, fmt.Errorf("variable %q: names are lower-case letters, digits and _", name)
	}
	bad := func(format string, args ...any) error {
		return &VarError{Name: name, Err: fmt.Errorf(format, args...)}
	}
	t := VarType(d.Type)
	if _, ok := itemTypes[t]; !ok {
		return nil, bad("type %q: want one of string, integer, duration, enum, dns_name, dns_names, ip, ip_list, email, email_list, uri, uri_list", d.Type)
	}
	v := &Variable{Name: name, Description: d.Description, Type: t, Required: d.Required,
		Pattern: d.Pattern, Values: d.Values, Wildcard: d.Wildcard, Min: d.Min, Max: d.Max}
	item := t.Item()
	if d.Pattern != "" {
		if item != TypeString && item != TypeDNSName && item != TypeEmail && item != TypeURI {
			return nil, bad("pattern applies to string, DNS name, e-mail and URI types only")
		}
		re, err := regexp.Compile(`^(?:` + d.Pattern + `)$`)
		if err != nil {
			return nil, bad("pattern: %v", err)
		}
		v.pattern = re
	}
	if (t == TypeEnum) != (len(d.Values) > 0) {
		return nil, bad("values go with type enum, and enum needs values")
	}
	if len(d.AllowedSuffixes) > 0 {
		if item != TypeDNSName && item != TypeEmail && item != TypeURI {
			return nil, bad("allowedSuffixes applies to DNS name, e-mail and URI types only")
		}
		for _, s := range d.AllowedSuffixes {
			c, err := checkSuffix(s)
			if err != nil {
				return nil, bad("allowedSuffixes: %v", err)
			}
			v.AllowedSuffixes = append(v.AllowedSuffixes, c)
		}
	}
	if len(d.AllowedNetworks) > 0 {
		if item != TypeIP {
			return nil, bad("allowedNetworks applies to ip and ip_list only")
		}
		for _, s := range d.AllowedNetworks {
			pfx, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return nil, bad("allowedNetworks: %q is not a CIDR prefix", s)
			}
			v.AllowedNetworks = append(v.AllowedNetworks, pfx.Masked())
		}
	}
	if d.Wildcard && item != TypeDNSName {
		return nil, bad("wildcard applies to DNS name types only")
	}
	if err := v.parseBounds(); err != nil {
		return nil, bad("%v", err)
	}
	if d.Default != nil {
		def, err := v.normalize(d.Default)
		if err != nil {
			return nil, fmt.Errorf("default: %w", err)
		}
		if len(def) > 0 {
			v.Default = def
		}
	}
	return v, nil
}

func (v *Variable) parseBounds() error {
	if v.Min == "" && v.Max == "" {
		return nil
	}
	switch {
	case v.Type == TypeDuration:
		for _, b := range []struct {
			s   string
			dst **time.Duration
		}{{v.Min, &v.minDur}, {v.Max, &v.maxDur}} {
			if b.s != "" {
				d, err := ParseDuration(b.s)
				if err != nil {
					return err
				}
				*b.dst = &d
			}
		}
		if v.minDur != nil && v.maxDur != nil && *v.minDur > *v.maxDur {
			return errors.New("min is greater than max")
		}
	case v.Type == TypeInteger || v.Type == TypeString || v.Type.IsList():
		for _, b := range []struct {
			s   string
			dst **int64
		}{{v.Min, &v.minInt}, {v.Max, &v.maxInt}} {
			if b.s != "" {
				n, err := strconv.ParseInt(b.s, 10, 64)
				if err != nil {
					return fmt.Errorf("min/max %q: not an integer", b.s)
				}
				if v.Type != TypeInteger && n < 0 {
					return fmt.Errorf("min/max %q: a length cannot be negative", b.s)
				}
				*b.dst = &n
			}
		}
		if v.minInt != nil && v.maxInt != nil && *v.minInt > *v.maxInt {
			return errors.New("min is greater than max")
		}
	default:
		return fmt.Errorf("min/max do not apply to type %s", v.Type)
	}
	return nil
}

// subjectKeys is the order attributes are listed in; the DER order is
// crypto/x509's.
var subjectKeys = []string{"cn", "o", "ou", "c", "l", "st", "street", "postalCode", "serialNumber"}

func (p *Profile) parseSubject(s subjectDoc) error {
	vals := []string{s.CN, s.O, s.OU, s.C, s.L, s.ST, s.Street, s.PostalCode, s.SerialNumber}
	for i, key := range subjectKeys {
		if vals[i] == "" {
			continue
		}
		t, err := parseTemplate(vals[i])
		if err != nil {
			return fmt.Errorf("subject.%s: %v", key, err)
		}
		p.Subject = append(p.Subject, SubjectAttribute{Key: key, Value: t})
	}
	return nil
}

func parseTemplates(field string, ss []string) ([]Template, error) {
	out := make([]Template, 0, len(ss))
	for _, s := range ss {
		t, err := parseTemplate(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", field, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func parseNames(field string, d *namesDoc) (dns, ip, email, uri []Template, err error) {
	if dns, err = parseTemplates(field+".dns", d.DNS); err != nil {
		return
	}
	if ip, err = parseTemplates(field+".ip", d.IP); err != nil {
		return
	}
	if email, err = parseTemplates(field+".email", d.Email); err != nil {
		return
	}
	uri, err = parseTemplates(field+".uri", d.URI)
	return
}

// parseKeyUsage reads keyUsage: values, and byKeyType, whose keys are key
// families (rsa, ecdsa, ed25519, ml-dsa, slh-dsa, ml-kem, composite).
func parseKeyUsage(d *usageDoc) (*KeyUsage, error) {
	ku := &KeyUsage{Critical: boolOr(d.Critical, true)}
	var err error
	if ku.Usage, err = parseUsageBits("keyUsage", d.Values); err != nil {
		return nil, err
	}
	ku.Names = append(ku.Names, d.Values...)
	for fam, vals := range d.ByKeyType {
		if !knownFamily(algo.Family(fam)) {
			return nil, fmt.Errorf("keyUsage.byKeyType: unknown key type %q (want one of %s)", fam, familyNames())
		}
		u, err := parseUsageBits("keyUsage.byKeyType."+fam, vals)
		if err != nil {
			return nil, err
		}
		if ku.ByKeyType == nil {
			ku.ByKeyType = map[algo.Family]x509.KeyUsage{}
		}
		ku.ByKeyType[algo.Family(fam)] = u
	}
	return ku, nil
}

func parseUsageBits(field string, names []string) (x509.KeyUsage, error) {
	var ku x509.KeyUsage
	for _, n := range names {
		u, ok := keyUsages[n]
		if !ok {
			return 0, fmt.Errorf("%s: unknown usage %q", field, n)
		}
		ku |= u
	}
	if ku == 0 {
		return 0, fmt.Errorf("%s: no values", field)
	}
	return ku, nil
}

func knownFamily(f algo.Family) bool {
	for _, a := range algo.All() {
		if a.Family() == f {
			return true
		}
	}
	return false
}

// familyNames lists the key families, sorted, for error messages.
func familyNames() string {
	seen := map[algo.Family]bool{}
	var out []string
	for _, a := range algo.All() {
		if f := a.Family(); !seen[f] {
			seen[f] = true
			out = append(out, string(f))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func (p *Profile) parseExtensions(d *extensionsDoc) error {
	e := &p.Extensions
	if d.KeyUsage != nil {
		ku, err := parseKeyUsage(d.KeyUsage)
		if err != nil {
			return err
		}
		e.KeyUsage = ku
	}
	if d.ExtKeyUsage != nil && d.ExtKeyUsage.ByKeyType != nil {
		return errors.New("extKeyUsage: byKeyType is for keyUsage only")
	}
	if d.ExtKeyUsage != nil {
		eku := &ExtKeyUsage{Critical: boolOr(d.ExtKeyUsage.Critical, false)}
		for _, n := range d.ExtKeyUsage.Values {
			if k, ok := extKeyUsages[n]; ok {
				eku.Usages = append(eku.Usages, k.usage)
			} else if oid, err := parseOID(n); err == nil {
				eku.Unknown = append(eku.Unknown, oid)
			} else {
				return fmt.Errorf("extKeyUsage: %q is neither a known purpose nor a dotted OID", n)
			}
			eku.Names = append(eku.Names, n)
		}
		if len(eku.Names) == 0 {
			return errors.New("extKeyUsage: no values")
		}
		e.ExtKeyUsage = eku
	}
	if d.BasicConstraints != nil {
		bc := &BasicConstraints{Critical: boolOr(d.BasicConstraints.Critical, true), CA: d.BasicConstraints.CA, PathLen: d.BasicConstraints.PathLen}
		if bc.PathLen != nil && (!bc.CA || *bc.PathLen < 0) {
			return errors.New("basicConstraints: pathLen needs ca: true and must be 0 or more")
		}
		e.BasicConstraints = bc
	}
	if d.SubjectAltName != nil {
		san := &SubjectAltName{}
		var err error
		if san.DNS, san.IP, san.Email, san.URI, err = parseNames("subjectAltName", d.SubjectAltName); err != nil {
			return err
		}
		e.SubjectAltName = san
	}
	e.SubjectKeyID = boolOr(d.SubjectKeyIdentifier, true)
	var err error
	if e.CRLDistributionPoints, err = parseTemplates("crlDistributionPoints", d.CRLDistributionPoints); err != nil {
		return err
	}
	if d.AuthorityInfoAccess != nil {
		aia := &AuthorityInfoAccess{}
		if aia.OCSP, err = parseTemplates("authorityInfoAccess.ocsp", d.AuthorityInfoAccess.OCSP); err != nil {
			return err
		}
		if aia.CAIssuers, err = parseTemplates("authorityInfoAccess.caIssuers", d.AuthorityInfoAccess.CAIssuers); err != nil {
			return err
		}
		e.AuthorityInfoAccess = aia
	}
	seenPolicy := map[string]bool{}
	for _, pd := range d.CertificatePolicies {
		oid, err := x509.ParseOID(strings.TrimSpace(pd.OID))
		if err != nil {
			return fmt.Errorf("certificatePolicies: oid %q: %v", pd.OID, err)
		}
		if seenPolicy[oid.String()] {
			return fmt.Errorf("certificatePolicies: %s listed twice", oid)
		}
		seenPolicy[oid.String()] = true
		cps, err := parseTemplate(pd.CPS)
		if err != nil {
			return fmt.Errorf("certificatePolicies: cps: %v", err)
		}
		e.CertificatePolicies = append(e.CertificatePolicies, Policy{OID: oid, CPS: cps})
	}
	if d.NameConstraints != nil {
		nc := &NameConstraints{Critical: boolOr(d.NameConstraints.Critical, true)}
		if d.NameConstraints.Permitted != nil {
			s := &nc.Permitted
			if s.DNS, s.IP, s.Email, s.URI, err = parseNames("nameConstraints.permitted", d.NameConstraints.Permitted); err != nil {
				return err
			}
		}
		if d.NameConstraints.Excluded != nil {
			s := &nc.Excluded
			if s.DNS, s.IP, s.Email, s.URI, err = parseNames("nameConstraints.excluded", d.NameConstraints.Excluded); err != nil {
				return err
			}
		}
		e.NameConstraints = nc
	}
	seenOID := map[string]bool{}
	for _, cd := range d.Custom {
		oid, err := parseOID(cd.OID)
		if err != nil {
			return fmt.Errorf("custom: %v", err)
		}
		if seenOID[oid.String()] {
			return fmt.Errorf("custom: %s listed twice", oid)
		}
		seenOID[oid.String()] = true
		ce := CustomExtension{OID: oid, Critical: cd.Critical}
		switch {
		case cd.DER != nil && cd.UTF8 == nil:
			if ce.Value, err = parseHexDER(*cd.DER); err != nil {
				return fmt.Errorf("custom %s: %v", oid, err)
			}
		case cd.UTF8 != nil && cd.DER == nil:
			if ce.Value, err = marshalUTF8(*cd.UTF8); err != nil {
				return fmt.Errorf("custom %s: %v", oid, err)
			}
		default:
			return fmt.Errorf("custom %s: give exactly one of der (hex) or utf8", oid)
		}
		e.Custom = append(e.Custom, ce)
	}
	return nil
}

// checkRefs makes every template refer to declared variables of the right
// shape: list variables only as a whole list entry, never inside text.
func (p *Profile) checkRefs() error {
	check := func(field string, ts []Template, list bool) error {
		for _, t := range ts {
			for _, ref := range t.Refs() {
				v := p.vars[ref]
				if v == nil {
					return fmt.Errorf("%s: %q refers to undeclared variable %q", field, t.Text, ref)
				}
				if v.Type.IsList() && !(list && t.soleRef() == ref) {
					return fmt.Errorf("%s: %q: list variable %q must stand alone in a list entry", field, t.Text, ref)
				}
			}
		}
		return nil
	}
	for _, a := range p.Subject {
		if err := check("subject."+a.Key, []Template{a.Value}, false); err != nil {
			return err
		}
	}
	e := &p.Extensions
	lists := []struct {
		field string
		ts    []Template
	}{{"crlDistributionPoints", e.CRLDistributionPoints}}
	if san := e.SubjectAltName; san != nil {
		lists = append(lists, []struct {
			field string
			ts    []Template
		}{{"subjectAltName.dns", san.DNS}, {"subjectAltName.ip", san.IP}, {"subjectAltName.email", san.Email}, {"subjectAltName.uri", san.URI}}...)
	}
	if aia := e.AuthorityInfoAccess; aia != nil {
		lists = append(lists, []struct {
			field string
			ts    []Template
		}{{"authorityInfoAccess.ocsp", aia.OCSP}, {"authorityInfoAccess.caIssuers", aia.CAIssuers}}...)
	}
	if nc := e.NameConstraints; nc != nil {
		for _, s := range []struct {
			name string
			set  NameSet
		}{{"permitted", nc.Permitted}, {"excluded", nc.Excluded}} {
			lists = append(lists, []struct {
				field string
				ts    []Template
			}{{"nameConstraints." + s.name + ".dns", s.set.DNS}, {"nameConstraints." + s.name + ".ip", s.set.IP},
				{"nameConstraints." + s.name + ".email", s.set.Email}, {"nameConstraints." + s.name + ".uri", s.set.URI}}...)
		}
	}
	for _, l := range lists {
		if err := check(l.field, l.ts, true); err != nil {
			return err
		}
	}
	for _, pol := range e.CertificatePolicies {
		if err := check("certificatePolicies.cps", []Template{pol.CPS}, false); err != nil {
			return err
		}
	}
	if v := p.vars[VarValidity]; v != nil && v.Type != TypeDuration {
		return &VarError{Name: VarValidity, Err: errors.New("must be of type duration")}
	}
	return nil
}

// Summary describes a profile for `qpki profile list`.
type Summary struct {
	Name        string           `json:"name"`
	Description string           `json:"description,omitempty"`
	Algorithms  []algo.Algorithm `json:"algorithms,omitempty"`
	Mode        Mode             `json:"mode,omitempty"`
	CA          bool             `json:"ca"`
	// Source is "builtin" or the override file's path.
	Source string `json:"source"`
	// Overrides is true when a CA-dir file replaces a built-in.
	Overrides bool `json:"overrides,omitempty"`
	// Error is set when the profile does not parse.
	Error string `json:"error,omitempty"`
}

func summarize(name, source string, overrides bool, p *Profile, err error) Summary {
	s := Summary{Name: name, Source: source, Overrides: overrides}
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Description, s.Algorithms, s.Mode, s.CA = p.Description, p.Algorithms, p.Mode, p.IsCA()
	return s
}

func sortSummaries(s []Summary) {
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
}
