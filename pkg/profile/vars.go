package profile

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// VarType is the type of a profile variable.
type VarType string

const (
	TypeString    VarType = "string"
	TypeInteger   VarType = "integer"
	TypeDuration  VarType = "duration"
	TypeEnum      VarType = "enum"
	TypeDNSName   VarType = "dns_name"
	TypeDNSNames  VarType = "dns_names"
	TypeIP        VarType = "ip"
	TypeIPList    VarType = "ip_list"
	TypeEmail     VarType = "email"
	TypeEmailList VarType = "email_list"
	TypeURI       VarType = "uri"
	TypeURIList   VarType = "uri_list"
)

// itemTypes maps each type to the type of one of its values.
var itemTypes = map[VarType]VarType{
	TypeString: TypeString, TypeInteger: TypeInteger, TypeDuration: TypeDuration, TypeEnum: TypeEnum,
	TypeDNSName: TypeDNSName, TypeDNSNames: TypeDNSName,
	TypeIP: TypeIP, TypeIPList: TypeIP,
	TypeEmail: TypeEmail, TypeEmailList: TypeEmail,
	TypeURI: TypeURI, TypeURIList: TypeURI,
}

// IsList reports whether the type holds several values.
func (t VarType) IsList() bool { return itemTypes[t] != t }

// Item returns the type of one value of t.
func (t VarType) Item() VarType { return itemTypes[t] }

// Standard variable names, the same in every built-in profile. Apply fills
// the name variables from a CSR when they are not given.
const (
	VarCN          = "cn"
	VarDNSNames    = "dns_names"
	VarIPAddresses = "ip_addresses"
	VarEmails      = "emails"
	VarURIs        = "uris"
	VarO           = "o"
	VarOU          = "ou"
	VarC           = "c"
	VarValidity    = "validity"
)

// Limits on user input.
const (
	maxItems     = 1000    // values in one list variable
	maxValueLen  = 1024    // bytes in one value
	MaxVarFile   = 1 << 20 // bytes in a --var-file
	maxDNSLength = 253
)

// Variable is a declared profile variable and its constraints.
type Variable struct {
	Name        string
	Description string
	Type        VarType
	Required    bool
	// Default holds the canonical default values; nil when there is none.
	Default []string
	// Pattern, when set, must match each value in full.
	Pattern string
	// Values lists the choices of an enum.
	Values []string
	// AllowedSuffixes restricts DNS names (and the domains of e-mail
	// addresses and URI hosts): "example.com" allows example.com and every
	// name under it, ".example.com" only names under it.
	AllowedSuffixes []string
	// AllowedNetworks restricts IP addresses.
	AllowedNetworks []netip.Prefix
	// Wildcard allows "*.example.com" DNS names.
	Wildcard bool
	// Min and Max bound an integer's or a duration's value, a string's
	// length, or a list's number of values; empty when unbounded.
	Min, Max string

	pattern        *regexp.Regexp
	minInt, maxInt *int64
	minDur, maxDur *time.Duration
}

// VarError is an invalid, undeclared or missing variable. Value is the
// offending value, when one is to blame.
type VarError struct {
	Name  string
	Value string
	Err   error
}

func (e *VarError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("variable %q: %q: %v", e.Name, e.Value, e.Err)
	}
	return fmt.Sprintf("variable %q: %v", e.Name, e.Err)
}

func (e *VarError) Unwrap() error { return e.Err }

func varErr(name, value string, format string, args ...any) *VarError {
	return &VarError{Name: name, Value: value, Err: fmt.Errorf(format, args...)}
}

// Values are resolved, validated variable values by name, in canonical
// form (DNS names in lower case, IP addresses as net/netip prints them).
// A scalar has exactly one value. Values marshal to JSON as they are and
// resolve again to the same Values, so they can travel in a job.
type Values map[string][]string

// Get returns a scalar variable's value, or "" when it is not set.
func (v Values) Get(name string) string {
	if len(v[name]) == 0 {
		return ""
	}
	return v[name][0]
}

// List returns a variable's values.
func (v Values) List(name string) []string { return v[name] }

