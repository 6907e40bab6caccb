package est

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/server"
)

// env is a running qpki server with the EST front-end: a root and an
// issuing CA (ec/root-ca, ec/issuing-ca), a device CA whose certificates
// simpleenroll accepts, and an HTTP Basic user.
type env struct {
	t        testing.TB
	dir      string
	srv      *server.Server
	fe       *Frontend
	url      string
	roots    *x509.CertPool
	rootPEM  string // file
	chainPEM string // issuing CA file
	device   *issuer
	dataDir  string
}

const (
	testUser = "alice"
	testPass = "correct horse battery staple"
)

type envConfig struct {
	workers int
	opts    func(*Options)
	tlsCert bool // a listener certificate from the test, not the pipeline
	server  func(*server.Config)
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	dir := t.TempDir()
	root, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "root"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "EST Test Root"}})
	if err != nil {
		t.Fatal(err)
	}
	issuing, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "issuing"), Profile: "ec/issuing-ca", Parent: root, Vars: map[string]any{"cn": "EST Test Issuing CA"}})
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := root.Certificate("")
	issCert, _ := issuing.Certificate("")
	root.Close()
	issuing.Close()
	e := &env{t: t, dir: dir, dataDir: filepath.Join(dir, "data"), roots: x509.NewCertPool()}
	e.roots.AddCert(rootCert)
	e.rootPEM = writePEM(t, filepath.Join(dir, "root.pem"), rootCert)
	e.chainPEM = writePEM(t, filepath.Join(dir, "issuing.pem"), issCert)
	e.device = newIssuer(t, "Device Manufacturer CA")
	if _, err := SetUser(e.dataDir, testUser, []byte(testPass), nil); err != nil {
		t.Fatal(err)
	}
	// The test names are granted explicitly: the unlabelled endpoints
	// (default:) may issue names under example.com, nothing else.
	o := Options{ClientCAs: []*x509.Certificate{e.device.cert}, DataDir: e.dataDir, AuthCacheTTL: DefaultAuthCacheTTL, Wait: 20 * time.Second,
		Default: &Label{Names: exampleNames()}}
	if cfg.opts != nil {
		cfg.opts(&o)
	}
	fe, err := New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.fe = fe
	scfg := server.Config{CADir: filepath.Join(dir, "issuing"), DataDir: e.dataDir, Listen: "127.0.0.1:0", Workers: cfg.workers}
	if cfg.tlsCert {
		scfg.TLSCert, scfg.TLSKey = e.listenerCert()
	}
	if cfg.server != nil {
		cfg.server(&scfg)
	}
	srv, err := server.Start(context.Background(), scfg, fe)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	<-srv.HTTPSReady()
	e.srv, e.url = srv, "https://"+srv.Addr+PathPrefix
	return e
}

// exampleNames grants the names the tests use: any under example.com.
func exampleNames() *enroll.NamePolicy { return &enroll.NamePolicy{DNS: []string{".example.com"}} }

