package enroll_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"testing"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/store"
)

func tmpl(cn string, dns []string, ips []string, emails []string, uris []string) *x509.Certificate {
	t := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, EmailAddresses: emails}
	for _, ip := range ips {
		t.IPAddresses = append(t.IPAddresses, net.ParseIP(ip))
	}
	for _, u := range uris {
		p, _ := url.Parse(u)
		t.URIs = append(t.URIs, p)
	}
	return t
}

func TestNamePolicyCheck(t *testing.T) {
	label := &enroll.NamePolicy{
		DNS:   []string{"*.devices.example.com", ".lab.example.com", "gw.example.com"},
		IP:    []string{"10.1.0.0/16", "2001:db8::1"},
		Email: []string{"@ops.example.com", "alice@example.com"},
		URI:   []string{"spiffe://example.org/dev/*"},
	}
	if err := label.Validate(); err != nil {
		t.Fatal(err)
	}
	withO := label.Join(&enroll.NamePolicy{Subject: map[string][]string{"O": {"Example Corp"}}})
	for _, c := range []struct {
		name string
		p    *enroll.NamePolicy
		t    *x509.Certificate
		ok   bool
	}{
		{"one label under a wildcard", label, tmpl("a.devices.example.com", []string{"a.devices.example.com"}, nil, nil, nil), true},
		{"the wildcard name itself", label, tmpl("", []string{"*.devices.example.com"}, nil, nil, nil), true},
		{"two labels under a wildcard", label, tmpl("", []string{"a.b.devices.example.com"}, nil, nil, nil), false},
		{"the wildcard's parent", label, tmpl("", []string{"devices.example.com"}, nil, nil, nil), false},
		{"a suffix at any depth", label, tmpl("", []string{"x.y.lab.example.com", "*.y.lab.example.com"}, nil, nil, nil), true},
		{"the suffix's own name", label, tmpl("", []string{"lab.example.com"}, nil, nil, nil), false},
		{"a look-alike suffix", label, tmpl("", []string{"evillab.example.com"}, nil, nil, nil), false},
		{"an exact name, any case", label, tmpl("", []string{"GW.example.com"}, nil, nil, nil), true},
		{"a name not granted", label, tmpl("", []string{"a.devices.example.com", "victim.com"}, nil, nil, nil), false},
		{"an IP in the CIDR", label, tmpl("", nil, []string{"10.1.2.3", "2001:db8::1"}, nil, nil), true},
		{"an IP outside", label, tmpl("", nil, []string{"10.2.0.1"}, nil, nil), false},
		{"e-mail at a domain and exact", label, tmpl("", nil, nil, []string{"bob@OPS.example.com", "alice@example.com"}, nil), true},
		{"e-mail not granted", label, tmpl("", nil, nil, []string{"bob@example.com"}, nil), false},
		{"URI under the path", label, tmpl("", nil, nil, nil, []string{"spiffe://example.org/dev/42"}), true},
		{"URI outside the path", label, tmpl("", nil, nil, nil, []string{"spiffe://example.org/admin"}), false},
		{"CN not among the names", label, tmpl("victim.com", []string{"a.devices.example.com"}, nil, nil, nil), false},
		{"CN alone, granted", label, tmpl("b.devices.example.com", nil, nil, nil, nil), true},
		{"CN alone, an IP granted", label, tmpl("10.1.9.9", nil, nil, nil, nil), true},
		{"CN alone, not granted", label, tmpl("router-7", nil, nil, nil, nil), false},
		{"CN, another case than its SAN", label, tmpl("GW.example.com", []string{"gw.example.com"}, nil, nil, nil), true},
		{"an attribute not listed", label, &x509.Certificate{Subject: pkix.Name{CommonName: "gw.example.com", Organization: []string{"Example Corp"}}, DNSNames: []string{"gw.example.com"}}, false},
		{"an attribute listed", withO, &x509.Certificate{Subject: pkix.Name{CommonName: "gw.example.com", Organization: []string{"Example Corp"}}, DNSNames: []string{"gw.example.com"}}, true},
		{"an attribute with another value", withO, &x509.Certificate{Subject: pkix.Name{Organization: []string{"Other"}}, DNSNames: []string{"gw.example.com"}}, false},
		{"no policy", nil, tmpl("", []string{"gw.example.com"}, nil, nil, nil), false},
		{"an empty policy", &enroll.NamePolicy{}, tmpl("", []string{"gw.example.com"}, nil, nil, nil), false},
		{"exact names: the wildcard alone", enroll.ExactNames([]string{"*.example.com"}, nil), tmpl("", []string{"*.example.com"}, nil, nil, nil), true},
		{"exact names: not what it covers", enroll.ExactNames([]string{"*.example.com"}, nil), tmpl("", []string{"a.example.com"}, nil, nil, nil), false},
		{"the operator", enroll.AnyName(), tmpl("victim.com", []string{"victim.com"}, nil, nil, nil), true},
	} {
		err := c.p.Check(c.t, nil)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, enroll.ErrNotGranted) {
			t.Errorf("%s: %v is not ErrNotGranted", c.name, err)
		}
	}
}

