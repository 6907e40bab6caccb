package server_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
	"github.com/qpki/qpki/worker"
)

// TestForgedResultsRefused: whoever holds a worker's NATS credential (and
// even the CA key, as a compromised worker host does) publishes results
// for a queued job. The recorder refuses each one that is not exactly the
// job (another serial, another subject key, a name nobody approved, a
// signature by another key), files it in the dead letters, counts it in
// qpki_forged_results_total, and leaves the job queued: the genuine
// worker then signs it and that certificate is the one recorded.
func TestForgedResultsRefused(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vars := map[string]any{"cn": "Forged Test CA"}
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Profile: "ec/root-ca", Vars: vars})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Another CA under the very same name: its signatures look right to
	// anyone who compares names only.
	rogue, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "rogue"), Profile: "ec/root-ca", Vars: vars})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()

	dataDir := filepath.Join(dir, "data")
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	core, err := server.StartCore(ctx, server.Config{CADir: filepath.Join(dir, "ca"), DataDir: dataDir, Workers: 0, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Stop()
	name := enroll.QueueName(core.CA)

	const host = "genuine.example.com"
	csr := benchCSR(t, host)
	id, err := core.Enroll.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr, Key: "forged-test"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := core.CA.Store()
	if err != nil {
		t.Fatal(err)
	}
	job, err := st.(store.JobStore).Job(id)
	if err != nil {
		t.Fatal(err)
	}
	reserved, err := store.ParseSerial(job.Serial)
	if err != nil {
		t.Fatal(err)
	}

	// The forger connects as `qpki worker` does, with the worker's
	// credential, and signs with the CA's own key.
	forger, err := queue.Connect(ctx, queue.Options{EmbeddedDataDir: server.QueueDir(dataDir), Name: "forger"})
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	iss, closer, err := core.CA.Issuer("", ca.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	rogueIss, rogueCloser, err := rogue.Issuer("", ca.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rogueCloser.Close()
	version := core.CA.Meta.Active

	sign := func(c *ca.CA, csrDER []byte, serial int64, iss x509x.Issuer, extra ...string) []byte {
		t.Helper()
		parsed, err := x509x.ParseCertificateRequest(csrDER)
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.Prepare(ca.IssueRequest{Profile: "ec/tls-server", CSR: parsed})
		if err != nil {
			t.Fatal(err)
		}
		p.Template.DNSNames = append(p.Template.DNSNames, extra...)
		s := new(big.Int).Set(reserved)
		if serial != 0 {
			s.SetInt64(serial)
		}
		der, err := ca.Sign(p, s, iss)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	otherKey := func() []byte {
		priv, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
		s, _ := algo.NewSigner(priv, algo.ECDSAP256)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: host}, DNSNames: []string{host}}, s)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	forgeries := []struct {
		name, want string
		der        func() []byte
	}{
		{"wrong serial", "serial", func() []byte { return sign(core.CA, csr, 4242, iss) }},
		{"different key", "subject key", func() []byte { return sign(core.CA, otherKey(), 0, iss) }},
		{"extra name", "names", func() []byte { return sign(core.CA, csr, 0, iss, "evil.example.com") }},
		{"signed by another key", "signature", func() []byte { return sign(rogue, csr, 0, rogueIss) }},
	}
	for i, f := range forgeries {
		payload, err := jobspec.Encode(jobspec.IssueResult{DER: f.der(), CAVersion: version})
		if err != nil {
			t.Fatal(err)
		}
		if err := forger.PublishResult(ctx, queue.Result{JobID: id, CA: name, Kind: queue.KindIssue, OK: true, Payload: payload}); err != nil {
			t.Fatalf("%s: publishing: %v", f.name, err)
		}
		waitFor(t, f.name+": the recorder refusing the result", func() bool { return core.Metrics.ForgedResults() == float64(i+1) })
		// Nothing recorded, the job still queued, the forged result gone
		// from the results stream and filed in the dead letters.
		waitFor(t, f.name+": the forged result leaving the results stream", func() bool {
			_, err := core.Queue.LookupResult(ctx, name, id)
			return errors.Is(err, queue.ErrNoResult)
		})
		if j, err := st.(store.JobStore).Job(id); err != nil || j.State != store.JobQueued {
			t.Fatalf("%s: job after the forged result: %+v, %v (want still queued)", f.name, j, err)
		}
		if certs, err := st.List(store.Filter{}); err != nil || len(certs) != 0 {
			t.Fatalf("%s: certificates recorded: %d, %v", f.name, len(certs), err)
		}
		dls, err := core.Queue.DeadLetters(ctx, name, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) != i+1 || !strings.Contains(dls[0].Error, "forged result for job "+id) || !strings.Contains(dls[0].Error, f.want) {
			t.Fatalf("%s: dead letters: %+v", f.name, dls)
		}
	}

	// The genuine worker finds the job still in the queue and signs it.
	wq, err := queue.Connect(ctx, queue.Options{EmbeddedDataDir: server.QueueDir(dataDir), Name: "qpki-worker"})
	if err != nil {
		t.Fatal(err)
	}
	defer wq.Close()
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- worker.Run(wctx, core.CA, wq, worker.Options{QueueName: name}) }()
	defer func() { stop(); <-done }()
	res, err := core.Enroll.Wait(ctx, id)
	if err != nil || res.Err() != nil {
		t.Fatalf("genuine job: %v, %+v", err, res)
	}
	cert, err := x509.ParseCertificate(res.DER)
	if err != nil {
		t.Fatal(err)
	}
	if store.FormatSerial(cert.SerialNumber) != job.Serial || !slices.Equal(cert.DNSNames, []string{host}) {
		t.Fatalf("recorded certificate: serial %s names %v, want %s %v", store.FormatSerial(cert.SerialNumber), cert.DNSNames, job.Serial, []string{host})
	}
	parsed, _ := x509.ParseCertificateRequest(csr)
	if !slices.Equal(cert.RawSubjectPublicKeyInfo, parsed.RawSubjectPublicKeyInfo) {
		t.Fatal("recorded certificate is not for the job's key")
	}
	if got := core.Metrics.ForgedResults(); got != float64(len(forgeries)) {
		t.Fatalf("forged results counted: %v, want %d", got, len(forgeries))
	}
	// Each refusal is an alarm in the log, naming the job and why, and
	// never the result's content.
	var alarms int
	for _, l := range logs.lines(t) {
		if l["level"] == "ERROR" && strings.Contains(fmt.Sprint(l["msg"]), "forged result") && l["job"] == id && l["reason"] != nil {
			alarms++
		}
	}
	if alarms != len(forgeries) || strings.Contains(logs.String(), "MII") { // no DER, in base64 or PEM
		t.Fatalf("%d alarms logged for %d forged results:\n%s", alarms, len(forgeries), logs.String())
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
