package profile

import (
	"crypto/x509"
	"reflect"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

const day = 24 * time.Hour

// builtinWant is what each built-in must produce.
var builtinWant = map[string]struct {
	alg      algo.Algorithm
	ca       bool
	pathLen  int
	validity time.Duration
	ku       x509.KeyUsage
	eku      []x509.ExtKeyUsage
	vars     map[string]string
}{
	"ec/root-ca":        {"ecdsa-p384", true, -1, 20 * 365 * day, x509.KeyUsageCertSign | x509.KeyUsageCRLSign, nil, map[string]string{"cn": "Test Root", "o": "Example", "c": "FR"}},
	"ec/issuing-ca":     {"ecdsa-p384", true, 0, 10 * 365 * day, x509.KeyUsageCertSign | x509.KeyUsageCRLSign, nil, map[string]string{"cn": "Test Issuing", "crl_url": "http://pki.example.com/root.crl", "permitted_dns": "example.com"}},
	"ec/tls-server":     {"ecdsa-p256", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, map[string]string{"cn": "www.example.com", "dns_names": "example.com", "ip_addresses": "192.0.2.1", "ocsp_url": "http://ocsp.example.com"}},
	"ec/tls-client":     {"ecdsa-p256", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, map[string]string{"cn": "alice", "emails": "alice@example.com", "uris": "spiffe://example.com/alice"}},
	"ec/signing":        {"ecdsa-p256", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, map[string]string{"cn": "Release Signing"}},
	"rsa/root-ca":       {"rsa-4096", true, -1, 20 * 365 * day, x509.KeyUsageCertSign | x509.KeyUsageCRLSign, nil, map[string]string{"cn": "Test Root"}},
	"rsa/issuing-ca":    {"rsa-3072", true, 0, 10 * 365 * day, x509.KeyUsageCertSign | x509.KeyUsageCRLSign, nil, map[string]string{"cn": "Test Issuing"}},
	"rsa/tls-server":    {"rsa-3072", false, -1, 365 * day, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, map[string]string{"cn": "www.example.com"}},
	"rsa/tls-client":    {"rsa-3072", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, map[string]string{"cn": "bob"}},
	"rsa/signing":       {"rsa-3072", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, map[string]string{"cn": "Release Signing"}},
	"any/tls-server":    {"ecdsa-p256", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, map[string]string{"cn": "www.example.com"}},
	"any/tls-client":    {"ecdsa-p256", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, map[string]string{"cn": "carol"}},
	"est/device":        {"ecdsa-p256", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, map[string]string{"cn": "router-7", "serial_number": "SN0042", "dns_names": "r7.devices.example.com"}},
	"est/device-server": {"ecdsa-p256", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, map[string]string{"cn": "gw.example.com", "dns_names": "gw.example.com"}},
	"scep/device":       {"rsa-2048", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, map[string]string{"cn": "laptop-17.example.com"}},
	"scep/ra":           {"rsa-2048", false, -1, 730 * day, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, nil, map[string]string{"cn": "Issuing SCEP RA"}},
	"ed/root-ca":        {"ed25519", true, -1, 20 * 365 * day, x509.KeyUsageCertSign | x509.KeyUsageCRLSign, nil, map[string]string{"cn": "Test Root"}},
	"ed/signing":        {"ed25519", false, -1, 365 * day, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, map[string]string{"cn": "Release Signing", "emails": "rel@example.com"}},
}

func TestBuiltinsParseAndLintClean(t *testing.T) {
	names := BuiltinNames()
	if len(names) != len(builtinWant)+len(pqBuiltinWant) {
		t.Errorf("built-ins %v, want the %d of the tables", names, len(builtinWant)+len(pqBuiltinWant))
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			p := mustLoad(t, name)
			if p.Name != name || p.Source != SourceBuiltin || p.Description == "" {
				t.Errorf("name %q source %q description %q", p.Name, p.Source, p.Description)
			}
			if fs := Lint(p); len(fs) > 0 {
				t.Errorf("lint findings: %v", fs)
			}
			w, ok := builtinWant[name]
			if _, pq := pqBuiltinWant[name]; pq && !ok {
				return // TestPQBuiltins checks the rest
			}
			if !ok {
				t.Fatalf("no expectations for %s", name)
			}
			if p.Algorithm != w.alg || p.IsCA() != w.ca || p.PathLen() != w.pathLen || p.Validity != w.validity {
				t.Errorf("algorithm %s ca %v pathLen %d validity %s", p.Algorithm, p.IsCA(), p.PathLen(), p.Validity)
			}
			// CA profiles lint every certificate; the leaf built-ins leave
			// it to the operator (it costs a third of an issuance).
			if p.Lint.Enabled != p.IsCA() || p.Lint.CABF {
				t.Errorf("lint %+v, want enabled=%v without cabf", p.Lint, p.IsCA())
			}
			for _, std := range []string{VarCN, VarO, VarOU, VarC, VarValidity} {
				if p.Var(std) == nil {
					t.Errorf("standard variable %s not declared", std)
				}
			}
		})
	}
}

