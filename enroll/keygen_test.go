package enroll_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"testing"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

func TestKeygenThroughQueue(t *testing.T) {
	p := startPipeline(t, 1, 0)
	csr := csrFor(t, "kg.example.com")
	priv, err := jobspec.NewKeygenRecipient()
	if err != nil {
		t.Fatal(err)
	}
	req := enroll.KeygenRequest{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr, Key: "kg-1", Recipient: priv.PublicKey().Bytes()}
	id, err := p.svc.SubmitKeygen(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	res := waitFor(t, p.svc, id)
	if res.State != store.JobDone {
		t.Fatalf("job ended %s: %s", res.State, res.Error)
	}
	cert, err := x509.ParseCertificate(res.DER)
	if err != nil {
		t.Fatal(err)
	}
	if cert.DNSNames[0] != "kg.example.com" {
		t.Errorf("names %v", cert.DNSNames)
	}
	parsed, _ := x509.ParseCertificateRequest(csr)
	if bytes.Equal(cert.RawSubjectPublicKeyInfo, parsed.RawSubjectPublicKeyInfo) {
		t.Fatal("the certificate carries the CSR's key, not a generated one")
	}
	sealed, err := p.svc.SealedKey(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := jobspec.OpenKey(priv, id, sealed)
	if err != nil {
		t.Fatal(err)
	}
	key, err := algo.ParsePKCS8(pkcs8)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := algo.PublicKey(key)
	spki, _ := algo.MarshalPKIX(pub)
	if !bytes.Equal(spki, cert.RawSubjectPublicKeyInfo) {
		t.Fatal("the delivered key does not match the certificate")
	}
	// Another recipient cannot open it.
	other, _ := jobspec.NewKeygenRecipient()
	if _, err := jobspec.OpenKey(other, id, sealed); err == nil {
		t.Fatal("a foreign one-time key opened the sealed key")
	}
	// The store keeps the certificate and the job, never the key.
	j, err := p.svc.Job(id)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(j)
	if j.Kind != jobspec.KindKeygen || len(j.Result) != 0 || bytes.Contains(raw, sealed[:32]) || bytes.Contains(raw, []byte("sealed")) {
		t.Fatalf("job record holds more than it should: %s", raw)
	}
	// The same request again is the same job.
	again, err := p.svc.SubmitKeygen(context.Background(), req)
	if err != nil || again != id {
		t.Fatalf("resubmit: %v, %s != %s", err, again, id)
	}
	// The same key with another CSR is refused.
	req.CSR = csrFor(t, "other.example.com")
	if _, err := p.svc.SubmitKeygen(context.Background(), req); !errors.Is(err, store.ErrKeyReused) {
		t.Fatalf("key reuse: %v", err)
	}
}

// A CSR whose key the profile refuses gets a key of the profile's default
// algorithm; names the profile refuses never reach the queue.
func TestKeygenAlgorithmAndPolicy(t *testing.T) {
	p := startPipeline(t, 1, 0)
	priv, _ := jobspec.NewKeygenRecipient()
	edKey, _ := algo.GenerateKey(algo.Ed25519, rand.Reader)
	s, _ := algo.NewSigner(edKey, algo.Ed25519)
	csr, err := x509x.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ed.example.com"}}, s, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.svc.SubmitKeygen(context.Background(), enroll.KeygenRequest{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr, Key: "kg-ed", Recipient: priv.PublicKey().Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	res := waitFor(t, p.svc, id)
	if res.State != store.JobDone {
		t.Fatalf("job ended %s: %s", res.State, res.Error)
	}
	cert, _ := x509.ParseCertificate(res.DER)
	if a, _ := x509x.KeyAlgorithm(cert); a != algo.ECDSAP256 {
		t.Errorf("generated %s, want the profile's ecdsa-p256", a)
	}
	bad := csrFor(t, "bad_name!")
	if _, err := p.svc.SubmitKeygen(context.Background(), enroll.KeygenRequest{Principal: testPrincipal, Profile: "ec/tls-server", CSR: bad, Key: "kg-bad", Recipient: priv.PublicKey().Bytes()}); err == nil {
		t.Fatal("a name the profile refuses was accepted")
	}
	if _, err := p.svc.Job(enroll.JobID(enroll.QueueName(p.ca), "kg-bad")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused request was recorded: %v", err)
	}
}
