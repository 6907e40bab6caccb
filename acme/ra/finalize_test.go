package ra

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

func csr(t *testing.T, cn string, dns []string, ips []string) *x509x.CertificateRequest {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509x.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCSRMatchesOrder(t *testing.T) {
	o := &store.ACMEOrder{Identifiers: []store.ACMEIdentifier{{Type: "dns", Value: "a.example.com"}, {Type: "dns", Value: "*.example.com"}, {Type: "ip", Value: "192.0.2.1"}}}
	for _, tc := range []struct {
		name string
		csr  *x509x.CertificateRequest
		ok   bool
	}{
		{"exact", csr(t, "", []string{"a.example.com", "*.example.com"}, []string{"192.0.2.1"}), true},
		{"case and order", csr(t, "", []string{"*.EXAMPLE.com", "A.example.com"}, []string{"192.0.2.1"}), true},
		{"cn among names", csr(t, "a.example.com", []string{"*.example.com"}, []string{"192.0.2.1"}), true},
		{"ip cn", csr(t, "192.0.2.1", []string{"a.example.com", "*.example.com"}, []string{"192.0.2.1"}), true},
		{"missing name", csr(t, "", []string{"a.example.com"}, []string{"192.0.2.1"}), false},
		{"extra name", csr(t, "", []string{"a.example.com", "*.example.com", "b.example.com"}, []string{"192.0.2.1"}), false},
		{"other cn", csr(t, "b.example.com", []string{"a.example.com", "*.example.com"}, []string{"192.0.2.1"}), false},
		{"missing ip", csr(t, "", []string{"a.example.com", "*.example.com"}, nil), false},
	} {
		vars, p := csrMatchesOrder(tc.csr, o)
		if (p == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, p)
		}
		if p == nil && (len(vars[profile.VarDNSNames].([]string)) != 2 || len(vars[profile.VarIPAddresses].([]string)) != 1) {
			t.Errorf("%s: vars %v", tc.name, vars)
		}
		if p != nil && !p.HasType("badCSR") {
			t.Errorf("%s: problem type %s", tc.name, p.Type)
		}
	}
}

func TestValidityFor(t *testing.T) {
	p := &profile.Profile{Backdate: time.Minute}
	now := time.Date(2026, 1, 1, 12, 0, 0, 500e6, time.UTC)
	notAfter := now.Add(10 * 24 * time.Hour).Truncate(time.Second)
	v := validityFor(p, notAfter, now)
	// The profile's arithmetic: notBefore = now - backdate (truncated),
	// notAfter = notBefore + validity - 1s.
	start := now.Add(-p.Backdate).Truncate(time.Second)
	if got := start.Add(v - time.Second); !got.Equal(notAfter) {
		t.Fatalf("validity %v gives notAfter %s, want %s", v, got, notAfter)
	}
}

func TestOwnerCache(t *testing.T) {
	c := newOwnerCache(4) // two per generation
	c.add("1", "a")
	c.add("2", "b")
	c.add("3", "c") // "1" and "2" become old
	if a, ok := c.get("1"); !ok || a != "a" {
		t.Fatalf("old entry: %q %v", a, ok)
	}
	// "1" was promoted: young holds 3 and 1, old 1 and 2.
	c.add("4", "d") // young full: old becomes {3, 1}, young {4}
	if _, ok := c.get("2"); ok {
		t.Fatal("an entry two generations old is still there")
	}
	for s, want := range map[string]string{"1": "a", "3": "c", "4": "d"} {
		if a, ok := c.get(s); !ok || a != want {
			t.Fatalf("get(%s) = %q %v, want %q", s, a, ok, want)
		}
	}
}

// The principal enroll gets at finalize is the account, and its names are
// the order's identifiers, literally: enroll refuses any other, even
// one a wildcard identifier would cover.
func TestOrderPrincipal(t *testing.T) {
	o := &store.ACMEOrder{Identifiers: []store.ACMEIdentifier{{Type: "dns", Value: "a.example.com"}, {Type: "dns", Value: "*.example.com"}, {Type: "ip", Value: "192.0.2.1"}}}
	p := orderPrincipal(&store.ACMEAccount{ID: "acct-7"}, o)
	if p.Frontend != enroll.FrontendACME || p.Account != "acct-7" || p.Origin().Account != "acct-7" {
		t.Fatalf("principal %+v", p)
	}
	cert := func(cn string, dns []string, ips ...string) *x509.Certificate {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
		for _, ip := range ips {
			c.IPAddresses = append(c.IPAddresses, net.ParseIP(ip))
		}
		return c
	}
	if err := p.Names.Check(cert("a.example.com", []string{"a.example.com", "*.example.com"}, "192.0.2.1"), nil); err != nil {
		t.Errorf("the order's names: %v", err)
	}
	for name, c := range map[string]*x509.Certificate{
		"under the wildcard": cert("", []string{"b.example.com"}),
		"another IP":         cert("", nil, "192.0.2.2"),
		"another CN":         cert("victim.com", []string{"a.example.com"}),
	} {
		if err := p.Names.Check(c, nil); !errors.Is(err, enroll.ErrNotGranted) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