func TestECTLSServerAllowsOnlyECDSA(t *testing.T) {
	p := mustLoad(t, "ec/tls-server")
	want := []algo.Algorithm{algo.ECDSAP256, algo.ECDSAP384, algo.ECDSAP521}
	if !reflect.DeepEqual(p.AllowedAlgorithms, want) {
		t.Fatalf("allowed %v, want %v", p.AllowedAlgorithms, want)
	}
}

func TestApplyBuiltins(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for name, w := range builtinWant {
		t.Run(name, func(t *testing.T) {
			p := mustLoad(t, name)
			key := keyFor(t, p)
			vals, err := p.Resolve(w.vars)
			if err != nil {
				t.Fatal(err)
			}
			tmpl, err := p.Apply(Input{Values: vals, PublicKey: key.Public(), Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if tmpl.SerialNumber != nil || tmpl.Issuer.String() != "" || tmpl.SignatureAlgorithm != x509.UnknownSignatureAlgorithm {
				t.Error("Apply set serial, issuer or signature algorithm")
			}
			c := sign(t, tmpl, key.Public())

			if c.Subject.CommonName != w.vars["cn"] {
				t.Errorf("CN %q", c.Subject.CommonName)
			}
			if got := c.NotAfter.Sub(c.NotBefore) + time.Second; got != w.validity {
				t.Errorf("validity %s, want %s", got, w.validity)
			}
			if c.NotBefore.After(now) || now.Sub(c.NotBefore) > time.Minute {
				t.Errorf("notBefore %s for now %s", c.NotBefore, now)
			}
			if c.KeyUsage != w.ku {
				t.Errorf("key usage %b, want %b", c.KeyUsage, w.ku)
			}
			if e := findExt(c, oidKeyUsage); e == nil || !e.Critical {
				t.Error("keyUsage missing or not critical")
			}
			if !reflect.DeepEqual(c.ExtKeyUsage, w.eku) {
				t.Errorf("EKU %v, want %v", c.ExtKeyUsage, w.eku)
			}
			if e := findExt(c, oidBasicConstraints); e == nil || !e.Critical {
				t.Error("basicConstraints missing or not critical")
			}
			if !c.BasicConstraintsValid || c.IsCA != w.ca {
				t.Errorf("isCA %v", c.IsCA)
			}
			if w.ca {
				gotPath := c.MaxPathLen
				if gotPath == 0 && !c.MaxPathLenZero {
					gotPath = -1
				}
				if gotPath != w.pathLen {
					t.Errorf("pathLen %d, want %d", gotPath, w.pathLen)
				}
			}
			if len(c.SubjectKeyId) != 20 {
				t.Errorf("subject key id %x", c.SubjectKeyId)
			}
			if len(c.UnhandledCriticalExtensions) > 0 {
				t.Errorf("unhandled critical extensions %v", c.UnhandledCriticalExtensions)
			}
		})
	}
}

// Names and URLs from variables reach the right extensions.
func TestApplyBuiltinNames(t *testing.T) {
	p := mustLoad(t, "ec/tls-server")
	vals, err := p.Resolve(builtinWant["ec/tls-server"].vars)
	if err != nil {
		t.Fatal(err)
	}
	testKeys(t)
	tmpl, err := p.Apply(Input{Values: vals, PublicKey: keyP256.Public()})
	if err != nil {
		t.Fatal(err)
	}
	c := sign(t, tmpl, keyP256.Public())
	if want := []string{"www.example.com", "example.com"}; !reflect.DeepEqual(c.DNSNames, want) {
		t.Errorf("DNS names %v, want %v (cn first)", c.DNSNames, want)
	}
	if len(c.IPAddresses) != 1 || c.IPAddresses[0].String() != "192.0.2.1" {
		t.Errorf("IPs %v", c.IPAddresses)
	}
	if !reflect.DeepEqual(c.OCSPServer, []string{"http://ocsp.example.com"}) || c.IssuingCertificateURL != nil || c.CRLDistributionPoints != nil {
		t.Errorf("AIA %v %v CDP %v", c.OCSPServer, c.IssuingCertificateURL, c.CRLDistributionPoints)
	}

	p = mustLoad(t, "ec/issuing-ca")
	vals, err = p.Resolve(builtinWant["ec/issuing-ca"].vars)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err = p.Apply(Input{Values: vals, PublicKey: keyP384.Public()})
	if err != nil {
		t.Fatal(err)
	}
	c = sign(t, tmpl, keyP384.Public())
	if !reflect.DeepEqual(c.CRLDistributionPoints, []string{"http://pki.example.com/root.crl"}) {
		t.Errorf("CDP %v", c.CRLDistributionPoints)
	}
	if !reflect.DeepEqual(c.PermittedDNSDomains, []string{"example.com"}) || !c.PermittedDNSDomainsCritical {
		t.Errorf("name constraints %v critical %v", c.PermittedDNSDomains, c.PermittedDNSDomainsCritical)
	}

	// Without permitted_dns the name constraints extension is left out.
	vals, _ = p.Resolve(map[string]string{"cn": "Sub"})
	tmpl, err = p.Apply(Input{Values: vals, PublicKey: keyP384.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if c = sign(t, tmpl, keyP384.Public()); findExt(c, oidNameConstraints) != nil {
		t.Error("empty name constraints written")
	}
}
