package server_test

import (
	"bytes"
	"context"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
)

// These tests run the real qpki binary as separate processes and kill
// them with SIGKILL in the middle of a batch: every request must end with
// exactly one certificate, no serial repeated, nothing lost.

var qpkiBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qpki-rel-")
	if err != nil {
		panic(err)
	}
	qpkiBin = filepath.Join(dir, "qpki")
	if bin := os.Getenv("QPKI_BIN"); bin != "" {
		qpkiBin = bin // another build, for a before/after benchmark
	} else if out, err := exec.Command("go", "build", "-o", qpkiBin, "../cmd/qpki").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type env struct {
	t     testing.TB
	dir   string
	caDir string
	data  string
}

func newEnv(t testing.TB) *env {
	dir := t.TempDir()
	e := &env{t: t, dir: dir, caDir: filepath.Join(dir, "ca"), data: filepath.Join(dir, "data")}
	e.run("ca", "init", "--profile", "ec/root-ca", "--var", "cn=Reliability Root", "--ca-dir", e.caDir)
	return e
}

func (e *env) run(args ...string) string {
	e.t.Helper()
	out, err := exec.Command(qpkiBin, args...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("qpki %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (e *env) start(name string, args ...string) *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(qpkiBin, args...)
	logf, _ := os.Create(filepath.Join(e.dir, name+".log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return cmd
}

func (e *env) startServe(workers int) *exec.Cmd {
	cmd := e.start("serve", "serve", "--ca-dir", e.caDir, "--data-dir", e.data, "--listen", "127.0.0.1:0", "--workers", fmt.Sprint(workers))
	e.waitSocket()
	return cmd
}

func (e *env) waitSocket() {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := exec.Command(qpkiBin, "queue", "status", "--over", "1ms", "--ca-dir", e.caDir).CombinedOutput(); err == nil && bytes.Contains(out, []byte("results")) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(e.dir, "serve.log"))
	e.t.Fatalf("serve did not come up:\n%s", log)
}

// writeBatch writes n requests, each with its own key and name.
func (e *env) writeBatch(n int) string {
	path := filepath.Join(e.dir, "requests.jsonl")
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("host-%d.example.com", i)
		priv, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
		s, _ := algo.NewSigner(priv, algo.ECDSAP256)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, s)
		if err != nil {
			e.t.Fatal(err)
		}
		line, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("line-%d", i), "profile": "ec/tls-server",
			"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
		b.Write(append(line, '\n'))
	}
	os.WriteFile(path, b.Bytes(), 0o644)
	return path
}

func countFiles(dir string) int {
	entries, _ := os.ReadDir(dir)
	return len(entries)
}

// waitFiles waits until at least n certificates were written.
func waitFiles(t *testing.T, dir string, n int) {
	deadline := time.Now().Add(3 * time.Minute)
	for countFiles(dir) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d certificates after 3 minutes", countFiles(dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check verifies the outcome: one certificate per line, for that line's
// name, each recorded once in the store under its job, no serial twice.
func (e *env) check(n int, out string) { e.checkWith(n, out, 3) }

// checkWith is check when up to others certificates of other requests
// are in the store.
func (e *env) checkWith(n int, out string, others int) {
	e.t.Helper()
	c, err := ca.Open(e.caDir)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Store()
	if err != nil {
		e.t.Fatal(err)
	}
	certs, err := st.List(store.Filter{})
	if err != nil {
		e.t.Fatal(err)
	}
	bySerial := map[string]*store.Cert{}
	perJob := map[string]int{}
	for _, rec := range certs {
		if bySerial[rec.Serial] != nil {
			e.t.Fatalf("serial %s recorded twice", rec.Serial)
		}
		bySerial[rec.Serial] = rec
		if rec.JobID != "" {
			perJob[rec.JobID]++
		}
	}
	for job, k := range perJob {
		if k != 1 {
			e.t.Fatalf("job %s has %d certificates", job, k)
		}
	}
	serials := map[string]bool{}
	for i := 0; i < n; i++ {
		data, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("line-%d.crt", i)))
		if err != nil {
			e.t.Fatalf("line %d: %v", i, err)
		}
		block, _ := pem.Decode(data)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			e.t.Fatal(err)
		}
		if want := fmt.Sprintf("host-%d.example.com", i); cert.DNSNames[0] != want {
			e.t.Fatalf("line %d got the certificate of %s", i, cert.DNSNames[0])
		}
		s := store.FormatSerial(cert.SerialNumber)
		if serials[s] {
			e.t.Fatalf("serial %s delivered twice", s)
		}
		serials[s] = true
		rec := bySerial[s]
		if rec == nil || !bytes.Equal(rec.DER, cert.Raw) {
			e.t.Fatalf("line %d: delivered certificate %s is not the one recorded", i, s)
		}
	}
	// Only the batch's certificates and the listener's own were issued.
	if extra := len(certs) - n; extra < 0 || extra > others {
		e.t.Fatalf("%d certificates recorded for %d requests", len(certs), n)
	}
}