// listenerCert makes a listener certificate signed by the root pool's own
// test CA, for servers without workers.
func (e *env) listenerCert() (string, string) {
	iss := newIssuer(e.t, "Listener CA")
	e.roots.AddCert(iss.cert)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := iss.issue(e.t, key.Public(), pkix.Name{CommonName: "127.0.0.1"}, func(c *x509.Certificate) {
		c.IPAddresses = append(c.IPAddresses, []byte{127, 0, 0, 1})
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	certFile := writePEM(e.t, filepath.Join(e.dir, "listener.pem"), cert)
	keyFile := writeKey(e.t, filepath.Join(e.dir, "listener.key"), key)
	return certFile, keyFile
}

func writePEM(t testing.TB, path string, certs ...*x509.Certificate) string {
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeKey(t testing.TB, path string, key crypto.PrivateKey) string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issuer is a small test CA outside qpki (a device manufacturer's).
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newIssuer(t testing.TB, cn string) *issuer {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &issuer{cert, key}
}

var serialSeq = big.NewInt(100)

func (i *issuer) issue(t testing.TB, pub crypto.PublicKey, subject pkix.Name, edit func(*x509.Certificate)) *x509.Certificate {
	serialSeq = new(big.Int).Add(serialSeq, big.NewInt(1))
	tmpl := &x509.Certificate{SerialNumber: serialSeq, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.cert, pub, i.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// deviceCert is a device certificate from the manufacturer CA, as a TLS
// client certificate.
func (e *env) deviceCert(cn string) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := e.device.issue(e.t, key.Public(), pkix.Name{CommonName: cn, SerialNumber: "SN-" + cn}, nil)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// client is an HTTPS client trusting the test CA, with an optional client
// certificate.
func (e *env) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: time.Minute}
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) text() string { return strings.TrimSpace(string(r.body)) }

// do sends one request; user may be "" for no Basic credentials.
func (e *env) do(c *http.Client, method, path string, body []byte, user, pass string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/pkcs10")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// certsResponse decodes a certs-only answer.
func certsResponse(t testing.TB, r response) []*x509.Certificate {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("status %d: %s", r.code, r.text())
	}
	if ct := r.header.Get("Content-Type"); ct != mediaCertsOnly {
		t.Fatalf("Content-Type %q", ct)
	}
	der, err := decodeBase64(r.body)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := cms.ParseCertsOnly(der)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// newCSR makes a CSR for name with a new P-256 key, with extra
// attributes added to the CertificationRequestInfo.
func newCSR(t testing.TB, name string, attrs ...attribute) ([]byte, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return csrWithKey(t, key, pkix.Name{CommonName: name}, []string{name}, attrs...), key
}

func csrWithKey(t testing.TB, key crypto.Signer, subject pkix.Name, dns []string, attrs ...attribute) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(attrs) == 0 {
		return der
	}
	csr, _ := x509.ParseCertificateRequest(der)
	var info struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes asn1.RawValue `asn1:"optional,tag:0"`
	}
	if _, err := asn1.Unmarshal(csr.RawTBSCertificateRequest, &info); err != nil {
		t.Fatal(err)
	}
	body := bytes.Clone(info.Attributes.Bytes)
	for _, a := range attrs {
		body = append(body, mustRaw(a).FullBytes...)
	}
	info.Attributes = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: body}
	tbs, err := asn1.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(tbs)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sigAlg := algorithmIdentifier{Algorithm: ecdsaSigOIDs["ecdsa-p256"]}
	if _, ok := key.Public().(*ecdsa.PublicKey); !ok {
		sigAlg = algorithmIdentifier{Algorithm: oidSHA256WithRSA, Parameters: asn1.NullRawValue}
	}
	out, err := asn1.Marshal(struct {
		TBS       asn1.RawValue
		Algorithm algorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, sigAlg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func challengeAttr(pw string) attribute {
	return attribute{oidChallengePassword, []asn1.RawValue{mustRaw(pw)}}
}

func b64(der []byte) []byte { return encodeBase64(der) }

// certCount is the number of certificates in the CA's store.
func (e *env) certCount() int {
	st, err := e.srv.Core.CA.Store()
	if err != nil {
		e.t.Fatal(err)
	}
	certs, err := st.List(store.Filter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(certs)
}

// needTool finds a command-line tool; without it the test is skipped,
// except under CI=true, where it fails.
func needTool(t testing.TB, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI: %v", name, err)
		}
		t.Skipf("%s not found", name)
	}
	return p
}

// sharedTB stands in for a testing.TB for the server shared by tests:
// it lives from the first test that needs it to the end of TestMain.
type sharedTB struct {
	testing.TB
}

var (
	sharedDir      string
	sharedCleanups []func()
)

func (sharedTB) Helper()                        {}
func (sharedTB) Fatal(args ...any)              { panic(fmt.Sprint(args...)) }
func (sharedTB) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (sharedTB) Errorf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (sharedTB) Cleanup(f func())               { sharedCleanups = append(sharedCleanups, f) }
func (sharedTB) TempDir() string {
	d, err := os.MkdirTemp(sharedDir, "env")
	if err != nil {
		panic(err)
	}
	return d
}

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "qpki-est-")
	if err != nil {
		panic(err)
	}
	sharedDir = d
	code := m.Run()
	for i := len(sharedCleanups) - 1; i >= 0; i-- {
		sharedCleanups[i]()
	}
	os.RemoveAll(d)
	os.Exit(code)
}

// algorithmIdentifier is an AlgorithmIdentifier, for requests built by hand.
type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}
