package profile

import (
	"crypto/x509"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// Level is how serious a lint finding is.
type Level string

const (
	LevelError   Level = "error"
	LevelWarning Level = "warning"
)

// Finding is one problem Lint found in a profile.
type Finding struct {
	Level   Level  `json:"level"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (f Finding) String() string { return fmt.Sprintf("%s: %s: %s", f.Level, f.Field, f.Message) }

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Level == LevelError {
			return true
		}
	}
	return false
}

// cabfMaxValidity is the longest validity period the CA/Browser Forum
// Baseline Requirements §6.3.2 (ballot SC-081) allow a TLS server
// certificate issued at t.
func cabfMaxValidity(t time.Time) time.Duration {
	const day = 24 * time.Hour
	switch {
	case t.Before(time.Date(2026, time.March, 15, 0, 0, 0, 0, time.UTC)):
		return 398 * day
	case t.Before(time.Date(2027, time.March, 15, 0, 0, 0, 0, time.UTC)):
		return 200 * day
	case t.Before(time.Date(2029, time.March, 15, 0, 0, 0, 0, time.UTC)):
		return 100 * day
	}
	return 47 * day
}

// forbiddenUsages lists, per key family, the key usages its keys cannot
// have (RFC 5480 §3 for ECDSA, RFC 8410 §5 for Ed25519, RFC 9881 for
// ML-DSA, RFC 4055 for RSA; ML-KEM keys only encipher, RFC 9935).
var forbiddenUsages = map[algo.Family]x509.KeyUsage{
	algo.FamilyECDSA:     x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
	algo.FamilyEd25519:   x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageEncipherOnly | x509.KeyUsageDecipherOnly,
	algo.FamilyMLDSA:     x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageEncipherOnly | x509.KeyUsageDecipherOnly,
	algo.FamilySLHDSA:    x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageEncipherOnly | x509.KeyUsageDecipherOnly,
	algo.FamilyComposite: x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageEncipherOnly | x509.KeyUsageDecipherOnly,
	algo.FamilyRSA:       x509.KeyUsageKeyAgreement | x509.KeyUsageEncipherOnly | x509.KeyUsageDecipherOnly,
	algo.FamilyMLKEM:     ^x509.KeyUsageKeyEncipherment,
	// draft-ietf-lamps-pq-composite-kem: keyEncipherment only, as ML-KEM.
	algo.FamilyCompositeKEM: ^x509.KeyUsageKeyEncipherment,
}

// nameVarTypes are the types the standard name variables must have, for
// Apply to fill them from a CSR.
var nameVarTypes = map[string]VarType{
	VarDNSNames: TypeDNSNames, VarIPAddresses: TypeIPList, VarEmails: TypeEmailList, VarURIs: TypeURIList,
}

// Lint returns the schema-level problems of a profile that parsed: what
// RFC 5280 (and, with lint.cabf, the Baseline Requirements) forbid or
// advise against, and declarations that cannot work as written.
func Lint(p *Profile) []Finding { return lintAt(p, time.Now()) }

// lintAt lints as of a date: the Baseline Requirements' limits change.
func lintAt(p *Profile, now time.Time) []Finding {
	var fs []Finding
	add := func(l Level, field, format string, args ...any) {
		fs = append(fs, Finding{Level: l, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	e := &p.Extensions
	ku := x509.KeyUsage(0)
	if e.KeyUsage != nil {
		ku = e.KeyUsage.Usage
	}

	if p.IsCA() {
		if e.KeyUsage == nil || ku&x509.KeyUsageCertSign == 0 {
			add(LevelError, "extensions.keyUsage", "a CA certificate must have keyUsage with keyCertSign (RFC 5280 §4.2.1.3)")
		} else if !e.KeyUsage.Critical {
			add(LevelWarning, "extensions.keyUsage", "should be critical (RFC 5280 §4.2.1.3)")
		}
		if !e.BasicConstraints.Critical {
			add(LevelError, "extensions.basicConstraints", "must be critical in a CA certificate (RFC 5280 §4.2.1.9)")
		}
		if len(p.Subject) == 0 {
			add(LevelError, "subject", "a CA certificate needs a non-empty subject (RFC 5280 §4.1.2.6)")
		}
		if !containsAlg(p.AllowedAlgorithms, p.Algorithm) {
			add(LevelError, "allowedAlgorithms", "does not include the CA's own algorithm %s", p.Algorithm)
		}
		if !p.Lint.Enabled {
			add(LevelWarning, "lint.enabled", "pre-issuance linting is off for a CA profile")
		}
		if !e.SubjectKeyID {
			add(LevelError, "extensions.subjectKeyIdentifier", "CA certificates must have one (RFC 5280 §4.2.1.2)")
		}
		if p.Signature != "" && p.Algorithm.Family() != algo.FamilyRSA {
			add(LevelWarning, "signature", "%s applies to RSA keys only; this CA's key is %s", p.Signature, p.Algorithm)
		}
	} else {
		if ku&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
			add(LevelError, "extensions.keyUsage", "keyCertSign and cRLSign are for CA certificates (set basicConstraints.ca)")
		}
		if e.NameConstraints != nil {
			add(LevelError, "extensions.nameConstraints", "only CA certificates carry name constraints (RFC 5280 §4.2.1.10)")
		}
		if !p.canName() {
			add(LevelError, "subject", "the profile can produce no name: add subject.cn or subjectAltName")
		}
		if !containsAlg(p.AllowedAlgorithms, p.Algorithm) {
			add(LevelWarning, "algorithm", "%s is not among allowedAlgorithms", p.Algorithm)
		}
	}

	for _, a := range p.AllowedAlgorithms {
		aku := ku
		if e.KeyUsage != nil {
			aku = e.KeyUsage.For(a)
		}
		if bad := aku & forbiddenUsages[a.Family()]; bad != 0 {
			add(LevelError, "extensions.keyUsage", "%s keys cannot have %s", a, strings.Join(usageNames(bad), ", "))
		}
	}
	if e.KeyUsage != nil {
		for _, f := range sortedFamilies(e.KeyUsage.ByKeyType) {
			if !allowsFamily(p.AllowedAlgorithms, f) {
				add(LevelWarning, "extensions.keyUsage.byKeyType."+string(f), "never applies: allowedAlgorithms has no %s key", f)
			}
		}
	}
	fs = append(fs, lintUsageConsistency(e)...)
	if p.Mode != "" && (!p.Algorithms[0].IsClassical() || p.Algorithms[1].IsClassical()) {
		add(LevelError, "algorithms", "mode %s wants [classical, post-quantum], got [%s]", p.Mode, joinAlgs(p.Algorithms))
	}

	if nc := e.NameConstraints; nc != nil {
		if nc.Permitted.empty() && nc.Excluded.empty() {
			add(LevelError, "extensions.nameConstraints", "has neither permitted nor excluded names (RFC 5280 §4.2.1.10)")
		}
		if !nc.Critical {
			add(LevelWarning, "extensions.nameConstraints", "should be critical (RFC 5280 §4.2.1.10)")
		}
	}
	for _, c := range e.Custom {
		for _, oid := range schemaExtensionOIDs {
			if c.OID.Equal(oid) {
				add(LevelError, "extensions.custom", "%s is an extension the schema writes itself; use its own key", c.OID)
			}
		}
	}
	fs = append(fs, p.lintLiterals()...)

	used := p.usedVariables()
	for _, v := range p.Variables {
		field := "variables." + v.Name
		if want, ok := nameVarTypes[v.Name]; ok && v.Type != want {
			add(LevelError, field, "the standard variable %s must have type %s", v.Name, want)
		}
		if v.Name == VarCN && (v.Type.IsList() || v.Type == TypeInteger || v.Type == TypeDuration) {
			add(LevelError, field, "cn must be a string, dns_name, email, ip or uri")
		}
		if v.Name == VarValidity {
			if v.maxDur == nil {
				add(LevelWarning, field, "has no max: callers may choose any lifetime")
			}
			if max := cabfMaxValidity(now); p.Lint.CABF && !p.IsCA() && (v.maxDur == nil || *v.maxDur > max) {
				add(LevelError, field, "max must be at most %s for publicly trusted TLS (Baseline Requirements §6.3.2)", FormatDuration(max))
			}
			continue
		}
		if !used[v.Name] {
			if _, isName := nameVarTypes[v.Name]; isName || v.Name == VarCN {
				add(LevelError, field, "no template uses it: names taken from a CSR would be dropped")
			} else {
				add(LevelWarning, field, "declared but no template uses it")
			}
		}
		if v.Required && v.Default != nil {
			add(LevelWarning, field, "required and has a default: the default always applies")
		}
	}

	if p.Lint.CABF {
		if max := cabfMaxValidity(now); !p.IsCA() && p.Validity > max {
			add(LevelError, "validity", "%s exceeds the %s that Baseline Requirements §6.3.2 allow today", FormatDuration(p.Validity), FormatDuration(max))
		}
		if !p.IsCA() && (e.SubjectAltName == nil || len(e.SubjectAltName.DNS)+len(e.SubjectAltName.IP) == 0) {
			add(LevelError, "extensions.subjectAltName", "publicly trusted TLS certificates need DNS or IP names (Baseline Requirements §7.1.2.7.12)")
		}
		if !p.IsCA() && e.SubjectKeyID {
			add(LevelWarning, "extensions.subjectKeyIdentifier", "NOT RECOMMENDED in subscriber certificates (Baseline Requirements §7.1.2.7.6): set it to false")
		}
		for _, a := range p.AllowedAlgorithms {
			if f := a.Family(); f != algo.FamilyRSA && f != algo.FamilyECDSA {
				add(LevelError, "allowedAlgorithms", "%s keys are not allowed in publicly trusted certificates (Baseline Requirements §6.1.5)", a)
			}
		}
	}
	if p.Backdate > 24*time.Hour {
		add(LevelWarning, "backdate", "more than a day")
	}
	return fs
}

func (s NameSet) empty() bool { return len(s.DNS)+len(s.IP)+len(s.Email)+len(s.URI) == 0 }

func usageNames(ku x509.KeyUsage) []string {
	var out []string
	for _, n := range []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"} {
		if ku&keyUsages[n] != 0 {
			out = append(out, n)
		}
	}
	return out
}

// canName reports whether the profile can write any subject CN or SAN.
func (p *Profile) canName() bool {
	for _, a := range p.Subject {
		if a.Key == "cn" {
			return true
		}
	}
	san := p.Extensions.SubjectAltName
	return san != nil && len(san.DNS)+len(san.IP)+len(san.Email)+len(san.URI) > 0
}

// templates returns every template of the profile with its field name.
func (p *Profile) templates() map[string][]Template {
	out := map[string][]Template{}
	for _, a := range p.Subject {
		out["subject."+a.Key] = []Template{a.Value}
	}
	e := &p.Extensions
	out["extensions.crlDistributionPoints"] = e.CRLDistributionPoints
	if san := e.SubjectAltName; san != nil {
		out["extensions.subjectAltName.dns"] = san.DNS
		out["extensions.subjectAltName.ip"] = san.IP
		out["extensions.subjectAltName.email"] = san.Email
		out["extensions.subjectAltName.uri"] = san.URI
	}
	if aia := e.AuthorityInfoAccess; aia != nil {
		out["extensions.authorityInfoAccess.ocsp"] = aia.OCSP
		out["extensions.authorityInfoAccess.caIssuers"] = aia.CAIssuers
	}
	for _, pol := range e.CertificatePolicies {
		out["extensions.certificatePolicies.cps"] = append(out["extensions.certificatePolicies.cps"], pol.CPS)
	}
	if nc := e.NameConstraints; nc != nil {
		for _, s := range []struct {
			name string
			set  NameSet
		}{{"permitted", nc.Permitted}, {"excluded", nc.Excluded}} {
			f := "extensions.nameConstraints." + s.name
			out[f+".dns"], out[f+".ip"], out[f+".email"], out[f+".uri"] = s.set.DNS, s.set.IP, s.set.Email, s.set.URI
		}
	}
	return out
}

func (p *Profile) usedVariables() map[string]bool {
	used := map[string]bool{}
	for _, ts := range p.templates() {
		for _, t := range ts {
			for _, r := range t.Refs() {
				used[r] = true
			}
		}
	}
	return used
}

// lintLiterals checks template entries without variables, which are the
// same in every certificate and can be checked now.
func (p *Profile) lintLiterals() []Finding {
	var fs []Finding
	for field, ts := range p.templates() {
		for _, t := range ts {
			if len(t.Refs()) > 0 || t.Text == "" {
				continue
			}
			var err error
			s := t.Text
			switch {
			case strings.HasSuffix(field, "subjectAltName.dns"):
				err = checkDNSName(strings.ToLower(s), true)
			case strings.HasSuffix(field, "subjectAltName.ip"):
				_, err = parseIP(s)
			case strings.HasSuffix(field, "subjectAltName.email"):
				_, _, err = checkEmail(s)
			case strings.HasSuffix(field, ".uri") && strings.Contains(field, "subjectAltName"):
				_, err = checkURI(s)
			case strings.Contains(field, "crlDistributionPoints"), strings.Contains(field, "authorityInfoAccess"), strings.HasSuffix(field, ".cps"):
				err = checkURL(s)
			case field == "subject.c":
				if len(s) != 2 || strings.ToUpper(s) != s {
					err = fmt.Errorf("want a two-letter upper-case country code")
				}
			case strings.HasPrefix(field, "subject."):
				if max := subjectLimits[strings.TrimPrefix(field, "subject.")]; len([]rune(s)) > max {
					err = fmt.Errorf("longer than %d characters", max)
				}
			}
			if err != nil {
				fs = append(fs, Finding{Level: LevelError, Field: field, Message: fmt.Sprintf("%q: %v", s, err)})
			}
		}
	}
	sortFindings(fs)
	return fs
}

func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Field < fs[j].Field })
}

// ekuUsages are the key usage bits RFC 5280 §4.2.1.12 calls consistent
// with each purpose, and the pairs of them that exclude each other.
var ekuUsages = map[x509.ExtKeyUsage]struct {
	allowed   x509.KeyUsage
	exclusive x509.KeyUsage
}{
	x509.ExtKeyUsageServerAuth:      {x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement, x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement},
	x509.ExtKeyUsageClientAuth:      {x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, 0},
	x509.ExtKeyUsageCodeSigning:     {x509.KeyUsageDigitalSignature, 0},
	x509.ExtKeyUsageEmailProtection: {x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement, x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement},
	x509.ExtKeyUsageTimeStamping:    {x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, 0},
	x509.ExtKeyUsageOCSPSigning:     {x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, 0},
}

// lintUsageConsistency flags key usages no listed purpose allows (the
// rule zlint's e_key_usage_and_extended_key_usage_inconsistent applies).
func lintUsageConsistency(e *Extensions) []Finding {
	if e.KeyUsage == nil || e.ExtKeyUsage == nil || (e.BasicConstraints != nil && e.BasicConstraints.CA) {
		return nil
	}
	var allowed, exclusive x509.KeyUsage
	for _, u := range e.ExtKeyUsage.Usages {
		k, ok := ekuUsages[u]
		if !ok {
			return nil // a purpose RFC 5280 says nothing about
		}
		allowed |= k.allowed
		exclusive |= k.exclusive
	}
	// The default usage and each key type's are checked alike.
	usages := []x509.KeyUsage{e.KeyUsage.Usage}
	for _, f := range sortedFamilies(e.KeyUsage.ByKeyType) {
		usages = append(usages, e.KeyUsage.ByKeyType[f])
	}
	for _, ku := range usages {
		if bad := ku &^ allowed; bad != 0 {
			return []Finding{{LevelError, "extensions.keyUsage", fmt.Sprintf("%s inconsistent with extKeyUsage %s (RFC 5280 §4.2.1.12)",
				strings.Join(usageNames(bad), ", "), strings.Join(e.ExtKeyUsage.Names, ", "))}}
		}
		if len(e.ExtKeyUsage.Usages) == 1 && exclusive != 0 && ku&exclusive == exclusive {
			return []Finding{{LevelError, "extensions.keyUsage", fmt.Sprintf("%s: keyEncipherment or keyAgreement, not both (RFC 5280 §4.2.1.12)", e.ExtKeyUsage.Names[0])}}
		}
	}
	return nil
}

func sortedFamilies(m map[algo.Family]x509.KeyUsage) []algo.Family {
	out := make([]algo.Family, 0, len(m))
	for f := range m {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

func allowsFamily(as []algo.Algorithm, f algo.Family) bool {
	for _, a := range as {
		if a.Family() == f {
			return true
		}
	}
	return false
}
