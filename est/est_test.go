package est

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
)

var (
	sharedOnce sync.Once
	shared     *env
)

// labels of the shared server.
func sharedLabels(o *Options) {
	on := true
	o.Labels = map[string]*Label{
		"bound":  {Profile: "ec/tls-server", ChannelBinding: &on, Names: exampleNames()},
		"basic":  {Profile: "ec/tls-server", Auth: []string{AuthBasic}, Users: []string{"bob"}, Names: exampleNames()},
		"client": {Profile: "ec/tls-client", Auth: []string{AuthCert}, Names: exampleNames()},
		// Labels of the name-policy and renewal tests (policy_test.go).
		"nonames":  {Profile: DefaultProfile},
		"devices2": {Profile: DefaultProfile, Names: exampleNames()},
		"legacy":   {Profile: DefaultProfile, Names: exampleNames(), RenewUnrecorded: true},
		"ldevid":   {Profile: DefaultProfile, Names: &enroll.NamePolicy{ClientCert: enroll.ClientCertIDevID}},
		// The RFC 7030 example's CN, granted as a subject value.
		"rsa": {Profile: "rsa/tls-client", Names: exampleNames().Join(&enroll.NamePolicy{Subject: map[string][]string{"CN": {"demostep4 1368141352"}}})},
	}
}

// sharedEnv is one server for the tests that do not change its state in
// ways others see.
func sharedEnv(t *testing.T) *env {
	sharedOnce.Do(func() {
		shared = newEnv(&sharedTB{}, envConfig{workers: 2, opts: sharedLabels})
		if _, err := SetUser(shared.dataDir, "bob", []byte("bob's password"), nil); err != nil {
			panic(err)
		}
		if _, err := SetUser(shared.dataDir, "dave", []byte("dave's password"), &enroll.NamePolicy{DNS: []string{"*.dave.example.org"}}); err != nil {
			panic(err)
		}
	})
	if shared == nil {
		t.Fatal("the shared server did not start")
	}
	c := *shared
	c.t = t
	return &c
}

func TestCACerts(t *testing.T) {
	e := sharedEnv(t)
	for _, path := range []string{"cacerts", "client/cacerts"} {
		r := e.do(e.client(nil), "GET", path, nil, "", "")
		certs := certsResponse(t, r)
		if len(certs) != 2 {
			t.Fatalf("%s: %d certificates, want the issuing CA and the root", path, len(certs))
		}
		names := certs[0].Subject.CommonName + "," + certs[1].Subject.CommonName
		if !strings.Contains(names, "EST Test Issuing CA") || !strings.Contains(names, "EST Test Root") {
			t.Errorf("%s: %s", path, names)
		}
		if r.header.Get("Content-Transfer-Encoding") != "base64" {
			t.Errorf("Content-Transfer-Encoding %q", r.header.Get("Content-Transfer-Encoding"))
		}
	}
	if r := e.do(e.client(nil), "GET", "nolabel/cacerts", nil, "", ""); r.code != http.StatusNotFound {
		t.Errorf("unknown label: %d %s", r.code, r.text())
	}
}

func TestCSRAttrs(t *testing.T) {
	e := sharedEnv(t)
	get := func(path string) []CSRAttr {
		r := e.do(e.client(nil), "GET", path, nil, "", "")
		if r.code != 200 || r.header.Get("Content-Type") != mediaCSRAttrs {
			t.Fatalf("%s: %d %s %s", path, r.code, r.header.Get("Content-Type"), r.text())
		}
		der, err := decodeBase64(r.body)
		if err != nil {
			t.Fatal(err)
		}
		attrs, err := ParseCSRAttrs(der)
		if err != nil {
			t.Fatal(err)
		}
		return attrs
	}
	find := func(attrs []CSRAttr, oid asn1.ObjectIdentifier) *CSRAttr {
		for i := range attrs {
			if attrs[i].OID.Equal(oid) {
				return &attrs[i]
			}
		}
		return nil
	}
	attrs := get("csrattrs")
	ec := find(attrs, oidECPublicKey)
	if ec == nil || len(ec.Values) != 1 {
		t.Fatalf("no id-ecPublicKey attribute: %+v", attrs)
	}
	var curve asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(ec.Values[0].FullBytes, &curve); err != nil || !curve.Equal(curveOIDs["ecdsa-p256"]) {
		t.Errorf("curve %v, want P-256 (ec/tls-server's algorithm)", curve)
	}
	if a := find(attrs, ecdsaSigOIDs["ecdsa-p256"]); a == nil || a.Values != nil {
		t.Error("no ecdsa-with-SHA256 OID")
	}
	if a := find(attrs, oidExtensionRequest); a == nil {
		t.Error("no extensionRequest for subjectAltName")
	}
	if find(attrs, oidChallengePassword) != nil {
		t.Error("challengePassword asked for without channel binding")
	}
	if find(get("bound/csrattrs"), oidChallengePassword) == nil {
		t.Error("the channel-bound label does not ask for challengePassword")
	}
}

