package enroll_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/worker"
)

// pipeline is a CA, an embedded queue, a recorder and workers, as serve
// runs them.
type pipeline struct {
	ca     *ca.CA
	q      *queue.Queue
	svc    *enroll.Service
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func startPipeline(t testing.TB, sessions int, rate float64) *pipeline {
	t.Helper()
	return startPipelineRecording(t, sessions, rate, func(svc *enroll.Service, rs []queue.Result) error {
		return errors.Join(svc.RecordBatch(rs)...)
	})
}

// startPipelineRecording starts a pipeline whose recorder is record, as
// serve's recorder commits result batches.
func startPipelineRecording(t testing.TB, sessions int, rate float64, record func(*enroll.Service, []queue.Result) error) *pipeline {
	t.Helper()
	return startPipelineOn(t, sessions, rate, record, nil)
}

// startPipelineOn is startPipelineRecording whose CA keeps its records
// where useStore puts them (nil: its bbolt file and audit.jsonl), before
// the recorder starts.
func startPipelineOn(t testing.TB, sessions int, rate float64, record func(*enroll.Service, []queue.Result) error, useStore func(*ca.CA, *queue.Queue)) *pipeline {
	t.Helper()
	dir := t.TempDir()
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Pipeline Root"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q, err := queue.Start(ctx, queue.Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	if useStore != nil {
		useStore(c, q)
	}
	svc, err := enroll.New(c, q)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{ca: c, q: q, svc: svc, cancel: cancel}
	name := enroll.QueueName(c)
	p.done.Add(2)
	go func() {
		defer p.done.Done()
		q.ResultBatches(ctx, name, 64, func(rs []queue.Result) error { return record(svc, rs) })
	}()
	go func() {
		defer p.done.Done()
		wq, err := q.WorkerQueue(ctx) // the worker user, as in qpki serve
		if err != nil {
			if ctx.Err() == nil { // not stopped while starting
				t.Error(err)
			}
			return
		}
		defer wq.Close()
		if err := worker.Run(ctx, c, wq, worker.Options{Sessions: sessions, Rate: rate, QueueName: name}); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *pipeline) stop() {
	p.cancel()
	p.done.Wait()
	p.q.Close()
	p.ca.Close()
}

func csrFor(t testing.TB, name string) []byte {
	t.Helper()
	priv, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
	s, _ := algo.NewSigner(priv, algo.ECDSAP256)
	der, err := x509x.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, s, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func waitFor(t testing.TB, svc *enroll.Service, id string) *enroll.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := svc.Wait(ctx, id)
	if err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
	return res
}

func TestIssueThroughQueue(t *testing.T) {
	p := startPipeline(t, 2, 0)
	const n = 100
	ids := make([]string, n)
	for i := range ids {
		name := fmt.Sprintf("h%d.example.com", i)
		id, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, name), Key: name, Class: []string{queue.ClassBatch, queue.ClassInteractive}[i%2]})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	serials := map[string]bool{}
	for i, id := range ids {
		res := waitFor(t, p.svc, id)
		if res.State != store.JobDone || res.Cert == nil {
			t.Fatalf("job %d: %+v", i, res)
		}
		cert, err := x509.ParseCertificate(res.DER)
		if err != nil {
			t.Fatal(err)
		}
		if cert.DNSNames[0] != fmt.Sprintf("h%d.example.com", i) {
			t.Errorf("job %d got the certificate for %v", i, cert.DNSNames)
		}
		if serials[res.Cert.Serial] {
			t.Fatalf("serial %s repeated", res.Cert.Serial)
		}
		serials[res.Cert.Serial] = true
		job, _ := p.svc.Job(id)
		if job.Serial != res.Cert.Serial {
			t.Errorf("certificate serial %s is not the reserved %s", res.Cert.Serial, job.Serial)
		}
	}
}