// Duration returns a duration variable's value.
func (v Values) Duration(name string) (time.Duration, bool) {
	d, err := ParseDuration(v.Get(name))
	return d, err == nil
}

// Int returns an integer variable's value.
func (v Values) Int(name string) (int64, bool) {
	n, err := strconv.ParseInt(v.Get(name), 10, 64)
	return n, err == nil
}

// Var returns the declared variable called name, or nil.
func (p *Profile) Var(name string) *Variable { return p.vars[name] }

// Resolve validates --var strings against the profile's declarations and
// adds the defaults. List variables take comma-separated values. An
// undeclared variable or an invalid value is a *VarError naming it.
// Required variables are checked by Apply, which may take names from a CSR.
func (p *Profile) Resolve(raw map[string]string) (Values, error) {
	in := make(map[string]any, len(raw))
	for k, v := range raw {
		in[k] = v
	}
	return p.ResolveJSON(in)
}

// ResolveJSON is Resolve for decoded JSON or YAML: a value is a string, a
// number, a boolean or an array of those; a list variable also takes a
// comma-separated string.
func (p *Profile) ResolveJSON(raw map[string]any) (Values, error) {
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	out := Values{}
	for _, name := range names {
		v := p.vars[name]
		if v == nil {
			return nil, varErr(name, "", "not declared by profile %s (it declares: %s)", p.Name, strings.Join(p.varNames(), ", "))
		}
		items, err := v.normalize(raw[name])
		if err != nil {
			return nil, err
		}
		if len(items) > 0 {
			out[name] = items
		}
	}
	for _, v := range p.Variables {
		if _, set := out[v.Name]; !set && v.Default != nil {
			out[v.Name] = append([]string(nil), v.Default...)
		}
	}
	return out, nil
}

func (p *Profile) varNames() []string {
	names := make([]string, len(p.Variables))
	for i, v := range p.Variables {
		names[i] = v.Name
	}
	if len(names) == 0 {
		return []string{"nothing"}
	}
	return names
}

// ParseVarFlags turns repeated --var k=v flags into a map. The value is
// everything after the first "=".
func ParseVarFlags(kv []string) (map[string]string, error) {
	out := make(map[string]string, len(kv))
	for _, s := range kv {
		k, v, ok := strings.Cut(s, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--var %q: want name=value", s)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--var: variable %q given twice (list variables take a,b,c)", k)
		}
		out[k] = v
	}
	return out, nil
}

// ReadVarFile reads a --var-file: a YAML or JSON object of variable values.
func ReadVarFile(path string) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxVarFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxVarFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxVarFile)
	}
	vars, err := ParseVarData(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return vars, nil
}

// ParseVarData decodes variable values from a YAML or JSON object.
func ParseVarData(data []byte) (map[string]any, error) {
	if len(data) > MaxVarFile {
		return nil, fmt.Errorf("variables larger than %d bytes", MaxVarFile)
	}
	var out map[string]any
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("variables: %v", err)
	}
	if out == nil {
		out = map[string]any{}
	}
	return out, nil
}

// MergeVars lays --var flags over --var-file values; flags win.
func MergeVars(file map[string]any, flags map[string]string) map[string]any {
	out := make(map[string]any, len(file)+len(flags))
	for k, v := range file {
		out[k] = v
	}
	for k, v := range flags {
		out[k] = v
	}
	return out
}

