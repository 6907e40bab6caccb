package ca

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// opensslBin finds the openssl binary; it is required under CI.
func opensslBin(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not found (install the Debian openssl package)")
		}
		t.Skip("openssl not found")
	}
	return p
}

// openssl runs openssl and returns its combined output; it fails the test
// when openssl fails.
func openssl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(opensslBin(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// opensslFails runs openssl expecting failure and returns its output.
func opensslFails(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(opensslBin(t), args...).CombinedOutput()
	if err == nil {
		t.Fatalf("openssl %v succeeded, want failure:\n%s", args, out)
	}
	return string(out)
}

func newRoot(t testing.TB, dir, profile, cn string) *CA {
	t.Helper()
	c, err := Init(InitOptions{Dir: dir, Profile: profile, Vars: map[string]any{"cn": cn}})
	if err != nil {
		t.Fatalf("init %s: %v", profile, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newSub(t testing.TB, dir, profile, cn string, parent *CA) *CA {
	t.Helper()
	c, err := Init(InitOptions{Dir: dir, Profile: profile, Vars: map[string]any{"cn": cn}, Parent: parent})
	if err != nil {
		t.Fatalf("init %s: %v", profile, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newCSR makes a CSR for a fresh key of algorithm a.
func newCSR(t testing.TB, a algo.Algorithm, cn string, dns ...string) *x509x.CertificateRequest {
	t.Helper()
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{DNSNames: dns}
	tmpl.Subject.CommonName = cn
	der, err := x509x.CreateCertificateRequest(rand.Reader, tmpl, s, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509x.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func writePEM(t testing.TB, path string, der []byte, typ string) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeCertsFile(t testing.TB, path string, certs ...*x509.Certificate) string {
	t.Helper()
	if err := os.WriteFile(path, EncodeCerts(certs...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// snapshot hashes every file under dir but the store, to show that a failed command
// left a CA directory unchanged.
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == StoreFile {
			return err // the store's content is checked through its API
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		rel, _ := filepath.Rel(dir, path)
		lines = append(lines, rel+" "+hex.EncodeToString(sum[:]))
		return nil
	})
	sort.Strings(lines)
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func readTestCSR(t testing.TB, path string) *x509x.CertificateRequest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509x.DecodeCSR(data)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509x.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func nowUTC() time.Time { return time.Now().UTC() }

func ellipticP256() elliptic.Curve { return elliptic.P256() }