// A result delivered twice, in the same batch or in a later one, is
// recorded and audited once.
func TestRecordBatchRecordsRedeliveriesOnce(t *testing.T) {
	p := startPipelineRecording(t, 2, 0, func(svc *enroll.Service, rs []queue.Result) error {
		if err := errors.Join(svc.RecordBatch(append(rs, rs...))...); err != nil {
			return err
		}
		return errors.Join(svc.RecordBatch(rs)...)
	})
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		name := fmt.Sprintf("r%d.example.com", i)
		id, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, name), Key: name})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	for _, id := range ids {
		if res := waitFor(t, p.svc, id); res.State != store.JobDone {
			t.Fatalf("job %s: %+v", id, res)
		}
	}
	f, err := os.Open(filepath.Join(p.ca.Dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := audit.Verify(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Events[audit.EventIssue]; got != n {
		t.Errorf("audit log has %d issuances for %d jobs", got, n)
	}
	st, err := p.ca.Store()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := st.List(store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != n {
		t.Errorf("store has %d certificates for %d jobs", len(certs), n)
	}
}

func TestDuplicateSubmissionGivesSameCertificate(t *testing.T) {
	p := startPipeline(t, 1, 0)
	csr := csrFor(t, "dup.example.com")
	req := enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr, Key: "order-1"}
	id1, err := p.svc.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	first := waitFor(t, p.svc, id1)
	id2, err := p.svc.Submit(context.Background(), req)
	if err != nil || id2 != id1 {
		t.Fatalf("second submit: %s %v", id2, err)
	}
	second := waitFor(t, p.svc, id2)
	if string(first.DER) != string(second.DER) {
		t.Fatal("the same key gave two different certificates")
	}
	// The same key with another request is refused.
	req.CSR = csrFor(t, "other.example.com")
	if _, err := p.svc.Submit(context.Background(), req); !errors.Is(err, store.ErrKeyReused) {
		t.Fatalf("reused key: %v", err)
	}
	st, _ := p.ca.Store()
	if certs, _ := st.List(store.Filter{}); len(certs) != 1 {
		t.Fatalf("%d certificates issued, want 1", len(certs))
	}
}

func TestPolicyRefusalNeverReachesQueue(t *testing.T) {
	p := startPipeline(t, 1, 0)
	_, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, "bad..name"), Key: "bad"})
	if err == nil {
		t.Fatal("forbidden request accepted")
	}
	if _, err := p.svc.Job(enroll.JobID(enroll.QueueName(p.ca), "bad")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused request left a job record: %v", err)
	}
	st, err := p.q.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Interactive.Pending+st.Batch.Pending != 0 || st.ResultsSeq != 0 {
		t.Fatalf("queue saw the refused request: %+v", st)
	}
}

// A worker that re-checks policy refuses a job that reached the stream
// without enroll, and answers it with a permanent error.
func TestWorkerRefusesForbiddenJob(t *testing.T) {
	p := startPipeline(t, 1, 0)
	payload, _ := jobspec.Encode(jobspec.Issue{Profile: "ec/tls-server", CSR: csrFor(t, "x.example.com"), Vars: map[string]any{"validity": "100y"}, Serial: "1234"})
	job := queue.Job{V: queue.JobVersion, ID: "rogue-1", CA: enroll.QueueName(p.ca), Kind: jobspec.KindIssue, Class: queue.ClassInteractive, Submitted: time.Now(), Payload: payload}
	if err := p.q.PublishJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := p.q.LookupResult(context.Background(), job.CA, job.ID)
		if err == nil {
			if res.OK || !res.Permanent {
				t.Fatalf("rogue job result: %+v", res)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no result for the rogue job")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A throttled signer makes jobs wait, never fail.
func TestThrottledSignerNeverFails(t *testing.T) {
	p := startPipeline(t, 2, 20)
	var ids []string
	for i := 0; i < 30; i++ {
		name := fmt.Sprintf("t%d.example.com", i)
		id, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, name), Key: name, Class: queue.ClassBatch})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if res := waitFor(t, p.svc, id); res.State != store.JobDone {
			t.Fatalf("throttled job failed: %+v", res)
		}
	}
}

func TestCRLThroughQueue(t *testing.T) {
	p := startPipeline(t, 1, 0)
	id, _ := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, "r.example.com"), Key: "r"})
	res := waitFor(t, p.svc, id)
	if _, err := p.ca.Revoke(res.Cert.Serial, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	crlID, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Kind: jobspec.KindCRL, Key: "crl-1"})
	if err != nil {
		t.Fatal(err)
	}
	crlRes := waitFor(t, p.svc, crlID)
	crl, err := x509.ParseRevocationList(crlRes.DER)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Text(16) != res.Cert.Serial {
		t.Fatalf("CRL entries: %+v", crl.RevokedCertificateEntries)
	}
	if err := ca.CheckCRLSignature(crl, mustCACert(t, p.ca)); err != nil {
		t.Fatal(err)
	}
}

func mustCACert(t testing.TB, c *ca.CA) *x509.Certificate {
	cert, err := c.Certificate("")
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestResultOfUnknownJobIsOfferedAgain: a result whose job the store does
// not show (yet: a shared store read from a lagging replica) is refused so
// that the queue offers it again, unless it is old enough to be taken for
// another deployment's; a result of a known job in the same batch is
// recorded all the same.
func TestResultOfUnknownJobIsOfferedAgain(t *testing.T) {
	p := startPipeline(t, 1, 0)
	id, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, "k.example.com"), Key: "known"})
	if err != nil {
		t.Fatal(err)
	}
	if res := waitFor(t, p.svc, id); res.State != store.JobDone {
		t.Fatalf("known job: %+v", res)
	}
	fresh := queue.Result{V: queue.ResultVersion, JobID: enroll.JobID("other", "x"), CA: "ca", Kind: queue.KindIssue, OK: true, Finished: time.Now()}
	if err := p.svc.Record(fresh); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("fresh result of an unknown job: got %v, want ErrNotFound", err)
	}
	old := fresh
	old.Finished = time.Now().Add(-2 * time.Minute)
	if err := p.svc.Record(old); err != nil {
		t.Fatalf("old result of an unknown job: %v, want it dropped", err)
	}
	errs := p.svc.RecordBatch([]queue.Result{fresh, {V: queue.ResultVersion, JobID: id, CA: "ca", Kind: queue.KindIssue, OK: true, Finished: time.Now()}})
	if !errors.Is(errs[0], store.ErrNotFound) || errs[1] != nil {
		t.Fatalf("batch errors %v, want ErrNotFound then nil", errs)
	}
}