// scalarString formats one JSON/YAML scalar.
func scalarString(x any) (string, bool) {
	switch x := x.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

// normalize validates a raw value and returns its canonical values.
func (v *Variable) normalize(raw any) ([]string, error) {
	var items []string
	switch x := raw.(type) {
	case nil:
	case []string:
		items = append(items, x...)
	case []any:
		for _, e := range x {
			s, ok := scalarString(e)
			if !ok {
				return nil, varErr(v.Name, "", "list items must be strings, not %T", e)
			}
			items = append(items, s)
		}
	default:
		s, ok := scalarString(x)
		if !ok {
			return nil, varErr(v.Name, "", "unsupported value of type %T", x)
		}
		if v.Type.IsList() {
			items = strings.Split(s, ",")
		} else {
			items = []string{s}
		}
	}
	out := make([]string, 0, len(items))
	seen := map[string]bool{}
	for _, s := range items {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if len(s) > maxValueLen {
			return nil, varErr(v.Name, s[:32]+"...", "longer than %d bytes", maxValueLen)
		}
		c, err := v.checkItem(s)
		if err != nil {
			return nil, &VarError{Name: v.Name, Value: s, Err: err}
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	if !v.Type.IsList() && len(out) > 1 {
		return nil, varErr(v.Name, "", "takes one value, got %d", len(out))
	}
	if v.Type.IsList() && len(out) > 0 {
		if len(out) > maxItems {
			return nil, varErr(v.Name, "", "more than %d values", maxItems)
		}
		if v.minInt != nil && int64(len(out)) < *v.minInt {
			return nil, varErr(v.Name, "", "needs at least %d values, got %d", *v.minInt, len(out))
		}
		if v.maxInt != nil && int64(len(out)) > *v.maxInt {
			return nil, varErr(v.Name, "", "takes at most %d values, got %d", *v.maxInt, len(out))
		}
	}
	return out, nil
}

// checkItem validates one value and returns its canonical form.
func (v *Variable) checkItem(s string) (string, error) {
	if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "", fmt.Errorf("contains invalid or control characters")
	}
	switch v.Type.Item() {
	case TypeString:
		n := int64(utf8.RuneCountInString(s))
		if v.minInt != nil && n < *v.minInt {
			return "", fmt.Errorf("shorter than %d characters", *v.minInt)
		}
		if v.maxInt != nil && n > *v.maxInt {
			return "", fmt.Errorf("longer than %d characters", *v.maxInt)
		}
	case TypeInteger:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return "", fmt.Errorf("not an integer")
		}
		if v.minInt != nil && n < *v.minInt {
			return "", fmt.Errorf("less than the minimum %d", *v.minInt)
		}
		if v.maxInt != nil && n > *v.maxInt {
			return "", fmt.Errorf("more than the maximum %d", *v.maxInt)
		}
		s = strconv.FormatInt(n, 10)
	case TypeDuration:
		d, err := ParseDuration(s)
		if err != nil {
			return "", err
		}
		if v.minDur != nil && d < *v.minDur {
			return "", fmt.Errorf("shorter than the minimum %s", v.Min)
		}
		if v.maxDur != nil && d > *v.maxDur {
			return "", fmt.Errorf("longer than the maximum %s", v.Max)
		}
	case TypeEnum:
		for _, c := range v.Values {
			if s == c {
				return s, nil
			}
		}
		return "", fmt.Errorf("not one of %s", strings.Join(v.Values, ", "))
	case TypeDNSName:
		s = strings.ToLower(s)
		if err := checkDNSName(s, v.Wildcard); err != nil {
			return "", err
		}
		if !underSuffix(s, v.AllowedSuffixes) {
			return "", fmt.Errorf("not under an allowed suffix (%s)", strings.Join(v.AllowedSuffixes, ", "))
		}
	case TypeIP:
		a, err := parseIP(s)
		if err != nil {
			return "", err
		}
		if !inNetworks(a, v.AllowedNetworks) {
			return "", fmt.Errorf("not in an allowed network (%s)", joinPrefixes(v.AllowedNetworks))
		}
		s = a.String()
	case TypeEmail:
		c, domain, err := checkEmail(s)
		if err != nil {
			return "", err
		}
		if !underSuffix(domain, v.AllowedSuffixes) {
			return "", fmt.Errorf("domain not under an allowed suffix (%s)", strings.Join(v.AllowedSuffixes, ", "))
		}
		s = c
	case TypeURI:
		host, err := checkURI(s)
		if err != nil {
			return "", err
		}
		if len(v.AllowedSuffixes) > 0 && !underSuffix(strings.ToLower(host), v.AllowedSuffixes) {
			return "", fmt.Errorf("host not under an allowed suffix (%s)", strings.Join(v.AllowedSuffixes, ", "))
		}
	}
	if v.pattern != nil && !v.pattern.MatchString(s) {
		return "", fmt.Errorf("does not match the pattern %s", v.Pattern)
	}
	return s, nil
}
