package batch_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/qpki/qpki/batch"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/server"
)

// A batch writes each certificate to OUT/<id>.crt; a file a crash left
// empty counts as missing, and running the batch again rewrites it with
// the same certificate.
func TestRunAndStatusAfterCrash(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	c, err := ca.Init(ca.InitOptions{Dir: caDir, Profile: "ec/root-ca", Vars: map[string]any{"cn": "Batch Root"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	reqs := filepath.Join(dir, "requests.jsonl")
	f, _ := os.Create(reqs)
	enc := json.NewEncoder(f)
	for _, id := range []string{"a", "b", "c"} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id + ".example.com"}}, key)
		enc.Encode(batch.Line{ID: id, Profile: "ec/tls-server", CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
			Vars: map[string]any{"cn": id + ".example.com", "dns_names": id + ".example.com"}})
	}
	f.Close()
	out := filepath.Join(dir, "out")
	run := func() {
		p, err := server.OpenPipeline(caDir, ca.KeyOptions{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		sum, err := batch.Run(context.Background(), p, reqs, batch.Options{OutDir: out, Concurrency: 2, Progress: io.Discard})
		if err != nil || sum.Issued != 3 {
			t.Fatalf("run: %+v, %v", sum, err)
		}
	}
	run()
	serial := func(id string) string {
		data, _ := os.ReadFile(filepath.Join(out, id+".crt"))
		block, _ := pem.Decode(data)
		if block == nil {
			t.Fatalf("%s.crt: no PEM", id)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return cert.SerialNumber.String()
	}
	before := serial("b")
	if st, err := batch.Status(reqs, out); err != nil || st.Done != 3 || st.Missing != 0 {
		t.Fatalf("status after the run: %+v, %v", st, err)
	}
	os.WriteFile(filepath.Join(out, "b.crt"), nil, 0o644) // what a crash can leave
	st, err := batch.Status(reqs, out)
	if err != nil || st.Done != 2 || st.Missing != 1 || len(st.IDs) != 1 || st.IDs[0] != "b" {
		t.Fatalf("status with an empty file: %+v, %v", st, err)
	}
	run()
	if after := serial("b"); after != before {
		t.Fatalf("the batch run again issued b anew: serial %s, was %s", after, before)
	}
	if st, err := batch.Status(reqs, out); err != nil || st.Done != 3 {
		t.Fatalf("status after the second run: %+v, %v", st, err)
	}
}
