package acme_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/qpki/qpki/acme"
	"github.com/qpki/qpki/pkg/ca"
)

// TestDefaultProfiles: a classical CA offers any/tls-server, a
// post-quantum one ec/tls-server.
func TestDefaultProfiles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ profile, want string }{
		{"ec/root-ca", "any/tls-server"},
		{"ed/root-ca", "any/tls-server"},
		{"ml/root-ca", "ec/tls-server"},
	} {
		c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, strings.ReplaceAll(tc.profile, "/", "-")), Profile: tc.profile, Vars: map[string]any{"cn": "Default Profile Root"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := acme.DefaultProfiles(c); !slices.Equal(got, []string{tc.want}) {
			t.Errorf("%s CA: default profiles %v, want [%s]", tc.profile, got, tc.want)
		}
		c.Close()
	}
}

// TestLegoRSAAndECDSAKeys: lego with an RSA key, as clients that do not
// speak the profiles extension default to, gets a certificate from the
// default profile of a classical CA, with keyEncipherment; with an ECDSA
// key, one without it. Before any/tls-server, the RSA CSR was badCSR.
func TestLegoRSAAndECDSAKeys(t *testing.T) {
	lego := tool(t, "lego")
	e := newEnv(t, func(c *acme.Config) { c.Profiles = acme.DefaultProfiles(mustOpenCA(t, c)) })
	path := t.TempDir()
	env := []string{"LEGO_CA_CERTIFICATES=" + e.rootFile}
	for _, tc := range []struct{ keyType, name string }{{"rsa2048", "lego-rsa.example.com"}, {"ec384", "lego-ec.example.com"}} {
		t.Run(tc.keyType, func(t *testing.T) {
			run(t, env, lego, "--server", e.dirURL, "--accept-tos", "--email", "ops@example.com", "--path", path,
				"--key-type", tc.keyType, "--domains", tc.name, "--http", "--http.port", "127.0.0.1:"+strconv.Itoa(e.httpPort), "run")
			leaf := filepath.Join(path, "certificates", tc.name+".crt")
			e.opensslVerify(t, leaf, filepath.Join(path, "certificates", tc.name+".issuer.crt"))
			c := readLeaf(t, leaf)
			want := x509.KeyUsageDigitalSignature
			switch c.PublicKey.(type) {
			case *rsa.PublicKey:
				want |= x509.KeyUsageKeyEncipherment
				if tc.keyType != "rsa2048" {
					t.Fatalf("an RSA key for --key-type %s", tc.keyType)
				}
			case *ecdsa.PublicKey:
				if tc.keyType != "ec384" {
					t.Fatalf("an ECDSA key for --key-type %s", tc.keyType)
				}
			default:
				t.Fatalf("key %T", c.PublicKey)
			}
			if c.KeyUsage != want {
				t.Errorf("key usage %b, want %b", c.KeyUsage, want)
			}
		})
	}
}

// TestDefaultProfileRefusesOtherKeys: an Ed25519 CSR under the default
// profile is badCSR naming the algorithms that are allowed.
func TestDefaultProfileRefusesOtherKeys(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.Profiles = acme.DefaultProfiles(mustOpenCA(t, c)) })
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.raw(t)
	c.register()
	orderURL, o := c.newOrder("ed.example.com")
	c.solveHTTP01(o, answers, false)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"ed.example.com"}}, edKey)
	if err != nil {
		t.Fatal(err)
	}
	p := c.post(o["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}).
		wantProblem(t, http.StatusBadRequest, "badCSR")
	for _, alg := range []string{"rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384"} {
		if !strings.Contains(p["detail"].(string), alg) {
			t.Errorf("badCSR detail %q does not name the allowed %s", p["detail"], alg)
		}
	}
	if e.jobExists(t, lastPart(orderURL)) {
		t.Fatal("a refused CSR left a signing job")
	}
}

// mustOpenCA opens the CA the environment serves: the tweak runs before
// the server starts, and the CA dir is the data dir's sibling.
func mustOpenCA(t *testing.T, c *acme.Config) *ca.CA {
	t.Helper()
	x, err := ca.Open(filepath.Join(filepath.Dir(c.DataDir), "issuing"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}
