package server_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/qpki/qpki/server"
)

// The local API answers an issued job with the certificate once: in der,
// with its record (subject, serial, ...) beside it without a second copy.
func TestLocalAnswerCarriesCertificateOnce(t *testing.T) {
	e := newEnv(t)
	e.startServe(1)
	defer e.stopAll(t)
	cl, err := server.Dial(e.caDir)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := cl.Submit(context.Background(), server.SubmitRequest{Profile: "ec/tls-server",
		CSR: benchCSR(t, "once.example.com"), Key: "once", Wait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(st.DER)
	if err != nil {
		t.Fatalf("der: %v", err)
	}
	if st.Cert == nil || st.Cert.Subject == "" || st.Serial != st.Cert.Serial || len(st.Cert.DER) != 0 {
		t.Fatalf("record %+v, serial %q", st.Cert, st.Serial)
	}
	if cert.DNSNames[0] != "once.example.com" {
		t.Errorf("issued for %v", cert.DNSNames)
	}
}
