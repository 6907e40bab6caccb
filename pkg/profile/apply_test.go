package profile

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// suffixProfile is ec/tls-server restricted to example.com.
func suffixProfile(t *testing.T) *Profile {
	data, err := Builtin("ec/tls-server")
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("    # allowedSuffixes: [example.com]"), []byte("    allowedSuffixes: [example.com]"))
	data = bytes.ReplaceAll(data, []byte("    # allowedNetworks: [10.0.0.0/8]"), []byte("    allowedNetworks: [10.0.0.0/8]"))
	p := mustParse(t, string(data))
	if len(p.Var("dns_names").AllowedSuffixes) != 1 || len(p.Var("cn").AllowedSuffixes) != 1 {
		t.Fatal("suffixes not enabled")
	}
	return p
}

func TestApplyTakesNamesFromCSR(t *testing.T) {
	testKeys(t)
	p := mustLoad(t, "ec/tls-server")
	csr := makeCSR(t, keyP256, "www.example.com", []string{"www.example.com", "API.example.com"}, []string{"192.0.2.9"}, nil, nil)
	tmpl, err := p.Apply(Input{CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	c := sign(t, tmpl, csr.PublicKey)
	if c.Subject.CommonName != "www.example.com" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if want := []string{"www.example.com", "api.example.com"}; !reflect.DeepEqual(c.DNSNames, want) {
		t.Errorf("DNS %v, want %v", c.DNSNames, want)
	}
	if len(c.IPAddresses) != 1 || c.IPAddresses[0].String() != "192.0.2.9" {
		t.Errorf("IPs %v", c.IPAddresses)
	}
	if len(c.SubjectKeyId) != 20 {
		t.Error("no subject key id from the CSR's key")
	}
}

func TestApplyRefusesCSRNames(t *testing.T) {
	testKeys(t)
	strict := suffixProfile(t)
	tlsServer := mustLoad(t, "ec/tls-server")
	tests := []struct {
		name      string
		p         *Profile
		csr       *x509.CertificateRequest
		vars      map[string]string
		fragments []string
	}{
		{"DNS name outside suffixes", strict, makeCSR(t, keyP256, "", []string{"www.example.com", "www.evil.com"}, nil, nil, nil), nil,
			[]string{`"www.evil.com"`, "dns_names", "suffix"}},
		{"CN outside suffixes", strict, makeCSR(t, keyP256, "evil.com", nil, nil, nil, nil), nil,
			[]string{`"evil.com"`, "common name"}},
		{"IP outside networks", strict, makeCSR(t, keyP256, "a.example.com", nil, []string{"192.0.2.1"}, nil, nil), nil,
			[]string{`"192.0.2.1"`, "ip_addresses"}},
		{"e-mail in a server profile", tlsServer, makeCSR(t, keyP256, "", []string{"a.example.com"}, nil, []string{"a@example.com"}, nil), nil,
			[]string{`"a@example.com"`, "emails"}},
		{"URI in a server profile", tlsServer, makeCSR(t, keyP256, "", nil, nil, nil, []string{"spiffe://x/y"}), nil,
			[]string{`"spiffe://x/y"`, "uris"}},
		{"CSR name not among the vars", tlsServer, makeCSR(t, keyP256, "", []string{"a.example.com", "b.example.com"}, nil, nil, nil),
			map[string]string{"dns_names": "a.example.com"}, []string{`"b.example.com"`, "not among"}},
		{"CSR CN not among the vars", tlsServer, makeCSR(t, keyP256, "c.example.com", nil, nil, nil, nil),
			map[string]string{"cn": "a.example.com", "dns_names": "b.example.com"}, []string{`"c.example.com"`}},
		{"CSR IP not among the vars", tlsServer, makeCSR(t, keyP256, "", nil, []string{"192.0.2.2"}, nil, nil),
			map[string]string{"ip_addresses": "192.0.2.1"}, []string{`"192.0.2.2"`}},
		{"wildcard CN when not allowed", mustLoad(t, "ec/tls-client"), makeCSR(t, keyP256, "", []string{"*.example.com"}, nil, nil, nil), nil,
			[]string{`"*.example.com"`, "wildcard"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := tc.p.Resolve(tc.vars)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tc.p.Apply(Input{Values: vals, CSR: tc.csr})
			wantErr(t, err, tc.fragments...)
			var ne *NameError
			if !errors.As(err, &ne) || `"`+ne.Name+`"` != tc.fragments[0] {
				t.Errorf("want a NameError for %s, got %#v", tc.fragments[0], err)
			}
		})
	}
}

func TestApplyCSRSubsetOfVars(t *testing.T) {
	testKeys(t)
	p := mustLoad(t, "ec/tls-server")
	vals, err := p.Resolve(map[string]string{"cn": "a.example.com", "dns_names": "b.example.com,c.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	csr := makeCSR(t, keyP256, "B.example.com", []string{"b.example.com"}, nil, nil, nil)
	tmpl, err := p.Apply(Input{Values: vals, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	// The vars decide: the CSR's subset adds nothing.
	if tmpl.Subject.CommonName != "a.example.com" || !reflect.DeepEqual(tmpl.DNSNames, []string{"a.example.com", "b.example.com", "c.example.com"}) {
		t.Errorf("CN %q DNS %v", tmpl.Subject.CommonName, tmpl.DNSNames)
	}
}

func TestApplyKeyAlgorithm(t *testing.T) {
	testKeys(t)
	p := mustLoad(t, "ec/tls-server")
	rsaCSR := makeCSR(t, keyRSA, "a.example.com", nil, nil, nil, nil)
	_, err := p.Apply(Input{CSR: rsaCSR})
	wantErr(t, err, "rsa-2048", "not allowed", "ecdsa-p256")
	_, err = p.Apply(Input{CSR: makeCSR(t, keyEd, "a.example.com", nil, nil, nil, nil)})
	wantErr(t, err, "ed25519", "not allowed")
	// A declared algorithm that contradicts the key is refused.
	_, err = p.Apply(Input{CSR: makeCSR(t, keyP256, "a.example.com", nil, nil, nil, nil), PublicKeyAlgorithm: algo.ECDSAP384})
	wantErr(t, err, "ecdsa-p384")
	// Without any key the algorithm must be given.
	_, err = p.Apply(Input{Values: Values{"cn": {"a.example.com"}}})
	wantErr(t, err, "algorithm")
	if _, err := p.Apply(Input{Values: Values{"cn": {"a.example.com"}}, PublicKeyAlgorithm: algo.ECDSAP521}); err != nil {
		t.Errorf("p521 by name: %v", err)
	}
	// Catalyst alternative keys need a catalyst profile.
	_, err = p.Apply(Input{Values: Values{"cn": {"a.example.com"}}, PublicKeyAlgorithm: algo.ECDSAP256, AltPublicKeyAlgorithm: algo.ECDSAP384})
	wantErr(t, err, "catalyst")
}

func TestApplyRequiredAndNames(t *testing.T) {
	testKeys(t)
	root := mustLoad(t, "ec/root-ca")
	_, err := root.Apply(Input{PublicKey: keyP384.Public()})
	wantVarErr(t, err, "cn")
	wantErr(t, err, "required")

	srv := mustLoad(t, "ec/tls-server")
	vals, _ := srv.Resolve(map[string]string{"o": "Example"})
	_, err = srv.Apply(Input{Values: vals, PublicKey: keyP256.Public()})
	wantErr(t, err, "name no one")

	// An IP address alone is a name.
	vals, _ = srv.Resolve(map[string]string{"ip_addresses": "192.0.2.1"})
	if _, err := srv.Apply(Input{Values: vals, PublicKey: keyP256.Public()}); err != nil {
		t.Error(err)
	}
}

// Apply checks Values again: a job cannot smuggle in what Resolve refuses.
func TestApplyRevalidatesValues(t *testing.T) {
	testKeys(t)
	p := mustLoad(t, "ec/tls-server")
	_, err := p.Apply(Input{Values: Values{"cn": {"not a name"}}, PublicKey: keyP256.Public()})
	wantVarErr(t, err, "cn")
	_, err = p.Apply(Input{Values: Values{"cn": {"a.example.com"}, "evil": {"x"}}, PublicKey: keyP256.Public()})
	wantVarErr(t, err, "evil")
	_, err = p.Apply(Input{Values: Values{"cn": {"a.example.com"}, "validity": {"800d"}}, PublicKey: keyP256.Public()})
	wantVarErr(t, err, "validity")
}

func TestApplyValidityVariable(t *testing.T) {
	testKeys(t)
	p := mustLoad(t, "ec/tls-server")
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	vals, _ := p.Resolve(map[string]string{"cn": "a.example.com", "validity": "90d"})
	tmpl, err := p.Apply(Input{Values: vals, PublicKey: keyP256.Public(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !tmpl.NotBefore.Equal(now.Add(-time.Minute)) || tmpl.NotAfter.Sub(tmpl.NotBefore) != 90*day-time.Second {
		t.Errorf("%s .. %s", tmpl.NotBefore, tmpl.NotAfter)
	}
}

const extensionsProfile = `
name: test/extensions
algorithm: ecdsa-p256
validity: 1d
subject:
  cn: "{{ cn }}"
  l: "Paris"
  serialNumber: "{{ id }}"
extensions:
  subjectKeyIdentifier: false
  keyUsage: {critical: false, values: [digitalSignature, keyAgreement]}
  extKeyUsage: {critical: true, values: [clientAuth, 1.3.6.1.4.1.99999.7]}
  basicConstraints: {critical: false, ca: false}
  subjectAltName:
    dns: [fixed.example.com]
    email: ["{{ emails }}"]
    uri: ["https://id.example.com/{{ id }}"]
  certificatePolicies:
    - oid: 2.23.140.1.2.1
    - oid: 1.3.6.1.4.1.99999.1.1
      cps: https://pki.example.com/cps
  custom:
    - {oid: 1.3.6.1.4.1.99999.2, critical: false, der: "05:00"}
    - {oid: 1.3.6.1.4.1.99999.3, utf8: "héllo"}
variables:
  cn: {type: string}
  id: {type: integer}
  emails: {type: email_list}
`

func TestApplyExtensions(t *testing.T) {
	testKeys(t)
	p := mustParse(t, extensionsProfile)
	vals, err := p.Resolve(map[string]string{"cn": "x", "id": "17", "emails": "a@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := p.Apply(Input{Values: vals, PublicKey: keyP256.Public()})
	if err != nil {
		t.Fatal(err)
	}
	c := sign(t, tmpl, keyP256.Public())
	if c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyAgreement {
		t.Errorf("KU %b", c.KeyUsage)
	}
	for _, tc := range []struct {
		oid      asn1.ObjectIdentifier
		critical bool
	}{{oidKeyUsage, false}, {oidExtKeyUsage, true}, {oidBasicConstraints, false}, {oidCertPolicies, false}} {
		if e := findExt(c, tc.oid); e == nil || e.Critical != tc.critical {
			t.Errorf("extension %s: %+v, want critical %v", tc.oid, e, tc.critical)
		}
	}
	if !reflect.DeepEqual(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(c.UnknownExtKeyUsage) != 1 || c.UnknownExtKeyUsage[0].String() != "1.3.6.1.4.1.99999.7" {
		t.Errorf("EKU %v %v", c.ExtKeyUsage, c.UnknownExtKeyUsage)
	}
	if !c.BasicConstraintsValid || c.IsCA {
		t.Error("basicConstraints")
	}
	if findExt(c, oidSubjectKeyID) != nil {
		t.Error("subjectKeyIdentifier: false ignored")
	}
	if c.Subject.SerialNumber != "17" || c.Subject.Locality[0] != "Paris" {
		t.Errorf("subject %v", c.Subject)
	}
	if !reflect.DeepEqual(c.DNSNames, []string{"fixed.example.com"}) || !reflect.DeepEqual(c.EmailAddresses, []string{"a@example.com"}) ||
		len(c.URIs) != 1 || c.URIs[0].String() != "https://id.example.com/17" {
		t.Errorf("SAN %v %v %v", c.DNSNames, c.EmailAddresses, c.URIs)
	}
	if len(c.Policies) != 2 || c.Policies[0].String() != "2.23.140.1.2.1" || c.Policies[1].String() != "1.3.6.1.4.1.99999.1.1" {
		t.Errorf("policies %v", c.Policies)
	}
	if !bytes.Contains(findExt(c, oidCertPolicies).Value, []byte("https://pki.example.com/cps")) {
		t.Error("CPS qualifier missing")
	}
	if e := findExt(c, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2}); e == nil || !bytes.Equal(e.Value, []byte{5, 0}) {
		t.Errorf("custom der %+v", e)
	}
	var s string
	if e := findExt(c, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 3}); e == nil {
		t.Error("custom utf8 missing")
	} else if _, err := asn1.UnmarshalWithParams(e.Value, &s, "utf8"); err != nil || s != "héllo" || e.Value[0] != asn1.TagUTF8String {
		t.Errorf("custom utf8 %x %q %v", e.Value, s, err)
	}
}

func TestApplyNameConstraints(t *testing.T) {
	testKeys(t)
	p := mustParse(t, `
algorithm: ecdsa-p384
validity: 1y
subject: {cn: Constrained CA}
extensions:
  keyUsage: {values: [keyCertSign, cRLSign]}
  basicConstraints: {ca: true, pathLen: 1}
  nameConstraints:
    permitted: {dns: ["{{ zones }}"], ip: [10.0.0.0/8, "2001:db8::/32"], email: [example.com], uri: [.example.com]}
    excluded: {dns: [secret.example.com]}
variables:
  zones: {type: dns_names}
`)
	if fs := Lint(p); len(fs) > 0 {
		t.Errorf("lint: %v", fs)
	}
	vals, _ := p.Resolve(map[string]string{"zones": "example.com,example.org"})
	tmpl, err := p.Apply(Input{Values: vals, PublicKey: keyP384.Public()})
	if err != nil {
		t.Fatal(err)
	}
	c := sign(t, tmpl, keyP384.Public())
	if !reflect.DeepEqual(c.PermittedDNSDomains, []string{"example.com", "example.org"}) || !reflect.DeepEqual(c.ExcludedDNSDomains, []string{"secret.example.com"}) {
		t.Errorf("DNS %v %v", c.PermittedDNSDomains, c.ExcludedDNSDomains)
	}
	if len(c.PermittedIPRanges) != 2 || c.PermittedIPRanges[0].String() != "10.0.0.0/8" || c.PermittedIPRanges[1].String() != "2001:db8::/32" {
		t.Errorf("IP %v", c.PermittedIPRanges)
	}
	if !reflect.DeepEqual(c.PermittedEmailAddresses, []string{"example.com"}) || !reflect.DeepEqual(c.PermittedURIDomains, []string{".example.com"}) {
		t.Errorf("email %v uri %v", c.PermittedEmailAddresses, c.PermittedURIDomains)
	}
	if e := findExt(c, oidNameConstraints); e == nil || !e.Critical {
		t.Error("name constraints not critical")
	}
	if c.MaxPathLen != 1 {
		t.Errorf("pathLen %d", c.MaxPathLen)
	}
}

func TestApplySubjectLimits(t *testing.T) {
	testKeys(t)
	p := mustLoad(t, "ec/tls-client")
	vals, err := p.Resolve(map[string]string{"cn": "alice", "c": "FR", "o": strings.Repeat("o", 64)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(Input{Values: vals, PublicKey: keyP256.Public()}); err != nil {
		t.Fatal(err)
	}
	// A CN from a CSR longer than the X.520 bound of 64 is refused.
	_, err = p.Apply(Input{CSR: makeCSR(t, keyP256, strings.Repeat("a", 65), nil, nil, nil, nil)})
	var ve *VarError
	if err == nil || errors.As(err, &ve) && ve.Name != "cn" {
		t.Fatalf("long CN: %v", err)
	}
}
