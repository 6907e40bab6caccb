package est

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
)

// A label without a name policy issues nothing: simpleenroll and
// serverkeygen answer 403 naming the setting, for the unlabelled
// endpoints (no default: entry) as for a label.
func TestNoNamePolicyRefuses(t *testing.T) {
	e := sharedEnv(t)
	dev := e.deviceCert("router-nn")
	csr, _ := newCSR(t, "nn.example.com")
	before := e.certCount()
	for _, op := range []string{"simpleenroll", "serverkeygen"} {
		r := e.do(e.client(&dev), "POST", "nonames/"+op, b64(csr), "", "")
		if r.code != http.StatusForbidden || !strings.Contains(r.text(), "labels.nonames.names is not set") {
			t.Errorf("%s: %d %s", op, r.code, r.text())
		}
		r = e.do(e.client(nil), "POST", "nonames/"+op, b64(csr), testUser, testPass)
		if r.code != http.StatusForbidden || !strings.Contains(r.text(), "names is not set") {
			t.Errorf("%s with a password: %d %s", op, r.code, r.text())
		}
	}
	bare := newEnv(t, envConfig{tlsCert: true, opts: func(o *Options) { o.Default = nil }})
	dev = bare.deviceCert("router-nn2")
	for _, op := range []string{"simpleenroll", "serverkeygen"} {
		r := bare.do(bare.client(&dev), "POST", op, b64(csr), "", "")
		if r.code != http.StatusForbidden || !strings.Contains(r.text(), "default.names is not set") {
			t.Errorf("unlabelled %s: %d %s", op, r.code, r.text())
		}
	}
	if e.certCount() != before || bare.certCount() != 0 {
		t.Fatal("a label without a name policy issued a certificate")
	}
}

// A caller gets only the names it was granted: the label's, joined with
// its user's own; nothing else, whatever the profile would take.
func TestNamesPerUser(t *testing.T) {
	e := sharedEnv(t)
	before := e.certCount()
	// dave's own grant, and the label's.
	for _, name := range []string{"a.dave.example.org", "dave1.example.com"} {
		csr, _ := newCSR(t, name)
		if got := certsResponse(t, e.do(e.client(nil), "POST", "simpleenroll", b64(csr), "dave", "dave's password"))[0]; got.DNSNames[0] != name {
			t.Fatalf("issued %v", got.DNSNames)
		}
	}
	csr, _ := newCSR(t, "b.dave.example.org")
	dev := e.deviceCert("router-np")
	for who, r := range map[string]response{
		"alice, without dave's grant": e.do(e.client(nil), "POST", "simpleenroll", b64(csr), testUser, testPass),
		"a client certificate":        e.do(e.client(&dev), "POST", "simpleenroll", b64(csr), "", ""),
		"dave, two labels deep":       e.do(e.client(nil), "POST", "simpleenroll", b64(mustCSRNames(t, "x.b.dave.example.org")), "dave", "dave's password"),
		"dave, the CA's own name":     e.do(e.client(nil), "POST", "simpleenroll", b64(mustCSRNames(t, "localhost")), "dave", "dave's password"),
		"dave, serverkeygen":          e.do(e.client(nil), "POST", "serverkeygen", b64(mustCSRNames(t, "www.victim.com")), "dave", "dave's password"),
	} {
		if r.code != http.StatusForbidden || !strings.Contains(r.text(), "not granted") {
			t.Errorf("%s: %d %s", who, r.code, r.text())
		}
	}
	if n := e.certCount() - before; n != 2 {
		t.Fatalf("%d certificates, want the 2 granted", n)
	}
}

func mustCSRNames(t *testing.T, name string) []byte {
	csr, _ := newCSR(t, name)
	return csr
}

// IEEE 802.1AR: under names: {client_cert: idevid}, the IDevID's CN and
// serialNumber are copied into the LDevID, and nothing else is allowed.
func TestIDevIDToLDevID(t *testing.T) {
	e := sharedEnv(t)
	idev := e.deviceCert("router-7")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := csrWithKey(t, key, pkix.Name{CommonName: "router-7"}, nil)
	got := certsResponse(t, e.do(e.client(&idev), "POST", "ldevid/simpleenroll", b64(csr), "", ""))[0]
	if got.Subject.CommonName != "router-7" || got.Subject.SerialNumber != "SN-router-7" || len(got.DNSNames) != 0 ||
		!got.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatalf("LDevID subject %v names %v", got.Subject, got.DNSNames)
	}
	before := e.certCount()
	for name, r := range map[string]response{
		"another CN": e.do(e.client(&idev), "POST", "ldevid/simpleenroll", b64(csrWithKey(t, key, pkix.Name{CommonName: "router-8"}, nil)), "", ""),
		"a DNS name": e.do(e.client(&idev), "POST", "ldevid/simpleenroll", b64(csrWithKey(t, key, pkix.Name{CommonName: "router-7"}, []string{"r7.example.com"})), "", ""),
		"a password": e.do(e.client(nil), "POST", "ldevid/simpleenroll", b64(csr), testUser, testPass),
	} {
		if r.code != http.StatusForbidden && r.code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, r.code, r.text())
		}
	}
	if e.certCount() != before {
		t.Fatal("a refused LDevID request issued a certificate")
	}
}

