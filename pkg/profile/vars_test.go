package profile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// varsProfile declares one variable of every type, each used somewhere.
const varsProfile = `
name: test/vars
algorithm: ecdsa-p256
validity: 30d
subject:
  cn: "{{ cn }}"
  o: "{{ s }}-{{ n }}-{{ d }}-{{ e }}-{{ pat }}-{{ ip1 }}-{{ mail }}-{{ u }}-{{ host }}"
extensions:
  subjectAltName:
    dns: ["{{ dns_names }}"]
    ip: ["{{ ip_addresses }}"]
    email: ["{{ emails }}"]
    uri: ["{{ uris }}"]
variables:
  cn: {type: string, max: 10}
  s: {type: string, min: 2, max: 5}
  n: {type: integer, min: 1, max: 10}
  d: {type: duration, min: 1h, max: 30d}
  e: {type: enum, values: [red, green]}
  pat: {type: string, pattern: "[a-z]+[0-9]"}
  host: {type: dns_name, allowedSuffixes: [example.com]}
  dns_names: {type: dns_names, allowedSuffixes: [.example.org, example.com], max: 3, wildcard: true}
  ip1: {type: ip, allowedNetworks: [10.0.0.0/8]}
  ip_addresses: {type: ip_list, allowedNetworks: [192.0.2.0/24, "2001:db8::/32"]}
  mail: {type: email, allowedSuffixes: [example.com]}
  emails: {type: email_list, min: 1}
  u: {type: uri, pattern: "https://.*"}
  uris: {type: uri_list, allowedSuffixes: [example.com]}
  validity: {type: duration, default: 7d, max: 30d}
`

func TestVariableTypes(t *testing.T) {
	p := mustParse(t, varsProfile)
	tests := []struct {
		name, value string
		want        []string // nil: the value must be refused
	}{
		{"s", "ab", []string{"ab"}},
		{"s", "  abcde ", []string{"abcde"}},
		{"s", "a", nil},
		{"s", "abcdef", nil},
		{"s", "a\x00b", nil},
		{"n", "7", []string{"7"}},
		{"n", "+07", []string{"7"}},
		{"n", "0", nil},
		{"n", "11", nil},
		{"n", "1.5", nil},
		{"n", "ten", nil},
		{"d", "2h", []string{"2h"}},
		{"d", "30d", []string{"30d"}},
		{"d", "31d", nil},
		{"d", "30m", nil},
		{"d", "-1h", nil},
		{"d", "soon", nil},
		{"e", "red", []string{"red"}},
		{"e", "blue", nil},
		{"e", "Red", nil},
		{"pat", "abc1", []string{"abc1"}},
		{"pat", "abc1x", nil}, // the pattern must match in full
		{"pat", "1", nil},
		{"host", "example.com", []string{"example.com"}},
		{"host", "WWW.Example.COM", []string{"www.example.com"}},
		{"host", "badexample.com", nil},
		{"host", "www.example.org", nil},
		{"host", "*.example.com", nil}, // no wildcard
		{"host", "-a.example.com", nil},
		{"host", "a..example.com", nil},
		{"host", "a_b.example.com", nil},
		{"host", "192.0.2.1", nil},
		{"dns_names", "a.example.org, example.com,b.example.com", []string{"a.example.org", "example.com", "b.example.com"}},
		{"dns_names", "*.example.com", []string{"*.example.com"}},
		{"dns_names", "example.org", nil}, // .example.org allows only names under it
		{"dns_names", "a.example.net", nil},
		{"dns_names", "a.example.com,b.example.com,c.example.com,d.example.com", nil}, // max 3
		{"dns_names", "a.example.com,a.example.com", []string{"a.example.com"}},
		{"ip1", "10.1.2.3", []string{"10.1.2.3"}},
		{"ip1", "::ffff:10.1.2.3", []string{"10.1.2.3"}},
		{"ip1", "11.1.2.3", nil},
		{"ip1", "10.1.2", nil},
		{"ip1", "10.1.2.3,10.1.2.4", nil}, // a scalar takes one value
		{"ip_addresses", "192.0.2.7,2001:DB8::1", []string{"192.0.2.7", "2001:db8::1"}},
		{"ip_addresses", "198.51.100.1", nil},
		{"ip_addresses", "fe80::1%eth0", nil},
		{"mail", "Alice@EXAMPLE.com", []string{"Alice@example.com"}},
		{"mail", "alice@example.net", nil},
		{"mail", "alice", nil},
		{"mail", "a b@example.com", nil},
		{"mail", "Alice <alice@example.com>", nil},
		{"emails", "a@x.org,b@y.org", []string{"a@x.org", "b@y.org"}},
		{"u", "https://example.com/x", []string{"https://example.com/x"}},
		{"u", "http://example.com/x", nil},
		{"u", "/relative", nil},
		{"uris", "spiffe://example.com/svc,urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", nil}, // urn has no host under example.com
		{"uris", "spiffe://svc.example.com/a", []string{"spiffe://svc.example.com/a"}},
		{"uris", "https://evil.com/", nil},
		{"uris", "https://ex ample.com/", nil},
	}
	for _, tc := range tests {
		vals, err := p.Resolve(map[string]string{tc.name: tc.value})
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s=%q accepted as %v", tc.name, tc.value, vals[tc.name])
				continue
			}
			wantVarErr(t, err, tc.name)
			continue
		}
		if err != nil {
			t.Errorf("%s=%q: %v", tc.name, tc.value, err)
			continue
		}
		if !reflect.DeepEqual(vals[tc.name], tc.want) {
			t.Errorf("%s=%q resolved to %q, want %q", tc.name, tc.value, vals[tc.name], tc.want)
		}
	}
}