func TestSimpleEnrollClientCert(t *testing.T) {
	e := sharedEnv(t)
	dev := e.deviceCert("router-1")
	c := e.client(&dev)
	csr, key := newCSR(t, "router1.example.com")
	certs := certsResponse(t, e.do(c, "POST", "simpleenroll", b64(csr), "", ""))
	if len(certs) != 1 {
		t.Fatalf("%d certificates, want the issued one only", len(certs))
	}
	cert := certs[0]
	if cert.DNSNames[0] != "router1.example.com" || !cert.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatalf("wrong certificate: %v", cert.DNSNames)
	}
	inter := x509.NewCertPool()
	inter.AppendCertsFromPEM(mustRead(t, e.chainPEM))
	// The default EST profile makes client certificates (est/device).
	if _, err := cert.Verify(x509.VerifyOptions{Roots: e.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Fatalf("the default EST profile issued serverAuth: %v", cert.ExtKeyUsage)
	}
	// The same CSR again is the same job: the same certificate.
	again := certsResponse(t, e.do(c, "POST", "simpleenroll", b64(csr), "", ""))
	if !again[0].Equal(cert) {
		t.Fatal("the same CSR got a second certificate")
	}
	// A label issuing client certificates.
	csr2, _ := newCSR(t, "device2.example.com")
	cc := certsResponse(t, e.do(c, "POST", "client/simpleenroll", b64(csr2), "", ""))
	if len(cc[0].ExtKeyUsage) != 1 || cc[0].ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("label client issued EKU %v", cc[0].ExtKeyUsage)
	}
}

func TestSimpleEnrollBasic(t *testing.T) {
	e := sharedEnv(t)
	c := e.client(nil)
	csr, _ := newCSR(t, "basic1.example.com")
	certs := certsResponse(t, e.do(c, "POST", "simpleenroll", b64(csr), testUser, testPass))
	if certs[0].Subject.CommonName != "basic1.example.com" {
		t.Fatal(certs[0].Subject)
	}
	// bob may use the basic label, alice may not; certificates are not
	// accepted there.
	csr2, _ := newCSR(t, "basic2.example.com")
	certsResponse(t, e.do(c, "POST", "basic/simpleenroll", b64(csr2), "bob", "bob's password"))
	if r := e.do(c, "POST", "basic/simpleenroll", b64(csr2), testUser, testPass); r.code != http.StatusForbidden {
		t.Errorf("alice on label basic: %d %s", r.code, r.text())
	}
	dev := e.deviceCert("router-9")
	if r := e.do(e.client(&dev), "POST", "basic/simpleenroll", b64(csr2), "", ""); r.code != http.StatusUnauthorized {
		t.Errorf("a certificate on a basic-only label: %d %s", r.code, r.text())
	}
	// Basic on a certificate-only label.
	if r := e.do(c, "POST", "client/simpleenroll", b64(csr2), testUser, testPass); r.code != http.StatusForbidden {
		t.Errorf("basic on label client: %d %s", r.code, r.text())
	}
}

