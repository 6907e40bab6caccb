package server_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/server"
)

// A partitioned CA's serve publishes each shard's CRL through the queue at
// /crl/<ca>/<shard>.crl on the plain-HTTP listener and re-signs a shard
// right after a revocation in it: each revoked certificate is revoked
// (openssl verify -crl_check) by the CRL fetched from its own CDP, and an
// unknown shard or CA name is 404.
func TestShardCRLsServed(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed")
	}
	dir := t.TempDir()
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "shardca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Shard Root"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetCRLConfig(4, "http://pki.example.com/crl", enroll.QueueName(c)); err != nil {
		t.Fatal(err)
	}
	caCert, _ := c.Certificate("")
	c.Close()
	s, err := server.Start(context.Background(), server.Config{CADir: c.Dir, DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0",
		Workers: 1, PublishCRL: true, CRLDays: 2, CRLOnRevoke: true, CRLListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	caPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o600)
	local := func(cdp string) string { return strings.Replace(cdp, "http://pki.example.com", "http://"+s.CRLAddr, 1) }

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var certs []*x509.Certificate
	for i := range 8 {
		id, err := s.Core.Enroll.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: benchCSR(nil, fmt.Sprintf("s%d.example.com", i)), Key: fmt.Sprint("s", i)})
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Core.Enroll.Wait(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(res.Cert.DER)
		if res.Cert.Shard == nil || len(cert.CRLDistributionPoints) != 1 || cert.CRLDistributionPoints[0] != fmt.Sprintf("http://pki.example.com/crl/shardca/%d.crl", *res.Cert.Shard) {
			t.Fatalf("shard %v, CDP %v", res.Cert.Shard, cert.CRLDistributionPoints)
		}
		certs = append(certs, cert)
	}
	for _, cert := range certs[:3] {
		if _, err := s.Core.CA.Revoke(cert.SerialNumber.Text(16), 1, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for i, cert := range certs[:3] {
		crl := waitCRL(t, local(cert.CRLDistributionPoints[0]), func(l *x509.RevocationList) bool {
			for _, e := range l.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
					return true
				}
			}
			return false
		})
		if got := ca.IssuingDistributionPointURL(crl); got != cert.CRLDistributionPoints[0] {
			t.Errorf("IDP %q, CDP %q", got, cert.CRLDistributionPoints[0])
		}
		crlPEM := filepath.Join(dir, fmt.Sprintf("crl%d.pem", i))
		os.WriteFile(crlPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw}), 0o600)
		leaf := filepath.Join(dir, fmt.Sprintf("leaf%d.pem", i))
		os.WriteFile(leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600)
		out, err := exec.Command(openssl, "verify", "-crl_check", "-CRLfile", crlPEM, "-CAfile", caPEM, leaf).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "certificate revoked") {
			t.Errorf("openssl verify of revoked %s: %v\n%s", cert.SerialNumber.Text(16), err, out)
		}
	}
	for _, path := range []string{"/crl/shardca/4.crl", "/crl/other/0.crl", "/crl/shardca/01.crl", "/crl/shardca/x.crl"} {
		resp, err := http.Get("http://" + s.CRLAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
}