func TestResolveDefaultsAndEmpties(t *testing.T) {
	p := mustParse(t, varsProfile)
	vals, err := p.Resolve(map[string]string{"s": "", "dns_names": " , "})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := vals["s"]; ok {
		t.Error("empty value kept")
	}
	if d, ok := vals.Duration("validity"); !ok || d != 7*24*time.Hour {
		t.Errorf("default validity %v %v", d, ok)
	}
	vals, err = p.Resolve(map[string]string{"validity": "2d"})
	if err != nil || vals.Get("validity") != "2d" {
		t.Fatalf("validity override: %v %v", vals, err)
	}
}

func TestUndeclaredVariableRefused(t *testing.T) {
	p := mustLoad(t, "ec/tls-server")
	_, err := p.Resolve(map[string]string{"cn": "a.example.com", "dns_name": "b.example.com"})
	wantVarErr(t, err, "dns_name")
	wantErr(t, err, "not declared", "dns_names") // lists what is declared
	_, err = p.ResolveJSON(map[string]any{"emails": []any{"a@example.com"}})
	wantVarErr(t, err, "emails")
}

func TestResolveJSON(t *testing.T) {
	p := mustParse(t, varsProfile)
	var raw map[string]any
	if err := json.Unmarshal([]byte(`{"n": 5, "dns_names": ["a.example.com", "b.example.com"],
		"ip_addresses": "192.0.2.1,192.0.2.2", "e": ["green"], "s": "abc"}`), &raw); err != nil {
		t.Fatal(err)
	}
	vals, err := p.ResolveJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := Values{"n": {"5"}, "dns_names": {"a.example.com", "b.example.com"}, "ip_addresses": {"192.0.2.1", "192.0.2.2"},
		"e": {"green"}, "s": {"abc"}, "validity": {"7d"}}
	if !reflect.DeepEqual(vals, want) {
		t.Fatalf("got %v, want %v", vals, want)
	}
	if n, ok := vals.Int("n"); !ok || n != 5 {
		t.Errorf("Int %d %v", n, ok)
	}
	// Values survive a JSON round trip (they travel in jobs).
	data, _ := json.Marshal(vals)
	var back map[string]any
	_ = json.Unmarshal(data, &back)
	again, err := p.ResolveJSON(back)
	if err != nil || !reflect.DeepEqual(again, vals) {
		t.Fatalf("round trip: %v %v", again, err)
	}

	for _, bad := range []map[string]any{
		{"n": 1.5},
		{"e": []any{"red", "green"}},
		{"dns_names": []any{"a.example.com", map[string]any{}}},
		{"s": map[string]any{"x": 1}},
	} {
		for name := range bad {
			_, err := p.ResolveJSON(bad)
			wantVarErr(t, err, name)
		}
	}
}

func TestParseVarFlags(t *testing.T) {
	got, err := ParseVarFlags([]string{"cn=My Root CA", "dns_names=a.example.com,b.example.com", "x=a=b", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cn": "My Root CA", "dns_names": "a.example.com,b.example.com", "x": "a=b", "empty": ""}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	for _, bad := range [][]string{{"novalue"}, {"=v"}, {"cn=a", "cn=b"}} {
		if _, err := ParseVarFlags(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReadVarFile(t *testing.T) {
	p := mustLoad(t, "ec/tls-server")
	dir := t.TempDir()
	for file, content := range map[string]string{
		"vars.json": `{"cn": "www.example.com", "dns_names": ["a.example.com"], "validity": "30d"}`,
		"vars.yaml": "cn: www.example.com\ndns_names:\n  - a.example.com\nvalidity: 30d\n",
	} {
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		raw, err := ReadVarFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// --var flags win over the file.
		vals, err := p.ResolveJSON(MergeVars(raw, map[string]string{"validity": "60d"}))
		if err != nil {
			t.Fatal(err)
		}
		if vals.Get("cn") != "www.example.com" || !reflect.DeepEqual(vals["dns_names"], []string{"a.example.com"}) || vals.Get("validity") != "60d" {
			t.Errorf("%s: %v", file, vals)
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("- not\n- an object\n"), 0o600)
	if _, err := ReadVarFile(bad); err == nil {
		t.Error("a list accepted as variables")
	}
	big := filepath.Join(dir, "big.yaml")
	_ = os.WriteFile(big, make([]byte, MaxVarFile+1), 0o600)
	wantErr(t, func() error { _, err := ReadVarFile(big); return err }(), "larger than")
}

func TestParseDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"8760h": 8760 * time.Hour, "365d": 365 * day, "2w": 14 * day, "10y": 3650 * day, "90m": 90 * time.Minute, "0d": 0,
	} {
		if got, err := ParseDuration(s); err != nil || got != want {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"", "d", "-1d", "+1d", "1.5d", "99999999999y", "10", "abc"} {
		if _, err := ParseDuration(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if FormatDuration(20*365*day) != "20y" || FormatDuration(397*day) != "397d" || FormatDuration(90*time.Minute) != "1h30m0s" {
		t.Error("FormatDuration")
	}
}
