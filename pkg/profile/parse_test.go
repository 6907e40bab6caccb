package profile

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

const minimal = `
algorithm: ecdsa-p256
validity: 1d
subject: {cn: "{{ cn }}"}
variables:
  cn: {type: string}
`

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name, yaml, fragment string
	}{
		{"unknown top key", minimal + "colour: blue\n", `unknown key "colour"`},
		{"unknown nested key", minimal + "extensions: {keyUsage: {values: [digitalSignature], critcal: true}}\n", `unknown key "critcal"`},
		{"unknown variable key", strings.Replace(minimal, "{type: string}", "{type: string, maxi: 3}", 1), `unknown key "maxi"`},
		{"duplicate key", minimal + "validity: 2d\n", "already defined"},
		{"unknown algorithm", strings.Replace(minimal, "ecdsa-p256", "ecdsa-p999", 1), `unknown algorithm "ecdsa-p999"`},
		{"unknown allowed algorithm", minimal + "allowedAlgorithms: [ml-dsa-650]\n", "ml-dsa-650"},
		{"pre-hash algorithm", strings.Replace(minimal, "ecdsa-p256", "hash-ml-dsa-65-with-sha512", 1), "signs only with pure ML-DSA and SLH-DSA"},
		{"pre-hash SLH-DSA in algorithms", strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithms: [ecdsa-p256, hash-slh-dsa-sha2-128s-with-sha256]\nmode: catalyst", 1), "use slh-dsa-sha2-128s"},
		{"no algorithm", strings.Replace(minimal, "algorithm: ecdsa-p256", "", 1), "algorithm is required"},
		{"two algorithms without mode", strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithms: [ecdsa-p256, ecdsa-p384]", 1), "mode"},
		{"mode with one algorithm", minimal + "mode: catalyst\n", "catalyst needs"},
		{"unknown mode", strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithms: [ecdsa-p256, ecdsa-p384]\nmode: fusion", 1), `mode "fusion"`},
		{"algorithm and algorithms differ", minimal + "algorithms: [ecdsa-p384, ecdsa-p256]\nmode: catalyst\n", "differ"},
		{"composite of unknown parts", strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithms: [ecdsa-p384, ed25519]\nmode: composite", 1), "composite-ed25519-ecdsa-p384"},
		{"composite algorithm not composite", minimal + "algorithms: [ecdsa-p384, ed25519]\nmode: composite\n", "not a composite"},
		{"alt algorithms without catalyst", minimal + "allowedAltAlgorithms: [ed25519]\n", "catalyst"},
		{"no validity", strings.Replace(minimal, "validity: 1d", "", 1), "validity is required"},
		{"bad validity", strings.Replace(minimal, "1d", "one day", 1), "validity"},
		{"zero validity", strings.Replace(minimal, "1d", "0s", 1), "longer than zero"},
		{"number validity", strings.Replace(minimal, "1d", "365", 1), "validity"},
		{"bad signature", minimal + "signature: ecdsa\n", "signature"},
		{"undeclared reference", strings.Replace(minimal, "{{ cn }}", "{{ name }}", 1), `undeclared variable "name"`},
		{"unclosed reference", strings.Replace(minimal, "{{ cn }}", "{{ cn", 1), "unclosed"},
		{"bad reference", strings.Replace(minimal, "{{ cn }}", "{{ cn | upper }}", 1), "not a variable name"},
		{"list in text", minimal + "extensions: {subjectAltName: {dns: [\"www.{{ names }}\"]}}\n" +
			"  " + "\n", ""},
		{"unknown key usage", minimal + "extensions: {keyUsage: {values: [signEverything]}}\n", `"signEverything"`},
		{"empty key usage", minimal + "extensions: {keyUsage: {values: []}}\n", "no values"},
		{"unknown EKU", minimal + "extensions: {extKeyUsage: {values: [serverauth]}}\n", `"serverauth"`},
		{"key usage for an unknown key type", minimal + "extensions: {keyUsage: {values: [digitalSignature], byKeyType: {dsa: [digitalSignature]}}}\n", `unknown key type "dsa"`},
		{"unknown key usage for a key type", minimal + "extensions: {keyUsage: {values: [digitalSignature], byKeyType: {rsa: [encipherEverything]}}}\n", `keyUsage.byKeyType.rsa: unknown usage "encipherEverything"`},
		{"empty key usage for a key type", minimal + "extensions: {keyUsage: {values: [digitalSignature], byKeyType: {rsa: []}}}\n", "keyUsage.byKeyType.rsa: no values"},
		{"key types in extKeyUsage", minimal + "extensions: {extKeyUsage: {values: [serverAuth], byKeyType: {rsa: [clientAuth]}}}\n", "byKeyType is for keyUsage only"},
		{"pathLen on a leaf", minimal + "extensions: {basicConstraints: {ca: false, pathLen: 0}}\n", "pathLen"},
		{"negative pathLen", minimal + "extensions: {basicConstraints: {ca: true, pathLen: -1}}\n", "pathLen"},
		{"bad policy OID", minimal + "extensions: {certificatePolicies: [{oid: 1.x}]}\n", "certificatePolicies"},
		{"bad custom OID", minimal + "extensions: {custom: [{oid: 3.1, der: '0500'}]}\n", "OID"},
		{"custom without value", minimal + "extensions: {custom: [{oid: 1.2.3}]}\n", "exactly one"},
		{"custom with both values", minimal + "extensions: {custom: [{oid: 1.2.3, der: '0500', utf8: x}]}\n", "exactly one"},
		{"custom bad hex", minimal + "extensions: {custom: [{oid: 1.2.3, der: 'zz'}]}\n", "hex"},
		{"custom not DER", minimal + "extensions: {custom: [{oid: 1.2.3, der: '0501'}]}\n", "DER"},
		{"custom trailing bytes", minimal + "extensions: {custom: [{oid: 1.2.3, der: '05000500'}]}\n", "after"},
		{"custom twice", minimal + "extensions: {custom: [{oid: 1.2.3, der: '0500'}, {oid: 1.2.3, utf8: x}]}\n", "twice"},
		{"unknown variable type", strings.Replace(minimal, "type: string", "type: text", 1), `type "text"`},
		{"bad variable name", strings.Replace(minimal, "  cn:", "  CN:", 1), "CN"},
		{"empty declaration", minimal + "  other:\n", "empty declaration"},
		{"bad pattern", strings.Replace(minimal, "{type: string}", "{type: string, pattern: \"[a-\"}", 1), "pattern"},
		{"pattern on an integer", strings.Replace(minimal, "{type: string}", "{type: integer, pattern: \"1\"}", 1), "pattern"},
		{"enum without values", strings.Replace(minimal, "{type: string}", "{type: enum}", 1), "enum"},
		{"values without enum", strings.Replace(minimal, "{type: string}", "{type: string, values: [a]}", 1), "enum"},
		{"suffix on a string", strings.Replace(minimal, "{type: string}", "{type: string, allowedSuffixes: [a.com]}", 1), "allowedSuffixes"},
		{"bad suffix", strings.Replace(minimal, "{type: string}", "{type: dns_name, allowedSuffixes: [\"a b\"]}", 1), "suffix"},
		{"bad network", strings.Replace(minimal, "{type: string}", "{type: ip, allowedNetworks: [10.0.0.0]}", 1), "CIDR"},
		{"wildcard on a string", strings.Replace(minimal, "{type: string}", "{type: string, wildcard: true}", 1), "wildcard"},
		{"bad min", strings.Replace(minimal, "{type: string}", "{type: integer, min: x}", 1), "min"},
		{"min above max", strings.Replace(minimal, "{type: string}", "{type: duration, min: 2d, max: 1d}", 1), "greater"},
		{"min on enum", strings.Replace(minimal, "{type: string}", "{type: enum, values: [a], min: 1}", 1), "min/max"},
		{"bad default", strings.Replace(minimal, "{type: string}", "{type: integer, default: ten}", 1), "default"},
		{"default outside bounds", strings.Replace(minimal, "{type: string}", "{type: duration, default: 10y, max: 1y}", 1), "default"},
		{"validity not a duration", minimal + "  validity: {type: string}\n", "duration"},
		{"bad name", "name: EC/Server\n" + minimal, "name"},
		{"two documents", minimal + "---\n" + minimal, "more than one"},
		{"empty", "", "empty"},
		{"not a mapping", "- a\n- b\n", "cannot unmarshal"},
		{"oversized", minimal + "#" + strings.Repeat("x", MaxProfileSize), "larger than"},
	}
	for _, tc := range tests {
		if tc.name == "list in text" {
			tc.yaml = minimal + "  names: {type: dns_names}\nextensions: {subjectAltName: {dns: [\"www.{{ names }}\"]}}\n"
			tc.fragment = "must stand alone"
		}
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			wantErr(t, err, "profile", tc.fragment)
			if strings.Contains(err.Error(), "profile.") {
				t.Errorf("error leaks Go type names: %v", err)
			}
		})
	}
}

func TestParseKeepsVariableOrder(t *testing.T) {
	p := mustLoad(t, "ec/tls-server")
	var names []string
	for _, v := range p.Variables {
		names = append(names, v.Name)
	}
	if got := strings.Join(names, ","); got != "cn,dns_names,ip_addresses,o,ou,c,validity,crl_url,ocsp_url,ca_issuers_url" {
		t.Fatalf("order %s", got)
	}
}

func TestParseHybridSchema(t *testing.T) {
	catalyst := mustParse(t, strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithms: [ecdsa-p384, ml-dsa-65]\nmode: catalyst\nallowedAltAlgorithms: [ml-dsa-65, ml-dsa-87]", 1))
	if catalyst.Mode != ModeCatalyst || catalyst.Algorithm != algo.ECDSAP384 || !reflect.DeepEqual(catalyst.Algorithms, []algo.Algorithm{algo.ECDSAP384, algo.MLDSA65}) ||
		!reflect.DeepEqual(catalyst.AllowedAltAlgorithms, []algo.Algorithm{algo.MLDSA65, algo.MLDSA87}) {
		t.Fatalf("catalyst %+v", catalyst)
	}
	if fs := Lint(catalyst); len(fs) > 0 {
		t.Errorf("catalyst lint %v", fs)
	}
	// Apply checks the alternative key's algorithm.
	in := Input{Values: Values{"cn": {"x"}}, PublicKeyAlgorithm: algo.ECDSAP384, AltPublicKeyAlgorithm: algo.MLDSA87}
	if _, err := catalyst.Apply(in); err != nil {
		t.Error(err)
	}
	in.AltPublicKeyAlgorithm = algo.MLDSA44
	wantErr(t, func() error { _, err := catalyst.Apply(in); return err }(), "alternative", "ml-dsa-44")

	// The alternative algorithms default to the post-quantum family.
	def := mustParse(t, strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithms: [ecdsa-p384, ml-dsa-65]\nmode: catalyst", 1))
	if !containsAlg(def.AllowedAltAlgorithms, algo.MLDSA44) || containsAlg(def.AllowedAltAlgorithms, algo.ECDSAP256) {
		t.Errorf("default alt %v", def.AllowedAltAlgorithms)
	}

	// Composite: the composite algorithm is found by the naming convention...
	composite := mustParse(t, strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithms: [ecdsa-p256, ml-dsa-65]\nmode: composite", 1))
	if composite.Algorithm != algo.CompositeMLDSA65ECDSAP256 || composite.Mode != ModeComposite || !containsAlg(composite.AllowedAlgorithms, composite.Algorithm) {
		t.Fatalf("composite %+v", composite)
	}
	if _, err := composite.Apply(Input{Values: Values{"cn": {"x"}}, PublicKeyAlgorithm: algo.CompositeMLDSA65ECDSAP256}); err != nil {
		t.Error(err)
	}
	// ...or named where the convention does not reach (RSA variants).
	_, err := Parse([]byte(strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithms: [rsa-3072, ml-dsa-65]\nmode: composite", 1)))
	wantErr(t, err, "name the composite algorithm")
	named := mustParse(t, strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithm: composite-mldsa65-rsa3072-pss\nalgorithms: [rsa-3072, ml-dsa-65]\nmode: composite", 1))
	if named.Algorithm != algo.CompositeMLDSA65RSA3072PSS {
		t.Errorf("named %s", named.Algorithm)
	}

	// Lint wants [classical, post-quantum].
	swapped := mustParse(t, strings.Replace(minimal, "algorithm: ecdsa-p256", "algorithms: [ml-dsa-65, ecdsa-p384]\nmode: catalyst", 1))
	found := false
	for _, f := range Lint(swapped) {
		found = found || f.Field == "algorithms" && f.Level == LevelError
	}
	if !found {
		t.Error("catalyst with the post-quantum algorithm first not flagged")
	}
}

func TestLintFindings(t *testing.T) {
	tests := []struct {
		name, yaml, field string
		level             Level
	}{
		{"CA without keyCertSign", `
algorithm: ecdsa-p384
validity: 1y
subject: {cn: CA}
extensions:
  keyUsage: {values: [cRLSign]}
  basicConstraints: {ca: true}`, "extensions.keyUsage", LevelError},
		{"CA without keyUsage", `
algorithm: ecdsa-p384
validity: 1y
subject: {cn: CA}
extensions: {basicConstraints: {ca: true}}`, "extensions.keyUsage", LevelError},
		{"CA with non-critical basicConstraints", `
algorithm: ecdsa-p384
validity: 1y
subject: {cn: CA}
extensions: {keyUsage: {values: [keyCertSign]}, basicConstraints: {ca: true, critical: false}}`, "extensions.basicConstraints", LevelError},
		{"CA without subject", `
algorithm: ecdsa-p384
validity: 1y
extensions: {keyUsage: {values: [keyCertSign]}, basicConstraints: {ca: true}}`, "subject", LevelError},
		{"CA with lint off", `
algorithm: ecdsa-p384
validity: 1y
subject: {cn: CA}
lint: {enabled: false}
extensions: {keyUsage: {values: [keyCertSign]}, basicConstraints: {ca: true}}`, "lint.enabled", LevelWarning},
		{"key type usage its keys cannot have", `
algorithm: ecdsa-p256
allowedAlgorithms: [ecdsa-p256, rsa-2048]
validity: 1d
subject: {cn: "{{ cn }}"}
variables: {cn: {type: string}}
extensions:
  keyUsage: {values: [digitalSignature], byKeyType: {ecdsa: [digitalSignature, keyEncipherment]}}`, "extensions.keyUsage", LevelError},
		{"key type usage that never applies", `
algorithm: ecdsa-p256
validity: 1d
subject: {cn: "{{ cn }}"}
variables: {cn: {type: string}}
extensions:
  keyUsage: {values: [digitalSignature], byKeyType: {rsa: [digitalSignature, keyEncipherment]}}`, "extensions.keyUsage.byKeyType.rsa", LevelWarning},
		{"key type usage inconsistent with extKeyUsage", `
algorithm: rsa-2048
validity: 1d
subject: {cn: "{{ cn }}"}
variables: {cn: {type: string}}
extensions:
  keyUsage: {values: [digitalSignature], byKeyType: {rsa: [digitalSignature, keyCertSign]}}
  extKeyUsage: {values: [codeSigning]}`, "extensions.keyUsage", LevelError},
		{"CA key outside allowed", `
algorithm: ecdsa-p384
allowedAlgorithms: [ed25519]
validity: 1y
subject: {cn: CA}
extensions: {keyUsage: {values: [keyCertSign]}, basicConstraints: {ca: true}}`, "allowedAlgorithms", LevelError},
		{"pss on an EC CA", `
algorithm: ecdsa-p384
signature: pss
validity: 1y
subject: {cn: CA}
extensions: {keyUsage: {values: [keyCertSign]}, basicConstraints: {ca: true}}`, "signature", LevelWarning},
		{"leaf with keyCertSign", minimal + "extensions: {keyUsage: {values: [digitalSignature, keyCertSign]}}", "extensions.keyUsage", LevelError},
		{"ECDSA with keyEncipherment", minimal + "extensions: {keyUsage: {values: [digitalSignature, keyEncipherment]}}", "extensions.keyUsage", LevelError},
		{"Ed25519 with keyAgreement", strings.Replace(minimal, "ecdsa-p256", "ed25519", 1) + "extensions: {keyUsage: {values: [keyAgreement]}}", "extensions.keyUsage", LevelError},
		{"ML-DSA with keyEncipherment", strings.Replace(minimal, "ecdsa-p256", "ml-dsa-65", 1) + "extensions: {keyUsage: {values: [digitalSignature, keyEncipherment]}}", "extensions.keyUsage", LevelError},
		{"ML-KEM with digitalSignature", strings.Replace(minimal, "ecdsa-p256", "ml-kem-768", 1) + "extensions: {keyUsage: {values: [digitalSignature]}}", "extensions.keyUsage", LevelError},
		{"RSA with keyAgreement", strings.Replace(minimal, "ecdsa-p256", "rsa-2048", 1) + "extensions: {keyUsage: {values: [keyAgreement]}}", "extensions.keyUsage", LevelError},
		{"leaf with name constraints", minimal + "extensions: {nameConstraints: {permitted: {dns: [a.com]}}}", "extensions.nameConstraints", LevelError},
		{"empty name constraints", `
algorithm: ecdsa-p384
validity: 1y
subject: {cn: CA}
extensions: {keyUsage: {values: [keyCertSign]}, basicConstraints: {ca: true}, nameConstraints: {critical: false}}`, "extensions.nameConstraints", LevelError},
		{"leaf without names", "algorithm: ecdsa-p256\nvalidity: 1d\nsubject: {o: Org}\n", "subject", LevelError},
		{"codeSigning with contentCommitment", minimal + "extensions: {keyUsage: {values: [digitalSignature, contentCommitment]}, extKeyUsage: {values: [codeSigning]}}", "extensions.keyUsage", LevelError},
		{"serverAuth with keyEncipherment and keyAgreement", strings.Replace(minimal, "ecdsa-p256", "rsa-2048", 1) + "extensions: {keyUsage: {values: [keyEncipherment, keyAgreement]}, extKeyUsage: {values: [serverAuth]}}", "extensions.keyUsage", LevelError},
		{"unused variable", minimal + "  extra: {type: string}\n", "variables.extra", LevelWarning},
		{"unused name variable", minimal + "  dns_names: {type: dns_names}\n", "variables.dns_names", LevelError},
		{"name variable of the wrong type", minimal + "  dns_names: {type: string}\nextensions: {subjectAltName: {dns: [\"{{ dns_names }}\"]}}\n", "variables.dns_names", LevelError},
		{"validity without max", minimal + "  validity: {type: duration}\n", "variables.validity", LevelWarning},
		{"required with default", strings.Replace(minimal, "{type: string}", "{type: string, required: true, default: x}", 1), "variables.cn", LevelWarning},
		{"custom standard extension", minimal + "extensions: {custom: [{oid: 2.5.29.17, der: '3000'}]}", "extensions.custom", LevelError},
		{"bad literal DNS name", minimal + "extensions: {subjectAltName: {dns: [bad_name.com]}}", "extensions.subjectAltName.dns", LevelError},
		{"bad literal CRL URL", minimal + "extensions: {crlDistributionPoints: [ftp://x.com/crl]}", "extensions.crlDistributionPoints", LevelError},
		{"bad literal country", strings.Replace(minimal, "subject: {cn: \"{{ cn }}\"}", "subject: {cn: \"{{ cn }}\", c: France}", 1), "subject.c", LevelError},
		{"CABF clean", strings.Replace(minimal, "validity: 1d", "validity: 30d\nlint: {enabled: true, cabf: true}", 1) + "extensions: {subjectKeyIdentifier: false, subjectAltName: {dns: [\"{{ cn }}\"]}}\n", "", LevelError},
		{"CABF with subject key identifier", strings.Replace(minimal, "validity: 1d", "validity: 1d\nlint: {cabf: true}", 1) + "extensions: {subjectAltName: {dns: [\"{{ cn }}\"]}}\n", "extensions.subjectKeyIdentifier", LevelWarning},
		{"CABF Ed25519", strings.Replace(minimal, "ecdsa-p256", "ed25519", 1) + "lint: {cabf: true}\nextensions: {subjectAltName: {dns: [\"{{ cn }}\"]}}\n", "allowedAlgorithms", LevelError},
		{"CA without subject key identifier", `
algorithm: ecdsa-p384
validity: 1y
subject: {cn: CA}
extensions: {subjectKeyIdentifier: false, keyUsage: {values: [keyCertSign]}, basicConstraints: {ca: true}}`, "extensions.subjectKeyIdentifier", LevelError},
		{"CABF without SAN", strings.Replace(minimal, "validity: 1d", "validity: 1d\nlint: {cabf: true}", 1), "extensions.subjectAltName", LevelError},
		{"CABF long validity", strings.Replace(minimal, "validity: 1d", "validity: 2y\nlint: {cabf: true}", 1) + "extensions: {subjectAltName: {dns: [\"{{ cn }}\"]}}\n", "validity", LevelError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := Lint(mustParse(t, tc.yaml))
			if tc.field == "" { // a clean profile
				if len(fs) > 0 {
					t.Fatalf("findings %v", fs)
				}
				return
			}
			for _, f := range fs {
				if f.Field == tc.field && f.Level == tc.level {
					if tc.level == LevelError && !HasErrors(fs) {
						t.Error("HasErrors false")
					}
					return
				}
			}
			t.Fatalf("no %s on %s in %v", tc.level, tc.field, fs)
		})
	}
}

// The Baseline Requirements' limit shrinks over time (ballot SC-081).
func TestLintCABFValidityByDate(t *testing.T) {
	p := mustParse(t, strings.Replace(minimal, "validity: 1d", "validity: 150d\nlint: {cabf: true}", 1)+
		"extensions: {subjectKeyIdentifier: false, subjectAltName: {dns: [\"{{ cn }}\"]}}\n")
	for _, tc := range []struct {
		date  time.Time
		error bool
	}{
		{time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC), false},  // 398 days
		{time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), false}, // 200 days
		{time.Date(2027, 3, 15, 0, 0, 0, 0, time.UTC), true},   // 100 days
		{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), true},    // 47 days
	} {
		if got := HasErrors(lintAt(p, tc.date)); got != tc.error {
			t.Errorf("%s: errors %v, want %v: %v", tc.date.Format(time.DateOnly), got, tc.error, lintAt(p, tc.date))
		}
	}
}