// The cache spares the hash for a credential verified before, and never
// accepts a wrong password.
func TestBasicAuthCache(t *testing.T) {
	dir := t.TempDir()
	if _, err := SetUser(dir, "dev", []byte("pw-1"), nil); err != nil {
		t.Fatal(err)
	}
	b, err := newBasicAuth(UsersDir(dir), time.Minute, 100, 4)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := b.check("dev", "pw-1"); err != nil {
		t.Fatal(err)
	}
	slow := time.Since(start)
	start = time.Now()
	for range 100 {
		if _, err := b.check("dev", "pw-1"); err != nil {
			t.Fatal(err)
		}
	}
	if fast := time.Since(start) / 100; fast*20 > slow {
		t.Errorf("a cached check took %v, the first %v", fast, slow)
	}
	if _, err := b.check("dev", "pw-2"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, err := b.check("nobody", "pw-1"); err == nil {
		t.Fatal("unknown user accepted")
	}
	// A new password takes effect at once, cache or not.
	time.Sleep(10 * time.Millisecond)
	if _, err := SetUser(dir, "dev", []byte("pw-2"), nil); err != nil {
		t.Fatal(err)
	}
	b.db.(*fileUsers).db.checked = time.Time{}
	if _, err := b.check("dev", "pw-1"); err == nil {
		t.Fatal("the old password still works from the cache")
	}
	if _, err := b.check("dev", "pw-2"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveUser(dir, "dev"); err != nil {
		t.Fatal(err)
	}
	b.db.(*fileUsers).db.checked = time.Time{}
	if _, err := b.check("dev", "pw-2"); err == nil {
		t.Fatal("a removed user still works from the cache")
	}
}

func TestUsersFile(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{"", "a:b", "with space", strings.Repeat("x", 65)} {
		if _, err := SetUser(dir, bad, []byte("x"), nil); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if created, err := SetUser(dir, "u1", []byte("p"), nil); err != nil || !created {
		t.Fatal(created, err)
	}
	if created, err := SetUser(dir, "u1", []byte("q"), nil); err != nil || created {
		t.Fatal(created, err)
	}
	SetUser(dir, "u0", []byte("p"), nil)
	users, err := ListUsers(dir)
	if err != nil || len(users) != 2 || users[0].Name != "u0" || !strings.HasPrefix(users[1].Hash, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Fatalf("%+v %v", users, err)
	}
	if ok, _ := VerifyPassword(users[1].Hash, []byte("q")); !ok {
		t.Error("password q does not verify")
	}
	if ok, _ := VerifyPassword(users[1].Hash, []byte("p")); ok {
		t.Error("the replaced password verifies")
	}
	if err := RemoveUser(dir, "nobody"); err == nil {
		t.Error("removing an unknown user succeeded")
	}
	for _, h := range []string{"", "$argon2id$v=19$m=1,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43), "$bcrypt$x"} {
		if _, err := VerifyPassword(h, []byte("x")); err == nil {
			t.Errorf("hash %q accepted", h)
		}
	}
}

// Requests without credentials, with wrong ones, or with bodies that are
// not CSRs get the right status, a text reason, and issue nothing.
func TestRefusals(t *testing.T) {
	e := sharedEnv(t)
	csr, _ := newCSR(t, "refused.example.com")
	stranger := newIssuer(t, "Unknown CA")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	strangerCert := stranger.issue(t, key.Public(), pkix.Name{CommonName: "stranger"}, nil)
	strangerTLS := tls.Certificate{Certificate: [][]byte{strangerCert.Raw}, PrivateKey: key}
	dev := e.deviceCert("router-2")
	badSig := bytes.Clone(csr)
	badSig[len(badSig)-3] ^= 0xff
	big := bytes.Repeat([]byte("A"), MaxBody+10)
	before := e.certCount()
	for _, c := range []struct {
		name       string
		client     *http.Client
		method     string
		path       string
		body       []byte
		user, pass string
		code       int
		reason     string
	}{
		{"no credentials", e.client(nil), "POST", "simpleenroll", b64(csr), "", "", 401, "authentication required"},
		{"wrong password", e.client(nil), "POST", "simpleenroll", b64(csr), testUser, "wrong", 401, "wrong user name or password"},
		{"unknown user", e.client(nil), "POST", "simpleenroll", b64(csr), "mallory", testPass, 401, "wrong user name or password"},
		{"untrusted client certificate", e.client(&strangerTLS), "POST", "simpleenroll", b64(csr), "", "", 403, "not trusted"},
		{"garbage body", e.client(&dev), "POST", "simpleenroll", []byte("this is not base64!"), "", "", 400, "not base64"},
		{"base64 garbage", e.client(&dev), "POST", "simpleenroll", b64([]byte("not a CSR")), "", "", 400, "CSR"},
		{"empty body", e.client(&dev), "POST", "simpleenroll", []byte{}, "", "", 400, "empty"},
		{"bad signature", e.client(&dev), "POST", "simpleenroll", b64(badSig), "", "", 400, "signature"},
		{"oversized body", e.client(&dev), "POST", "simpleenroll", big, "", "", 413, "larger than"},
		{"name the profile refuses", e.client(nil), "POST", "basic/simpleenroll", b64(mustCSR(t, "not a dns name!")), "bob", "bob's password", 400, "not a dns name"},
		{"name not granted", e.client(&dev), "POST", "simpleenroll", b64(mustCSR(t, "www.victim.com")), "", "", 403, `subject CN=www.victim.com is not granted`},
		{"fullcmc", e.client(&dev), "POST", "fullcmc", b64(csr), "", "", 501, "not implemented"},
		{"unknown label", e.client(&dev), "POST", "nosuch/simpleenroll", b64(csr), "", "", 404, "unknown EST label"},
		{"GET simpleenroll", e.client(&dev), "GET", "simpleenroll", nil, "", "", 405, ""},
		{"reenroll without a certificate", e.client(nil), "POST", "simplereenroll", b64(csr), testUser, testPass, 401, "certificate being renewed"},
		{"reenroll with a device certificate", e.client(&dev), "POST", "simplereenroll", b64(csr), "", "", 403, "not issued by this CA"},
		{"serverkeygen without credentials", e.client(nil), "POST", "serverkeygen", b64(csr), "", "", 401, "authentication required"},
	} {
		r := e.do(c.client, c.method, c.path, c.body, c.user, c.pass)
		if r.code != c.code || !strings.Contains(r.text(), c.reason) {
			t.Errorf("%s: %d %q, want %d %q", c.name, r.code, r.text(), c.code, c.reason)
			continue
		}
		if c.code != 405 && !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s: Content-Type %q", c.name, r.header.Get("Content-Type"))
		}
		if c.code == 401 && r.header.Get("WWW-Authenticate") == "" && c.path == "simpleenroll" {
			t.Errorf("%s: no WWW-Authenticate", c.name)
		}
	}
	if n := e.certCount(); n != before {
		t.Fatalf("refused requests issued %d certificates", n-before)
	}
}

func mustCSR(t *testing.T, cn string) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustRead(t testing.TB, path string) []byte {
	b, err := readFileLimited(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every body form RFC 7030 and RFC 8951 allow, and what clients send.
func TestBodyForms(t *testing.T) {
	e := sharedEnv(t)
	dev := e.deviceCert("router-3")
	c := e.client(&dev)
	forms := map[string]func([]byte) []byte{
		"base64 lines":    func(d []byte) []byte { return encodeBase64(d) },
		"base64 one line": func(d []byte) []byte { return []byte(strings.ReplaceAll(string(encodeBase64(d)), "\n", "")) },
		"base64 CRLF":     func(d []byte) []byte { return []byte(strings.ReplaceAll(string(encodeBase64(d)), "\n", "\r\n")) },
		"base64 76 cols":  func(d []byte) []byte { return wrap76(encodeBase64(d)) },
		"PEM":             func(d []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: d}) },
		"DER":             func(d []byte) []byte { return d },
	}
	for name, form := range forms {
		csr, _ := newCSR(t, "form"+strings.ReplaceAll(strings.ReplaceAll(name, " ", ""), "CRLF", "crlf")+".example.com")
		req, _ := http.NewRequest("POST", e.url+"simpleenroll", bytes.NewReader(form(csr)))
		req.Header.Set("Content-Type", "application/pkcs10")
		req.Header.Set("Content-Transfer-Encoding", "binary") // ignored (RFC 8951)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", name, resp.StatusCode, buf.String())
		}
	}
}

func wrap76(b []byte) []byte {
	s := strings.ReplaceAll(string(b), "\n", "")
	var out []byte
	for len(s) > 76 {
		out = append(out, s[:76]+"\r\n"...)
		s = s[76:]
	}
	return append(out, s...)
}

// A client certificate verified against one label's anchors is not taken
// for another's.
func TestClientCertCacheScope(t *testing.T) {
	c := newCertCache()
	dev := newIssuer(t, "Device CA")
	other := newIssuer(t, "Other CA")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := dev.issue(t, key.Public(), pkix.Name{CommonName: "d"}, nil)
	r := &http.Request{TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}}
	if got, err := c.verifyClientCert(r, []*x509.Certificate{dev.cert}); err != nil || got != leaf {
		t.Fatal(err)
	}
	if _, err := c.verifyClientCert(r, []*x509.Certificate{other.cert}); err == nil {
		t.Fatal("a certificate cached for one set of anchors passed another")
	}
	if got, err := c.verifyClientCert(r, []*x509.Certificate{dev.cert}); err != nil || got != leaf {
		t.Fatal(err)
	}
}