// TestWaitFindsResultRecordedElsewhere: when a job is finished in the
// store by someone who does not wake this service's waiters (another
// front-end's recorder, whose wake-up went missing), Wait still returns
// the result, because it reads the store again while it waits.
func TestWaitFindsResultRecordedElsewhere(t *testing.T) {
	p := startPipelineRecording(t, 1, 0, func(*enroll.Service, []queue.Result) error {
		return nil // results are recorded "elsewhere": below, behind the service's back
	})
	id, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, "e.example.com"), Key: "elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.ca.Store()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond) // Wait is blocked by then
		if _, err := st.(store.JobStore).FinishJob(store.Finished{ID: id, State: store.JobFailed, Error: "recorded elsewhere"}); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.svc.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v (the store was never read again)", err)
	}
	if res.State != store.JobFailed || res.Error != "recorded elsewhere" {
		t.Fatalf("Wait returned %+v", res)
	}
}

// TestDeadLetteredRequestStartsOver: a job dead-lettered (its deliveries
// spent on a signer that did not work) is not the request's fault, so the
// same request under the same key starts a new attempt, with a job id and
// serial of its own, which then issues; a job refused for good is not
// started again, and the key still refuses another request.
func TestDeadLetteredRequestStartsOver(t *testing.T) {
	var dropped sync.Map // job ids whose results the recorder drops
	p := startPipelineRecording(t, 1, 0, func(svc *enroll.Service, rs []queue.Result) error {
		var keep []queue.Result
		for _, r := range rs {
			if _, drop := dropped.Load(r.JobID); !drop {
				keep = append(keep, r)
			}
		}
		return errors.Join(svc.RecordBatch(keep)...)
	})
	name := enroll.QueueName(p.ca)
	ctx := context.Background()
	// failFirst submits a request whose first job ends as the queue
	// ends a job: with a failure result, dead-lettered or not.
	failFirst := func(key string, csr []byte, deadLetter bool) string {
		id := enroll.JobID(name, key)
		dropped.Store(id, true)
		got, err := p.svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr, Key: key})
		if err != nil || got != id {
			t.Fatalf("submit %s: %v, %s", key, err, got)
		}
		if err := p.svc.Record(queue.Result{V: queue.ResultVersion, JobID: id, CA: name, Kind: queue.KindIssue,
			Error: "signer unavailable", DeadLetter: deadLetter, Finished: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if res := waitFor(t, p.svc, id); res.State != store.JobFailed {
			t.Fatalf("first job of %s: %+v", key, res)
		}
		return id
	}

	csr := csrFor(t, "dl.example.com")
	first := failFirst("device-1", csr, true)
	again, err := p.svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr, Key: "device-1"})
	if err != nil {
		t.Fatal(err)
	}
	if again == first {
		t.Fatal("the dead-lettered job was handed out again")
	}
	res := waitFor(t, p.svc, again)
	if res.State != store.JobDone || res.Cert == nil {
		t.Fatalf("second attempt: %+v", res)
	}
	st, err := p.ca.Store()
	if err != nil {
		t.Fatal(err)
	}
	j1, err := st.(store.JobStore).Job(first)
	if err != nil {
		t.Fatal(err)
	}
	if !j1.Retryable || j1.Serial == res.Cert.Serial {
		t.Fatalf("first job %+v, second serial %s: want a retryable failure and a serial of the new attempt's own", j1, res.Cert.Serial)
	}
	if id, err := p.svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr, Key: "device-1"}); err != nil || id != again {
		t.Fatalf("third submission: %s, %v; want the issued attempt %s", id, err, again)
	}
	if _, err := p.svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, "other.example.com"), Key: "device-1"}); !errors.Is(err, store.ErrKeyReused) {
		t.Fatalf("another request under the key: %v, want ErrKeyReused", err)
	}

	// A caller cannot take the key of another request's attempt.
	if _, err := p.svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr, Key: "device-3#attempt-2"}); err == nil ||
		!strings.Contains(err.Error(), "kept for the retries") {
		t.Fatalf("a key naming an attempt: %v", err)
	}

	csr2 := csrFor(t, "refused.example.com")
	refused := failFirst("device-2", csr2, false)
	id, err := p.svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csr2, Key: "device-2"})
	if err != nil || id != refused {
		t.Fatalf("a request refused for good was started again: %s, %v", id, err)
	}
}