const batchSize = 2000

// kill -9 the worker process in the middle of a batch and start it again.
func TestKillWorkerMidBatch(t *testing.T) {
	e := newEnv(t)
	e.startServe(0) // no in-process workers: signing is the worker process's
	worker := e.start("worker", "worker", "--ca-dir", e.caDir, "--data-dir", e.data, "--workers", "2")
	reqs := e.writeBatch(batchSize)
	out := filepath.Join(e.dir, "certs")
	batch := exec.Command(qpkiBin, "batch", "submit", reqs, "--ca-dir", e.caDir, "--out", out)
	var blog bytes.Buffer
	batch.Stdout, batch.Stderr = &blog, &blog
	if err := batch.Start(); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, out, batchSize/4)
	worker.Process.Kill() // SIGKILL: no chance to ack, flush or close
	worker.Wait()
	e.start("worker2", "worker", "--ca-dir", e.caDir, "--data-dir", e.data, "--workers", "2")
	if err := batch.Wait(); err != nil {
		t.Fatalf("batch: %v\n%s", err, tail(blog.String()))
	}
	e.stopAll(t)
	e.check(batchSize, out)
}

// kill -9 the serve process (embedded NATS and recorder included) in the
// middle of a batch, start it again and resubmit the same file.
func TestKillServeMidBatch(t *testing.T) {
	e := newEnv(t)
	serve := e.startServe(2)
	reqs := e.writeBatch(batchSize)
	out := filepath.Join(e.dir, "certs")
	batch := exec.Command(qpkiBin, "batch", "submit", reqs, "--ca-dir", e.caDir, "--out", out)
	var blog bytes.Buffer
	batch.Stdout, batch.Stderr = &blog, &blog
	if err := batch.Start(); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, out, batchSize/3)
	serve.Process.Kill()
	serve.Wait()
	batch.Wait() // fails: its server died
	before := countFiles(out)
	if before >= batchSize {
		t.Fatalf("the batch finished before serve was killed (%d certificates)", before)
	}
	e.startServe(2)
	res := e.run("batch", "submit", reqs, "--ca-dir", e.caDir, "--out", out)
	if !strings.Contains(res, fmt.Sprintf("%d issued, 0 failed, 0 pending", batchSize)) {
		t.Fatalf("resubmitted batch: %s", tail(res))
	}
	e.stopAll(t)
	e.check(batchSize, out)
}

// stopAll stops serve and workers (SIGTERM) so the store can be read.
func (e *env) stopAll(t testing.TB) {
	exec.Command("pkill", "-TERM", "-f", qpkiBin+" (serve|worker) --ca-dir "+e.caDir).Run()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(e.caDir, "qpki.sock")); err != nil {
			if exec.Command("pgrep", "-f", qpkiBin+" (serve|worker) --ca-dir "+e.caDir).Run() != nil {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("serve or worker did not stop on SIGTERM")
}

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}

