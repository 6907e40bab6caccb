package server_test

import (
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/server"
)

// serve publishes a CRL at start and again right after a revocation, over
// plain HTTP at CRLPath.
func TestCRLPublishedAfterRevocation(t *testing.T) {
	dir := t.TempDir()
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "CRL Root"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	s, err := server.Start(context.Background(), server.Config{CADir: c.Dir, DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0",
		Workers: 1, PublishCRL: true, CRLDays: 2, CRLOnRevoke: true, CRLListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	url := "http://" + s.CRLAddr + server.CRLPath
	first := waitCRL(t, url, func(*x509.RevocationList) bool { return true })
	if got := first.NextUpdate.Sub(first.ThisUpdate); got != 48*time.Hour {
		t.Errorf("CRL validity %s, want 48h", got)
	}
	id, err := s.Core.Enroll.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: benchCSR(nil, "r.example.com"), Key: "r"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := s.Core.Enroll.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Core.CA.Revoke(res.Cert.Serial, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	crl := waitCRL(t, url, func(l *x509.RevocationList) bool {
		return len(l.RevokedCertificateEntries) == 1 && l.RevokedCertificateEntries[0].SerialNumber.Text(16) == res.Cert.Serial
	})
	if crl.Number.Cmp(first.Number) <= 0 {
		t.Errorf("CRL number did not grow: %v then %v", first.Number, crl.Number)
	}
	cert, _ := s.Core.CA.Certificate("")
	if err := ca.CheckCRLSignature(crl, cert); err != nil {
		t.Fatal(err)
	}
}

func waitCRL(t *testing.T, url string, ok func(*x509.RevocationList) bool) *x509.RevocationList {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if resp.Header.Get("Content-Type") != "application/pkix-crl" {
					t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
				}
				crl, err := x509.ParseRevocationList(data)
				if err != nil {
					t.Fatal(err)
				}
				if ok(crl) {
					return crl
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the expected CRL was not published")
	return nil
}
