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
	"strings"
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
	if st, err := batch.Status(reqs, out, ""); err != nil || st.Done != 3 || st.Missing != 0 {
		t.Fatalf("status after the run: %+v, %v", st, err)
	}
	os.WriteFile(filepath.Join(out, "b.crt"), nil, 0o644) // what a crash can leave
	st, err := batch.Status(reqs, out, "")
	if err != nil || st.Done != 2 || st.Missing != 1 || len(st.IDs) != 1 || st.IDs[0] != "b" {
		t.Fatalf("status with an empty file: %+v, %v", st, err)
	}
	run()
	if after := serial("b"); after != before {
		t.Fatalf("the batch run again issued b anew: serial %s, was %s", after, before)
	}
	if st, err := batch.Status(reqs, out, ""); err != nil || st.Done != 3 {
		t.Fatalf("status after the second run: %+v, %v", st, err)
	}
}

// --out-jsonl: one line per request; a crash that tore the last line of a
// chunk loses only that line, which a resumed run truncates and fetches
// again (the same certificate), and an id never gets a second line, not
// even when the file now gives it another request.
func TestJSONLResumeAfterTornLine(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	c, err := ca.Init(ca.InitOptions{Dir: caDir, Profile: "ec/root-ca", Vars: map[string]any{"cn": "Batch Root"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	reqs := filepath.Join(dir, "requests.jsonl")
	writeReqs := func(ids ...string) {
		f, _ := os.Create(reqs)
		enc := json.NewEncoder(f)
		for _, id := range ids {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id + ".example.com"}}, key)
			enc.Encode(batch.Line{ID: id, Profile: "ec/tls-server", CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
				Vars: map[string]any{"cn": id + ".example.com", "dns_names": id + ".example.com"}})
		}
		f.Close()
	}
	writeReqs("a", "b", "c")
	out := filepath.Join(dir, "out.jsonl")
	run := func() *batch.Summary {
		p, err := server.OpenPipeline(caDir, ca.KeyOptions{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		sum, err := batch.Run(context.Background(), p, reqs, batch.Options{OutJSONL: out, Chunk: 2, Concurrency: 1, Progress: io.Discard})
		if err != nil {
			t.Fatalf("run: %+v, %v", sum, err)
		}
		return sum
	}
	read := func() []batch.OutLine {
		data, _ := os.ReadFile(out)
		var ls []batch.OutLine
		for _, text := range strings.SplitAfter(string(data), "\n") {
			if text == "" {
				continue
			}
			var o batch.OutLine
			if err := json.Unmarshal([]byte(text), &o); err != nil {
				t.Fatalf("line %q: %v", text, err)
			}
			ls = append(ls, o)
		}
		return ls
	}
	if sum := run(); sum.Issued != 3 {
		t.Fatalf("first run: %+v", sum)
	}
	first := read()
	if len(first) != 3 {
		t.Fatalf("%d lines, want 3", len(first))
	}
	for _, o := range first {
		block, _ := pem.Decode([]byte(o.PEM))
		if block == nil {
			t.Fatalf("%s: no PEM", o.ID)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil || cert.Subject.CommonName != o.ID+".example.com" || o.Serial == "" {
			t.Fatalf("%s: %v, %v, serial %q", o.ID, cert.Subject, err, o.Serial)
		}
	}
	// A crash in the middle of appending the last line.
	data, _ := os.ReadFile(out)
	cut := strings.LastIndex(strings.TrimSuffix(string(data), "\n"), "\n") + 1
	os.WriteFile(out, data[:cut+40], 0o644)
	torn := first[2]
	st, err := batch.Status(reqs, "", out)
	if err != nil || st.Done != 2 || st.Missing != 1 || st.IDs[0] != torn.ID {
		t.Fatalf("status with a torn line: %+v, %v", st, err)
	}
	if sum := run(); sum.Issued != 3 {
		t.Fatalf("resumed run: %+v", sum)
	}
	again := read()
	if len(again) != 3 || again[2].ID != torn.ID || again[2].Serial != torn.Serial {
		t.Fatalf("after resuming: %+v, want the torn line's certificate %s again", again, torn.Serial)
	}
	if st, err := batch.Status(reqs, "", out); err != nil || st.Done != 3 {
		t.Fatalf("status after resuming: %+v, %v", st, err)
	}
	// The same ids, other requests: reported, not a second line.
	writeReqs("a", "b", "c")
	if sum := run(); sum.Failed != 3 || sum.Issued != 0 || !strings.Contains(sum.Failures[0].Reason, "another request") {
		t.Fatalf("changed requests: %+v", sum)
	}
	if n := len(read()); n != 3 {
		t.Fatalf("%d lines after changed requests, want 3", n)
	}
}