// TLS client certificates authenticate only with clientAuth (or
// anyExtendedKeyUsage): a serverAuth-only certificate, from the device CA
// or from this CA (what ACME issues), is refused on simpleenroll and
// simplereenroll.
func TestClientCertNeedsClientAuth(t *testing.T) {
	e := sharedEnv(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvOnly := e.device.issue(t, key.Public(), pkix.Name{CommonName: "router-srv"}, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	csr, _ := newCSR(t, "srvonly.example.com")
	tc := tls.Certificate{Certificate: [][]byte{srvOnly.Raw}, PrivateKey: key}
	if r := e.do(e.client(&tc), "POST", "simpleenroll", b64(csr), "", ""); r.code != http.StatusForbidden || !strings.Contains(r.text(), "clientAuth") {
		t.Errorf("serverAuth-only device certificate: %d %s", r.code, r.text())
	}
	acmeCert, acmeKey := e.issueVia(t, enroll.Principal{Frontend: enroll.FrontendACME, Account: "acct-1", Names: enroll.ExactNames([]string{"acme.example.com"}, nil)}, "ec/tls-server", "acme.example.com")
	renew := csrWithKey(t, acmeKey, pkix.Name{CommonName: "acme.example.com"}, []string{"acme.example.com"})
	if r := e.do(e.tlsAs(acmeCert, acmeKey), "POST", "basic/simplereenroll", b64(renew), "", ""); r.code != http.StatusForbidden || !strings.Contains(r.text(), "clientAuth") {
		t.Errorf("an ACME serverAuth certificate renewing: %d %s", r.code, r.text())
	}
}

// simplereenroll renews only certificates EST issued on the same label:
// never one from ACME (or the CLI), never one from another label, and one
// recorded before origins were kept only where renew_unrecorded is set.
func TestReenrollOnlyWhatESTIssued(t *testing.T) {
	e := sharedEnv(t)
	renewOf := func(cert *x509.Certificate, key *ecdsa.PrivateKey) []byte {
		return csrWithKey(t, key, pkix.Name{CommonName: cert.Subject.CommonName}, cert.DNSNames)
	}
	before := e.certCount()
	refused := func(what, path string, cert *x509.Certificate, key *ecdsa.PrivateKey, reason string) {
		t.Helper()
		r := e.do(e.tlsAs(cert, key), "POST", path, b64(renewOf(cert, key)), "", "")
		if r.code != http.StatusForbidden || !strings.Contains(r.text(), reason) {
			t.Errorf("%s: %d %s, want 403 %q", what, r.code, r.text(), reason)
		}
	}
	// Through ACME, with the very profile the label serves (clientAuth).
	acmeCert, acmeKey := e.issueVia(t, enroll.Principal{Frontend: enroll.FrontendACME, Account: "acct-1", Names: enroll.ExactNames([]string{"acme2.example.com"}, nil)}, DefaultProfile, "acme2.example.com")
	refused("ACME certificate", "simplereenroll", acmeCert, acmeKey, "issued through acme")
	cliCert, cliKey := e.issueVia(t, enroll.Operator(enroll.FrontendCLI, "op"), DefaultProfile, "cli.example.com")
	refused("CLI certificate", "simplereenroll", cliCert, cliKey, "issued through cli")
	// Through EST on another label.
	dev := e.deviceCert("router-l2")
	csr, key := newCSR(t, "l2.example.com")
	l2 := certsResponse(t, e.do(e.client(&dev), "POST", "devices2/simpleenroll", b64(csr), "", ""))[0]
	refused("another label's certificate", "simplereenroll", l2, key, "another EST label")
	// Before origins were recorded: only on a renew_unrecorded label.
	old, oldKey := e.issueUnrecorded(t, "old.example.com")
	refused("unrecorded certificate", "simplereenroll", old, oldKey, "default.renew_unrecorded is not set")
	if n := e.certCount() - before; n != 4 {
		t.Fatalf("refused renewals issued %d certificates", n-4)
	}
	// The same label renews its own, and renew_unrecorded the old one.
	got := certsResponse(t, e.do(e.tlsAs(l2, key), "POST", "devices2/simplereenroll", b64(renewOf(l2, key)), "", ""))[0]
	if got.DNSNames[0] != "l2.example.com" {
		t.Fatal(got.DNSNames)
	}
	st, _ := e.srv.Core.CA.Store()
	rec, err := st.Cert(got.SerialNumber)
	if err != nil || rec.Origin == nil || rec.Origin.Frontend != "est" || rec.Origin.Label != "devices2" {
		t.Fatalf("renewed certificate's origin: %+v %v", rec, err)
	}
	got = certsResponse(t, e.do(e.tlsAs(old, oldKey), "POST", "legacy/simplereenroll", b64(renewOf(old, oldKey)), "", ""))[0]
	if got.DNSNames[0] != "old.example.com" {
		t.Fatal(got.DNSNames)
	}
}

// issueVia issues a certificate through enroll for another front-end's
// principal, as ACME or the CLI would.
func (e *env) issueVia(t *testing.T, who enroll.Principal, prof, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	csr, key := newCSR(t, name)
	svc := e.srv.Core.Enroll
	id, err := svc.Submit(context.Background(), enroll.Request{Profile: prof, CSR: csr, Key: "test-" + name, Class: queue.ClassInteractive, Principal: who})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := svc.Wait(ctx, id)
	if err != nil || res.State != store.JobDone {
		t.Fatalf("%v %+v", err, res)
	}
	cert, err := x509.ParseCertificate(res.DER)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// issueUnrecorded issues a certificate as versions before origins did:
// its record has none.
func (e *env) issueUnrecorded(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	csrDER, key := newCSR(t, name)
	csr, err := x509x.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.srv.Core.CA.Issue(context.Background(), ca.IssueRequest{Profile: DefaultProfile, CSR: csr}, ca.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Origin != nil {
		t.Fatalf("origin %+v", rec.Origin)
	}
	cert, _ := x509.ParseCertificate(rec.DER)
	return cert, key
}

// tlsAs is a client presenting cert, with the issuing CA's chain.
func (e *env) tlsAs(cert *x509.Certificate, key *ecdsa.PrivateKey) *http.Client {
	iss, _ := LoadCertificates(e.chainPEM)
	return e.client(&tls.Certificate{Certificate: [][]byte{cert.Raw, iss[0].Raw}, PrivateKey: key})
}

// A renewal is checked against the label's and the user's current rules:
// a certificate obtained with a password renews while its user's grants
// still cover its names, and not once the user is gone.
func TestReenrollRechecksUser(t *testing.T) {
	e := sharedEnv(t)
	reload := func() {
		db := e.fe.basic.db.(*fileUsers).db
		db.mu.Lock()
		db.checked = time.Time{} // read the file again now, not within the second
		db.mu.Unlock()
	}
	grant := func(names *enroll.NamePolicy) {
		t.Helper()
		if _, err := SetUser(e.dataDir, "erin", []byte("erin's password"), names); err != nil {
			t.Fatal(err)
		}
		reload()
	}
	grant(&enroll.NamePolicy{DNS: []string{"erin.example.net"}})
	csr, key := newCSR(t, "erin.example.net")
	cert := certsResponse(t, e.do(e.client(nil), "POST", "simpleenroll", b64(csr), "erin", "erin's password"))[0]
	renew := func() response {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return e.do(e.tlsAs(cert, key), "POST", "simplereenroll", b64(csrWithKey(t, k, pkix.Name{CommonName: "erin.example.net"}, []string{"erin.example.net"})), "", "")
	}
	if got := certsResponse(t, renew())[0]; got.DNSNames[0] != "erin.example.net" {
		t.Fatal(got.DNSNames)
	}
	before := e.certCount()
	grant(&enroll.NamePolicy{DNS: []string{"other.example.net"}})
	if r := renew(); r.code != http.StatusForbidden || !strings.Contains(r.text(), "not granted") {
		t.Errorf("renewal after the grant changed: %d %s", r.code, r.text())
	}
	if err := RemoveUser(e.dataDir, "erin"); err != nil {
		t.Fatal(err)
	}
	reload()
	if r := renew(); r.code != http.StatusForbidden || !strings.Contains(r.text(), "no longer exists") {
		t.Errorf("renewal after the user was removed: %d %s", r.code, r.text())
	}
	if e.certCount() != before {
		t.Fatal("a refused renewal issued a certificate")
	}
}

// An IDevID label whose profile cannot carry the serialNumber is refused
// when it is mounted, not when a device enrolls.
func TestIDevIDNeedsSerialNumberVariable(t *testing.T) {
	fe, err := New(Options{Labels: map[string]*Label{"bad": {Profile: "ec/tls-client", Names: &enroll.NamePolicy{ClientCert: enroll.ClientCertIDevID}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := sharedEnv(t)
	if err := fe.Mount(http.NewServeMux(), e.srv.Core.Enroll); err == nil || !strings.Contains(err.Error(), "serial_number") {
		t.Fatalf("mounted: %v", err)
	}
}
