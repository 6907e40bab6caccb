package enroll_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cose"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/worker"
)

// rootCA makes a root CA whose key has algorithm alg and may sign tokens,
// from the built-in ec/root-ca profile with its algorithm and key usage
// changed.
func rootCA(t testing.TB, dir, alg string) *ca.CA {
	t.Helper()
	raw, err := profile.Builtin("ec/root-ca")
	if err != nil {
		t.Fatal(err)
	}
	raw = regexp.MustCompile(`(?m)^algorithm: .*$`).ReplaceAll(raw, []byte("algorithm: "+alg))
	raw = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(raw, []byte("name: test/root-"+alg))
	// TODO: lint the post-quantum root once pkg/ca gives it an
	// authorityKeyIdentifier; the COSE path does not depend on it.
	raw = regexp.MustCompile(`(?m)^  enabled: true$`).ReplaceAll(raw, []byte("  enabled: false"))
	// A CA that signs tokens needs digitalSignature (RFC 5280 §4.2.1.3).
	raw = regexp.MustCompile(`values: \[keyCertSign, cRLSign\]`).ReplaceAll(raw, []byte("values: [digitalSignature, keyCertSign, cRLSign]"))
	path := filepath.Join(dir, "root-"+alg+".yaml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca-"+alg), Profile: path, Vars: map[string]any{"cn": "COSE Root " + alg}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startCOSEPipeline runs the queue, the recorder (in batches, as serve
// does) and workers for a CA with a key of algorithm alg.
func startCOSEPipeline(t testing.TB, alg string, sessions int) *pipeline {
	t.Helper()
	dir := t.TempDir()
	c := rootCA(t, dir, alg)
	ctx, cancel := context.WithCancel(context.Background())
	q, err := queue.Start(ctx, queue.Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := enroll.New(c, q)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{ca: c, q: q, svc: svc, cancel: cancel}
	name := enroll.QueueName(c)
	ready := make(chan error, 1)
	p.done.Add(2)
	go func() {
		defer p.done.Done()
		q.ResultBatches(ctx, name, 256, func(rs []queue.Result) error {
			errs := make([]error, len(rs))
			var wg sync.WaitGroup
			for i, r := range rs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = svc.Record(r)
				}()
			}
			wg.Wait()
			return errors.Join(errs...)
		})
	}()
	go func() {
		defer p.done.Done()
		wq, err := q.WorkerQueue(ctx) // the worker user, as in qpki serve
		if err != nil {
			ready <- err
			return
		}
		defer wq.Close()
		if err := worker.Run(ctx, c, wq, worker.Options{Sessions: sessions, QueueName: name, Ready: ready}); err != nil {
			t.Error(err)
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

func verifyToken(t testing.TB, c *ca.CA, msg []byte, o cose.VerifyOptions) *cose.Message {
	t.Helper()
	o.Roots = []*x509.Certificate{mustCACert(t, c)}
	m, err := cose.Verify(msg, o)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return m
}

func TestCOSEThroughQueue(t *testing.T) {
	for _, tc := range []struct {
		alg  string
		want cose.Algorithm
	}{{"ecdsa-p256", cose.AlgES256}, {"ml-dsa-65", cose.AlgMLDSA65}} {
		t.Run(tc.alg, func(t *testing.T) {
			p := startCOSEPipeline(t, tc.alg, 1)
			ctx := context.Background()
			exp := time.Now().Add(time.Hour).Truncate(time.Second)
			cwt := cose.SignRequest{Type: cose.TypeCWT, Claims: &cose.Claims{Issuer: "qpki", Subject: "device-7", Audience: []string{"api"},
				Expiry: exp, Extra: map[string]any{"role": "reader", "42": float64(7)}}}
			id, err := p.svc.SubmitCOSE(ctx, "cwt-1", cwt, "")
			if err != nil {
				t.Fatal(err)
			}
			res := waitFor(t, p.svc, id)
			if res.State != store.JobDone {
				t.Fatalf("CWT job: %+v", res)
			}
			m := verifyToken(t, p.ca, res.DER, cose.VerifyOptions{Type: cose.TypeCWT, Audience: "api"})
			if got := m.Signatures[0].Alg(); got != tc.want {
				t.Errorf("alg %s, want %s", got, tc.want)
			}
			c := m.Claims
			if c.Issuer != "qpki" || c.Subject != "device-7" || !c.Expiry.Equal(exp) || c.Extra["role"] != "reader" {
				t.Errorf("claims: %+v", c)
			}
			if n, ok := c.Extra["42"].(int64); !ok || n != 7 {
				t.Errorf("integer claim 42 = %#v, want the integer 7", c.Extra["42"])
			}
			if c.IssuedAt.IsZero() || time.Since(c.IssuedAt) > time.Minute || len(c.CTI) != 16 {
				t.Errorf("iat %v, cti %x: not fixed by enroll", c.IssuedAt, c.CTI)
			}
			if len(m.Signatures[0].Chain) != 1 || !m.Signatures[0].Chain[0].Equal(mustCACert(t, p.ca)) {
				t.Error("the token's x5chain is not the CA's")
			}

			// A COSE_Sign1 message over a payload, with a content type.
			id, err = p.svc.SubmitCOSE(ctx, "sign1-1", cose.SignRequest{Type: cose.TypeSign1, Payload: []byte(`{"hello":"world"}`), ContentType: "application/json"}, queue.ClassBatch)
			if err != nil {
				t.Fatal(err)
			}
			res = waitFor(t, p.svc, id)
			m = verifyToken(t, p.ca, res.DER, cose.VerifyOptions{Type: cose.TypeSign1})
			if string(m.Payload) != `{"hello":"world"}` || m.Protected.ContentType != "application/json" {
				t.Errorf("sign1: payload %q, content type %v", m.Payload, m.Protected.ContentType)
			}

			// Both are in the CA's audit log, the token by its cti.
			log, err := os.ReadFile(filepath.Join(p.ca.Dir, audit.FileName))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := audit.Verify(bytes.NewReader(log))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Events["cose.sign"] != 2 || !bytes.Contains(log, []byte(hex.EncodeToString(c.CTI))) {
				t.Errorf("audit log: events %v, cti %x logged: %v", rep.Events, c.CTI, bytes.Contains(log, []byte(hex.EncodeToString(c.CTI))))
			}
		})
	}
}

// The same key gives the same token; another request under the key is
// refused; a job payload signed again (a redelivery) is the same token.
func TestCOSEIdempotent(t *testing.T) {
	p := startCOSEPipeline(t, "ecdsa-p256", 1)
	ctx := context.Background()
	published := &capture{Publisher: p.svc.Queue}
	p.svc.Queue = published
	req := cose.SignRequest{Type: cose.TypeCWT, Claims: &cose.Claims{Subject: "s", Expiry: time.Now().Add(time.Hour)}}
	id, err := p.svc.SubmitCOSE(ctx, "k", req, "")
	if err != nil {
		t.Fatal(err)
	}
	first := waitFor(t, p.svc, id)
	id2, err := p.svc.SubmitCOSE(ctx, "k", req, "")
	if err != nil || id2 != id {
		t.Fatalf("second submit: %s %v", id2, err)
	}
	if second := waitFor(t, p.svc, id2); !bytes.Equal(first.DER, second.DER) {
		t.Fatal("the same key gave two different tokens")
	}
	other := req
	other.Claims = &cose.Claims{Subject: "other"}
	if _, err := p.svc.SubmitCOSE(ctx, "k", other, ""); !errors.Is(err, store.ErrKeyReused) {
		t.Fatalf("reused key: %v", err)
	}
	// A key used by a certificate request cannot name a token.
	if _, err := p.svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, "x.example.com"), Key: "cert-key"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.svc.SubmitCOSE(ctx, "cert-key", req, ""); !errors.Is(err, store.ErrKeyReused) {
		t.Fatalf("key of another kind: %v", err)
	}

	// Redelivery: the job as published, signed again under another id,
	// gives a token with the same iat and cti.
	again := published.jobs[0]
	if again.ID != id {
		t.Fatalf("published %s, want %s", again.ID, id)
	}
	again.ID = "resign-1"
	res := publishAndLookup(t, p, again)
	if !res.OK {
		t.Fatalf("re-sign: %+v", res)
	}
	var out jobspec.COSEResult
	if err := jobspec.Decode(res.Payload, &out); err != nil {
		t.Fatal(err)
	}
	a := verifyToken(t, p.ca, first.DER, cose.VerifyOptions{}).Claims
	b := verifyToken(t, p.ca, out.Message, cose.VerifyOptions{}).Claims
	if !a.IssuedAt.Equal(b.IssuedAt) || !bytes.Equal(a.CTI, b.CTI) {
		t.Errorf("re-signed token: iat %v cti %x, first %v %x", b.IssuedAt, b.CTI, a.IssuedAt, a.CTI)
	}
}

// capture remembers the jobs enroll publishes.
type capture struct {
	enroll.Publisher
	jobs []queue.Job
}

func (c *capture) PublishJob(ctx context.Context, job queue.Job) error {
	c.jobs = append(c.jobs, job)
	return c.Publisher.PublishJob(ctx, job)
}

func publishAndLookup(t *testing.T, p *pipeline, job queue.Job) queue.Result {
	t.Helper()
	if err := p.q.PublishJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := p.q.LookupResult(context.Background(), job.CA, job.ID)
		if err == nil {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result for job %s", job.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Requests the CA cannot sign are refused by enroll and never queued.
func TestCOSERefusedBeforeQueue(t *testing.T) {
	p := startCOSEPipeline(t, "ecdsa-p256", 1)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  cose.SignRequest
		want string
	}{
		{"outlives CA", cose.SignRequest{Type: cose.TypeCWT, Claims: &cose.Claims{Expiry: time.Now().AddDate(40, 0, 0)}}, "after the CA certificate"},
		{"claims in sign1", cose.SignRequest{Type: cose.TypeSign1, Claims: &cose.Claims{Subject: "x"}}, "claims need type cwt"},
		{"payload in cwt", cose.SignRequest{Type: cose.TypeCWT, Payload: []byte("x")}, "do not set a payload"},
		{"alg for another key", cose.SignRequest{Payload: []byte("x"), Algorithms: []string{"ES512"}}, "P-521"},
		{"unknown alg", cose.SignRequest{Payload: []byte("x"), Algorithms: []string{"HS256"}}, "HS256"},
		{"two signers", cose.SignRequest{Payload: []byte("x"), KIDs: [][]byte{{1}, {2}}}, "one signer"},
		{"unknown type", cose.SignRequest{Type: "mac0", Payload: []byte("x")}, "unknown message type"},
		{"bad content type", cose.SignRequest{Payload: []byte("x"), ContentType: "not a type"}, "content type"},
		{"registered claim in extra", cose.SignRequest{Type: cose.TypeCWT, Claims: &cose.Claims{Extra: map[string]any{"exp": 1}}}, "registered claim"},
		{"too large", cose.SignRequest{Payload: make([]byte, jobspec.MaxCOSEContent+1)}, "limit"},
	} {
		key := "bad-" + tc.name
		_, err := p.svc.SubmitCOSE(ctx, key, tc.req, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
		if _, err := p.svc.Job(enroll.JobID(enroll.QueueName(p.ca), key)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: a refused request left a job record: %v", tc.name, err)
		}
	}
	if _, err := p.svc.SubmitCOSE(ctx, "", cose.SignRequest{Payload: []byte("x")}, ""); err == nil {
		t.Error("no idempotency key accepted")
	}
	if _, err := p.svc.SubmitCOSE(ctx, "c", cose.SignRequest{Payload: []byte("x")}, "urgent"); err == nil {
		t.Error("unknown class accepted")
	}
	st, err := p.q.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Interactive.Pending+st.Batch.Pending != 0 || st.ResultsSeq != 0 {
		t.Fatalf("queue saw refused requests: %+v", st)
	}
}

// A worker re-checks COSE jobs: one that reached the stream without
// enroll (no fixed iat and cti, or a token outliving the CA) is refused
// with a permanent error, not signed.
func TestWorkerRefusesRogueCOSEJob(t *testing.T) {
	p := startCOSEPipeline(t, "ecdsa-p256", 1)
	for i, spec := range []jobspec.COSE{
		{Request: cose.SignRequest{Type: cose.TypeCWT, Claims: &cose.Claims{Subject: "x"}}},
		{Request: cose.SignRequest{Type: cose.TypeCWT, Claims: &cose.Claims{IssuedAt: time.Now(), CTI: []byte{1}, Expiry: time.Now().AddDate(50, 0, 0)}}},
		{Request: cose.SignRequest{Type: cose.TypeSign1, Payload: []byte("x"), Algorithms: []string{"ES384"}}},
	} {
		payload, _ := jobspec.Encode(spec)
		job := queue.Job{V: queue.JobVersion, ID: "rogue-" + string(rune('a'+i)), CA: enroll.QueueName(p.ca), Kind: jobspec.KindCOSE,
			Class: queue.ClassInteractive, Submitted: time.Now(), Payload: payload}
		if res := publishAndLookup(t, p, job); res.OK || !res.Permanent {
			t.Errorf("rogue job %d: %+v", i, res)
		}
	}
}

// A CA whose certificate does not allow digitalSignature (the built-in
// root profiles) cannot sign tokens: verifiers would refuse them.
func TestCOSENeedsDigitalSignatureCA(t *testing.T) {
	p := startPipeline(t, 1, 0)
	_, err := p.svc.SubmitCOSE(context.Background(), "t", cose.SignRequest{Type: cose.TypeCWT}, "")
	if err == nil || !strings.Contains(err.Error(), "digitalSignature") {
		t.Fatalf("token from a certificate-only CA: %v", err)
	}
}
