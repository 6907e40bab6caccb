package acme_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"
)

// csrFor makes a CSR for names (DNS names or IP addresses) with a new
// P-256 key.
func csrFor(t testing.TB, cn string, names ...string) ([]byte, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return csrForKey(t, key, cn, names...), key
}

func csrForKey(t testing.TB, key crypto.Signer, cn string, names ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// solver answers one challenge of an authorization and returns its
// type.
type solver func(t *testing.T, c *xacme.Client, z *xacme.Authorization) *xacme.Challenge

func http01(answers *sync.Map) solver {
	return func(t *testing.T, c *xacme.Client, z *xacme.Authorization) *xacme.Challenge {
		ch := pick(t, z, "http-01")
		resp, err := c.HTTP01ChallengeResponse(ch.Token)
		if err != nil {
			t.Fatal(err)
		}
		answers.Store(ch.Token, resp)
		return ch
	}
}

func pick(t *testing.T, z *xacme.Authorization, typ string) *xacme.Challenge {
	t.Helper()
	for _, ch := range z.Challenges {
		if ch.Type == typ {
			return ch
		}
	}
	t.Fatalf("authorization for %s offers no %s challenge", z.Identifier.Value, typ)
	return nil
}

// order runs an order to ready: each pending authorization is solved
// and accepted.
func order(t *testing.T, c *xacme.Client, ids []xacme.AuthzID, solve solver, opts ...xacme.OrderOption) *xacme.Order {
	t.Helper()
	ctx := context.Background()
	o, err := c.AuthorizeOrder(ctx, ids, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range o.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if z.Status == xacme.StatusValid {
			continue
		}
		ch := solve(t, c, z)
		if _, err := c.Accept(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitAuthorization(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	o, err = c.WaitOrder(ctx, o.URI)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != xacme.StatusReady {
		t.Fatalf("order is %s, want ready", o.Status)
	}
	return o
}

// issue finalizes a ready order and verifies the chain to the test root.
func (e *env) issue(t *testing.T, c *xacme.Client, o *xacme.Order, cn string, names ...string) (*x509.Certificate, string) {
	t.Helper()
	csr, _ := csrFor(t, cn, names...)
	ders, certURL, err := c.CreateOrderCert(context.Background(), o.FinalizeURL, csr, true)
	if err != nil {
		t.Fatal(err)
	}
	return e.verifyChain(t, ders, names), certURL
}

func (e *env) verifyChain(t *testing.T, ders [][]byte, names []string) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: e.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain does not verify: %v", err)
	}
	var got []string
	got = append(got, certs[0].DNSNames...)
	for _, ip := range certs[0].IPAddresses {
		got = append(got, ip.String())
	}
	slices.Sort(got)
	want := slices.Clone(names)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("certificate names %v, want %v", got, want)
	}
	return certs[0]
}

func TestHTTP01Flow(t *testing.T) {
	e := newEnv(t, nil)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.client()
	names := []string{"www.example.com", "example.com"}
	o := order(t, c, xacme.DomainIDs(names...), http01(answers))
	start := time.Now()
	cert, _ := e.issue(t, c, o, "www.example.com", names...)
	t.Logf("finalize to certificate: %v", time.Since(start))
	if cert.NotAfter.Sub(cert.NotBefore) < 300*24*time.Hour {
		t.Errorf("validity %v, want the profile's 365d", cert.NotAfter.Sub(cert.NotBefore))
	}
	// A second order for the same names reuses the valid authorizations:
	// no challenge to solve.
	o2, err := c.AuthorizeOrder(context.Background(), xacme.DomainIDs(names...))
	if err != nil {
		t.Fatal(err)
	}
	if o2.Status != xacme.StatusReady {
		t.Fatalf("second order is %s, want ready (authorizations reused)", o2.Status)
	}
	if !slices.Equal(o.AuthzURLs, o2.AuthzURLs) {
		t.Errorf("second order's authorizations %v, want the first's %v", o2.AuthzURLs, o.AuthzURLs)
	}
	// Another account does not share them.
	o3, err := e.client().AuthorizeOrder(context.Background(), xacme.DomainIDs(names...))
	if err != nil {
		t.Fatal(err)
	}
	if o3.Status != xacme.StatusPending {
		t.Fatalf("another account's order is %s, want pending", o3.Status)
	}
}

func TestDNS01Wildcard(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	var mu sync.Mutex
	values := map[string][]string{}
	dns01 := func(t *testing.T, c *xacme.Client, z *xacme.Authorization) *xacme.Challenge {
		ch := pick(t, z, "dns-01")
		v, err := c.DNS01ChallengeRecord(ch.Token)
		if err != nil {
			t.Fatal(err)
		}
		name := "_acme-challenge." + z.Identifier.Value
		mu.Lock()
		values[name] = append(values[name], v)
		e.dns.setTXT(name, values[name]...)
		mu.Unlock()
		return ch
	}
	names := []string{"*.wild.example.com", "wild.example.com"}
	o := order(t, c, xacme.DomainIDs(names...), dns01)
	e.issue(t, c, o, "", names...)

	// A wrong TXT record fails the authorization.
	o2, err := c.AuthorizeOrder(context.Background(), xacme.DomainIDs("nodns.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	z, _ := c.GetAuthorization(context.Background(), o2.AuthzURLs[0])
	ch := pick(t, z, "dns-01")
	e.dns.setTXT("_acme-challenge.nodns.example.com", "not-the-digest")
	c.Accept(context.Background(), ch)
	if _, err := c.WaitAuthorization(context.Background(), o2.AuthzURLs[0]); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("wrong TXT record: %v", err)
	}
}
