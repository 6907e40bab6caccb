package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qpki/qpki/server"
)

// batch submit --out-jsonl through a running serve: one line per request
// with a certificate that chains to the CA; batch status reads the file;
// after a torn last line the resumed run writes that id once, with the
// certificate it already had.
func TestBatchJSONLThroughServe(t *testing.T) {
	d := t.TempDir()
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=JSONL Root", "--ca-dir", "ca")
	f, _ := os.Create(filepath.Join(d, "requests.jsonl"))
	enc := json.NewEncoder(f)
	for i := 0; i < 5; i++ {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		name := fmt.Sprintf("h%d.example.com", i)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
		enc.Encode(map[string]any{"id": fmt.Sprintf("line-%d", i), "profile": "ec/tls-server",
			"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	}
	f.Close()
	fails(t, d, "--out DIR or --out-jsonl FILE", "batch", "submit", "requests.jsonl", "--ca-dir", "ca")

	serve := exec.Command(qpkiBin, "serve", "--ca-dir", "ca", "--data-dir", "data", "--listen", "127.0.0.1:0", "--workers", "1")
	serve.Dir = d
	logf, _ := os.Create(filepath.Join(d, "serve.log"))
	serve.Stdout, serve.Stderr = logf, logf
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(server.SocketPath(filepath.Join(d, "ca"))); err == nil && run(t, d, nil, "queue", "status", "--ca-dir", "ca").code == 0 {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(d, "serve.log"))
			t.Fatalf("serve did not come up:\n%s", log)
		}
	}
	out := filepath.Join(d, "out.jsonl")
	ok(t, d, "batch", "submit", "requests.jsonl", "--ca-dir", "ca", "--out-jsonl", "out.jsonl", "--chunk", "2")
	caCert := readCert(t, filepath.Join(d, "ca", "ca.crt"))
	lines := func() map[string]map[string]string {
		data, _ := os.ReadFile(out)
		m := map[string]map[string]string{}
		for _, text := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			var o map[string]string
			if err := json.Unmarshal([]byte(text), &o); err != nil {
				t.Fatalf("line %q: %v", text, err)
			}
			if _, dup := m[o["id"]]; dup {
				t.Fatalf("two lines for %s", o["id"])
			}
			m[o["id"]] = o
		}
		return m
	}
	first := lines()
	if len(first) != 5 {
		t.Fatalf("%d lines, want 5", len(first))
	}
	for id, o := range first {
		block, _ := pem.Decode([]byte(o["pem"]))
		if block == nil {
			t.Fatalf("%s: no PEM in %v", id, o)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil || cert.CheckSignatureFrom(caCert) != nil || o["serial"] == "" || o["error"] != "" {
			t.Fatalf("%s: %v, serial %q", id, err, o["serial"])
		}
	}
	if st := ok(t, d, "batch", "status", "requests.jsonl", "--out-jsonl", "out.jsonl"); !strings.Contains(st, "5 with a certificate, 0 missing") {
		t.Fatalf("status: %s", st)
	}
	data, _ := os.ReadFile(out)
	cut := strings.LastIndex(strings.TrimSuffix(string(data), "\n"), "\n") + 1
	os.WriteFile(out, data[:cut+20], 0o644) // a crash while appending
	var torn map[string]string
	json.Unmarshal(data[cut:], &torn)
	if st := ok(t, d, "batch", "status", "requests.jsonl", "--out-jsonl", "out.jsonl"); !strings.Contains(st, "4 with a certificate, 1 missing") {
		t.Fatalf("status with a torn line: %s", st)
	}
	ok(t, d, "batch", "submit", "requests.jsonl", "--ca-dir", "ca", "--out-jsonl", "out.jsonl")
	again := lines()
	if len(again) != 5 || again[torn["id"]]["serial"] != torn["serial"] {
		t.Fatalf("resumed: %d lines, %s has serial %s, had %s", len(again), torn["id"], again[torn["id"]]["serial"], torn["serial"])
	}
}
