package cmp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/server"
)

// env is a running qpki serve with the CMP front-end on its plain-HTTP
// listener: an ec/ root and issuing CA, the default label granting names
// under example.com, a label "strict" granting nothing.
type env struct {
	t       testing.TB
	dir     string
	srv     *server.Server
	fe      *Frontend
	url     string // the plain-HTTP base URL
	rootPEM string
	caName  string
	dataDir string
	issuing *x509.Certificate
}

type envConfig struct {
	noWorkers bool // no worker signs until the test starts one
	p256      bool // an ecdsa-p256 issuing CA key (the benchmarks')
	opts      func(*Options)
	server    func(*server.Config)
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	dir := t.TempDir()
	root, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "root"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "CMP Test Root"}})
	if err != nil {
		t.Fatal(err)
	}
	issProfile := "ec/issuing-ca"
	if cfg.p256 {
		raw, err := profile.Builtin("ec/issuing-ca")
		if err != nil {
			t.Fatal(err)
		}
		raw = regexp.MustCompile(`(?m)^algorithm: .*$`).ReplaceAll(raw, []byte("algorithm: ecdsa-p256"))
		raw = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(raw, []byte("name: bench/issuing-ca-p256"))
		issProfile = filepath.Join(dir, "p256.yaml")
		os.WriteFile(issProfile, raw, 0o644)
	}
	issuing, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "issuing"), Profile: issProfile, Parent: root, Vars: map[string]any{"cn": "CMP Test Issuing CA"}})
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := root.Certificate("")
	issCert, _ := issuing.Certificate("")
	root.Close()
	issuing.Close()
	e := &env{t: t, dir: dir, dataDir: filepath.Join(dir, "data"), caName: "issuing", issuing: issCert}
	os.MkdirAll(e.dataDir, 0o700)
	e.rootPEM = writePEM(t, filepath.Join(dir, "root.pem"), rootCert)
	o := Options{DataDir: e.dataDir, Wait: 20 * time.Second, CAName: "issuing",
		Default: &Label{Names: &enroll.NamePolicy{DNS: []string{".example.com"}}, ImplicitConfirm: true},
		Labels:  map[string]*Label{"strict": {}}}
	if cfg.opts != nil {
		cfg.opts(&o)
	}
	fe, err := New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.fe = fe
	scfg := server.Config{CADir: filepath.Join(dir, "issuing"), DataDir: e.dataDir, Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Workers: 1}
	if cfg.noWorkers {
		scfg.Workers = 0
	}
	if cfg.server != nil {
		cfg.server(&scfg)
	}
	srv, err := server.Start(context.Background(), scfg, fe)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fe.Close(); srv.Shutdown() })
	if !cfg.noWorkers {
		<-srv.HTTPSReady()
	}
	e.srv, e.url = srv, "http://"+srv.CRLAddr
	return e
}

// secret adds a one-time secret.
func (e *env) secret(ref, label string, names *enroll.NamePolicy) string {
	e.t.Helper()
	s, err := AddSecret(e.fe.secrets, ref, label, time.Hour, names)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// certs is every certificate CMP issued.
func (e *env) certs() []*store.Cert {
	e.t.Helper()
	st, err := e.srv.Core.CA.Store()
	if err != nil {
		e.t.Fatal(err)
	}
	all, err := st.List(store.Filter{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*store.Cert
	for _, c := range all {
		if c.Origin != nil && c.Origin.Frontend == string(enroll.FrontendCMP) {
			out = append(out, c)
		}
	}
	return out
}

func writePEM(t testing.TB, path string, certs ...*x509.Certificate) string {
	var b strings.Builder
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKeyFile(t testing.TB, path string) *ecdsa.PrivateKey {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return key
}

// openssl runs openssl, failing the test when it is missing in CI.
func openssl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is required (scripts/deps.sh)")
		}
		t.Skip("openssl not installed")
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return string(out), err
}

func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