// Every CLI command that reads or writes the store works while serve
// holds it, through the local socket, without waiting on the bbolt lock.
func TestCLIWhileServeRuns(t *testing.T) {
	e := newEnv(t)
	e.startServe(1)
	reqs := e.writeBatch(1)
	var line struct{ CSR string }
	data, _ := os.ReadFile(reqs)
	json.Unmarshal(data, &line)
	csr := filepath.Join(e.dir, "a.csr")
	os.WriteFile(csr, []byte(line.CSR), 0o644)
	crt := filepath.Join(e.dir, "a.crt")
	e.run("cert", "issue", "--ca-dir", e.caDir, "--profile", "ec/tls-server", "--csr", csr, "--out", crt)
	var list []struct{ Serial, Subject string }
	if err := json.Unmarshal([]byte(e.run("cert", "list", "--ca-dir", e.caDir, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	serial := ""
	for _, c := range list {
		if c.Subject == "CN=host-0.example.com" {
			serial = c.Serial
		}
	}
	if serial == "" {
		t.Fatalf("issued certificate not listed: %+v", list)
	}
	if out := e.run("cert", "show", serial, "--ca-dir", e.caDir); !strings.Contains(out, "host-0.example.com") {
		t.Errorf("cert show: %s", out)
	}
	e.run("cert", "revoke", serial, "--reason", "superseded", "--ca-dir", e.caDir)
	e.run("crl", "gen", "--ca-dir", e.caDir, "--out", filepath.Join(e.dir, "ca.crl"))
	out := e.run("crl", "gen", "--ca-dir", e.caDir)
	if !strings.Contains(out, "BEGIN X509 CRL") {
		t.Fatalf("crl gen: %s", out)
	}
	crlText, err := exec.Command("openssl", "crl", "-in", filepath.Join(e.caDir, "crl", "ca.crl"), "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(strings.ToUpper(string(crlText)), strings.ToUpper(serial)) {
		t.Fatalf("stored CRL lacks the revoked serial: %v\n%s", err, crlText)
	}
	if out := e.run("queue", "status", "--over", "100ms", "--ca-dir", e.caDir); !strings.Contains(out, "Signing rate:") || !strings.Contains(out, "Stored results:") {
		t.Errorf("queue status: %s", out)
	}
	var st struct {
		ResultsSeq  uint64   `json:"results_seq"`
		SigningRate *float64 `json:"signing_rate"`
	}
	if err := json.Unmarshal([]byte(e.run("queue", "status", "--json", "--over", "100ms", "--ca-dir", e.caDir)), &st); err != nil || st.ResultsSeq == 0 || st.SigningRate == nil {
		t.Errorf("queue status --json: %v %+v", err, st)
	}
	if out := e.run("queue", "dead", "--ca-dir", e.caDir); !strings.Contains(out, "No dead letters.") {
		t.Errorf("queue dead before any: %s", out)
	}
	// The worker credential stored for qpki worker cannot put anything on
	// a job subject (only front-ends publish jobs); a dead letter that a
	// worker files (as for garbage on a job subject) is what queue dead
	// shows.
	e.publishAsWorker(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var dls []queue.DeadLetter
		if err := json.Unmarshal([]byte(e.run("queue", "dead", "--json", "--ca-dir", e.caDir)), &dls); err != nil {
			t.Fatal(err)
		}
		if len(dls) == 1 && dls[0].Job == nil && strings.Contains(dls[0].Error, "job") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue dead --json: %+v", dls)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := e.run("queue", "dead", "--limit", "5", "--ca-dir", e.caDir); !strings.Contains(out, "not a valid job") || !strings.Contains(out, "DELIVERIES") {
		t.Errorf("queue dead: %s", out)
	}
	e.stopAll(t)
}

// publishAsWorker connects to the running serve's embedded NATS server
// with the worker credentials stored in its data dir: a job is refused as
// a permission violation, a dead letter (as Next files for a message that
// is not a job) is stored.
func (e *env) publishAsWorker(t *testing.T) {
	t.Helper()
	var si struct{ URL string }
	var creds struct{ User, Password string }
	for path, v := range map[string]any{"server.json": &si, "credentials.json": &creds} {
		b, err := os.ReadFile(filepath.Join(server.QueueDir(e.data), "nats", path))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	refused := make(chan error, 4)
	nc, err := nats.Connect(si.URL, nats.UserInfo(creds.User, creds.Password),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refused <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := ca.Open(e.caDir)
	if err != nil {
		t.Fatal(err)
	}
	name := enroll.QueueName(c)
	c.Close()
	subject := queue.JobSubject(name, queue.KindIssue, queue.ClassBatch)
	nc.Publish(subject, []byte("not a job"))
	nc.Flush()
	select {
	case err := <-refused:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("worker publishing a job: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker credentials published a job")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := json.Marshal(queue.DeadLetter{V: queue.DeadLetterVersion, Raw: []byte("not a job"), Subject: subject,
		Error: "queue: malformed job message: not a valid job", Deliveries: 1, Time: time.Now().UTC()})
	if _, err := js.Publish(context.Background(), queue.DeadSubject(name, "stream-seq-1"), d); err != nil {
		t.Fatal(err)
	}
}

var execCommand = exec.Command