// IEEE 802.1AR: an LDevID gets the IDevID's CN and serialNumber and
// nothing else.
func TestNamePolicyIDevID(t *testing.T) {
	p := &enroll.NamePolicy{ClientCert: enroll.ClientCertIDevID}
	idev := &x509.Certificate{Subject: pkix.Name{CommonName: "router-7", SerialNumber: "SN0042"}}
	good := &x509.Certificate{Subject: pkix.Name{CommonName: "router-7", SerialNumber: "SN0042"}}
	if err := p.Check(good, idev); err != nil {
		t.Fatalf("the IDevID's own subject: %v", err)
	}
	for name, c := range map[string]*x509.Certificate{
		"another serial":  {Subject: pkix.Name{CommonName: "router-7", SerialNumber: "SN0043"}},
		"serial left out": {Subject: pkix.Name{CommonName: "router-7"}},
		"an extra O":      {Subject: pkix.Name{CommonName: "router-7", SerialNumber: "SN0042", Organization: []string{"X"}}},
		"a DNS name":      {Subject: pkix.Name{CommonName: "router-7", SerialNumber: "SN0042"}, DNSNames: []string{"router-7"}},
	} {
		if err := p.Check(c, idev); !errors.Is(err, enroll.ErrNotGranted) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	if err := p.Check(good, nil); !errors.Is(err, enroll.ErrNotGranted) {
		t.Errorf("without a client certificate: %v", err)
	}
}

func TestNamePolicyValidate(t *testing.T) {
	for _, p := range []enroll.NamePolicy{
		{DNS: []string{"a.*.example.com"}}, {DNS: []string{"*"}}, {DNS: []string{"."}},
		{IP: []string{"10.0.0.0/33"}}, {Email: []string{"example.com"}}, {URI: []string{"spiffe://x*"}},
		{Subject: map[string][]string{"title": {"*"}}}, {ClientCert: "ldevid"},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v: accepted", p)
		}
	}
}

// A principal gets only its names: enroll refuses the rest before any job
// exists, and one without a principal gets nothing; an accepted job and
// its certificate record who asked.
func TestSubmitChecksNamePolicy(t *testing.T) {
	p := startPipeline(t, 1, 0)
	dev := enroll.Principal{Frontend: enroll.FrontendEST, Label: "devices", User: "alice",
		Names: &enroll.NamePolicy{DNS: []string{"*.devices.example.com"}}}
	ctx := context.Background()
	for key, r := range map[string]enroll.Request{
		"victim":       {Principal: dev, CSR: csrFor(t, "www.victim.com")},
		"no-principal": {CSR: csrFor(t, "a.devices.example.com")},
		"no-names":     {Principal: enroll.Principal{Frontend: enroll.FrontendEST}, CSR: csrFor(t, "a.devices.example.com")},
	} {
		r.Profile, r.Key = "ec/tls-server", key
		if _, err := p.svc.Submit(ctx, r); err == nil {
			t.Errorf("%s: accepted", key)
		} else if key != "no-principal" && !errors.Is(err, enroll.ErrNotGranted) || key == "no-principal" && !errors.Is(err, enroll.ErrNoPrincipal) {
			t.Errorf("%s: %v", key, err)
		}
		if _, err := p.svc.Job(enroll.JobID(enroll.QueueName(p.ca), key)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: a refused request left a job: %v", key, err)
		}
	}
	id, err := p.svc.Submit(ctx, enroll.Request{Principal: dev, Profile: "ec/tls-server", CSR: csrFor(t, "a.devices.example.com"), Key: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	res := waitFor(t, p.svc, id)
	want := store.Origin{Frontend: "est", Label: "devices", Principal: "user:alice"}
	if res.Cert == nil || res.Cert.Origin == nil || *res.Cert.Origin != want {
		t.Fatalf("certificate origin: %+v", res.Cert)
	}
	st, _ := p.ca.Store()
	rec, err := st.Cert(mustSerial(t, res.Cert.Serial))
	if err != nil || rec.Origin == nil || *rec.Origin != want {
		t.Fatalf("stored origin: %+v %v", rec, err)
	}
}

func mustSerial(t *testing.T, s string) *big.Int {
	t.Helper()
	n, err := store.ParseSerial(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
