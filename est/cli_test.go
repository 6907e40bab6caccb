package est

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/ca"
)

// TestDeviceScript runs testdata/device.sh: openssl and curl against the
// server as a device engineer scripts them — cacerts, csrattrs,
// simpleenroll with a client certificate and with a password,
// simplereenroll with the certificate just issued, serverkeygen with the
// key matched to its certificate.
func TestDeviceScript(t *testing.T) {
	for _, tool := range []string{"openssl", "curl", "base64", "awk", "sh", "cmp"} {
		needTool(t, tool)
	}
	e := sharedEnv(t)
	work := t.TempDir()
	dev := e.deviceCert("router-sh")
	certFile := filepath.Join(work, "manufacturer.pem")
	os.WriteFile(certFile, []byte(string(pemCert(dev.Leaf))), 0o644)
	keyFile := writeKey(t, filepath.Join(work, "manufacturer.key"), dev.PrivateKey)
	script, _ := filepath.Abs("testdata/device.sh")
	cmd := exec.Command("sh", script)
	cmd.Env = append(os.Environ(), "EST="+strings.TrimSuffix(e.url, "/"), "ROOT="+e.rootPEM, "CERT="+certFile, "KEY="+keyFile,
		"USER="+testUser, "PASS="+testPass, "NAME=sh.example.com", "WORK="+work)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("device.sh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "all steps passed") {
		t.Fatalf("device.sh:\n%s", out)
	}
	for _, f := range []string{"device.pem", "renewed.pem"} {
		data, _ := os.ReadFile(filepath.Join(work, f))
		certs, err := ca.ParseCertificates(data)
		if err != nil || len(certs) != 1 || certs[0].Subject.CommonName != "sh.example.com" {
			t.Fatalf("%s: %v", f, err)
		}
	}
	txt, _ := os.ReadFile(filepath.Join(work, "csrattrs.txt"))
	if !strings.Contains(string(txt), "id-ecPublicKey") || !strings.Contains(string(txt), "prime256v1") {
		t.Errorf("csrattrs as openssl reads them:\n%s", txt)
	}
}

func pemCert(c *x509.Certificate) []byte {
	return []byte("-----BEGIN CERTIFICATE-----\n" + string(encodeBase64(c.Raw)) + "-----END CERTIFICATE-----\n")
}
