package ocsp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/internal/nobletest"
	"github.com/qpki/qpki/ocsp"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/ocspx"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/worker"
)

var operator = enroll.Operator(enroll.FrontendCLI, "test")

// env is one CA's pipeline (embedded NATS, recorder, one worker) with a
// responder in front of it on an httptest server.
type env struct {
	ca     *ca.CA
	svc    *enroll.Service
	r      *ocsp.Responder
	url    string
	issuer *x509.Certificate
}

func start(t *testing.T, profile string, o ocsp.Options) *env {
	t.Helper()
	dir := t.TempDir()
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Profile: profile, Vars: map[string]any{"cn": "OCSP " + profile}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q, err := queue.Start(ctx, queue.Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := enroll.New(c, q)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	name := enroll.QueueName(c)
	wg.Add(2)
	go func() {
		defer wg.Done()
		q.ResultBatches(ctx, name, 64, func(rs []queue.Result) error { return errors.Join(svc.RecordBatch(rs)...) })
	}()
	go func() {
		defer wg.Done()
		wq, err := q.WorkerQueue(ctx) // the worker user, as in qpki serve
		if err != nil {
			return
		}
		defer wq.Close()
		worker.Run(ctx, c, wq, worker.Options{Sessions: 1, QueueName: name})
	}()
	f := &ocsp.Frontend{Options: o}
	if err := f.Mount(nil, svc); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.Wrap(http.NotFoundHandler()))
	t.Cleanup(func() {
		srv.Close()
		f.Close()
		cancel()
		wg.Wait()
		q.Close()
		c.Close()
	})
	issuer, _ := c.Certificate("")
	return &env{ca: c, svc: svc, r: f.Responder(), url: srv.URL + ocsp.Path, issuer: issuer}
}

func (e *env) issue(t *testing.T, a algo.Algorithm, profile, cn string) *big.Int {
	t.Helper()
	priv, _ := algo.GenerateKey(a, rand.Reader)
	s, _ := algo.NewSigner(priv, a)
	csr, err := x509x.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn}}, s, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.svc.Submit(context.Background(), enroll.Request{Principal: operator, Profile: profile, CSR: csr, Key: cn})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.svc.Wait(ctx, id)
	if err != nil || res.Err() != nil {
		t.Fatalf("issue %s: %v %v", cn, err, res)
	}
	n, _ := new(big.Int).SetString(res.Cert.Serial, 16)
	return n
}

func (e *env) post(t *testing.T, req []byte) []byte {
	t.Helper()
	resp, err := http.Post(e.url, "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

func parse(t *testing.T, e *env, der []byte) *ocspx.Response {
	t.Helper()
	r, err := ocspx.ParseResponse(der)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != ocspx.Successful {
		t.Fatalf("status %s", r.Status)
	}
	if _, err := r.Verify(e.issuer); err != nil {
		t.Fatal(err)
	}
	return r
}

// Several CertIDs are answered together, a nonce comes back with
// --ocsp-nonce, and a client past its limit gets tryLater for what needs a
// fresh signature while its single requests are still answered.
func TestSeveralCertIDsNonceAndLimit(t *testing.T) {
	e := start(t, "ec/root-ca", ocsp.Options{Nonce: true, ClientRate: 0.001, ClientBurst: 2})
	a := e.issue(t, algo.ECDSAP256, "ec/tls-server", "a.ocsp.test")
	b := e.issue(t, algo.ECDSAP256, "ec/tls-server", "b.ocsp.test")
	both, _ := ocspx.CreateRequest(e.issuer, []*big.Int{a, b, big.NewInt(77)}, ocspx.SHA256, nil)
	r := parse(t, e, e.post(t, both))
	if len(r.Responses) != 3 || r.Find(a).Status != ocspx.Good || r.Find(b).Status != ocspx.Good ||
		r.Find(big.NewInt(77)).Status != ocspx.Revoked || !r.ExtendedRevoke {
		t.Fatalf("several CertIDs: %+v", r.Responses)
	}
	nonce := bytes.Repeat([]byte{0x5a}, 16)
	withNonce, _ := ocspx.CreateRequest(e.issuer, []*big.Int{a}, ocspx.SHA1, nonce)
	req, _ := ocspx.ParseRequest(withNonce)
	if r := parse(t, e, e.post(t, withNonce)); !bytes.Equal(r.Nonce, req.Nonce) {
		t.Fatalf("nonce %x, want %x", r.Nonce, req.Nonce)
	}
	// The burst of 2 is used up: no more fresh signatures for this client.
	if got := e.post(t, both); !bytes.Equal(got, ocspx.ErrorResponse(ocspx.TryLater)) {
		t.Fatalf("past the limit, several CertIDs: % x", got)
	}
	if r := parse(t, e, e.post(t, withNonce)); r.Nonce != nil || r.Find(a).Status != ocspx.Good {
		t.Fatalf("past the limit, a nonce: %+v", r)
	}
	long, _ := ocspx.CreateRequest(e.issuer, []*big.Int{a}, ocspx.SHA1, make([]byte, ocspx.MaxNonce+1))
	if got := e.post(t, long); !bytes.Equal(got, ocspx.ErrorResponse(ocspx.MalformedRequest)) {
		t.Fatalf("a %d-byte nonce: % x", ocspx.MaxNonce+1, got)
	}
}

// An ML-DSA-87 CA answers on demand: the first request signs (ML-DSA-87
// through the queue), later ones get the same bytes; the signature
// verifies with qpki and with @noble/post-quantum.
func TestMLDSAOnDemand(t *testing.T) {
	e := start(t, "ml/root-ca", ocsp.Options{})
	if m := e.r.Modes()[enroll.QueueName(e.ca)]; m != ocsp.OnDemand {
		t.Fatalf("ML-DSA-87 CA in mode %s", m)
	}
	serial := e.issue(t, algo.MLDSA65, "ml/tls-server", "pq.ocsp.test")
	req, _ := ocspx.CreateRequest(e.issuer, []*big.Int{serial}, ocspx.SHA1, nil)
	first := e.post(t, req)
	r := parse(t, e, first)
	if r.Find(serial).Status != ocspx.Good || x509x.SignatureAlgorithmName(r.SignatureAlg) != string(algo.MLDSA87) {
		t.Fatalf("ML-DSA response: %+v %s", r.Responses, x509x.SignatureAlgorithmName(r.SignatureAlg))
	}
	if again := e.post(t, req); !bytes.Equal(again, first) {
		t.Fatal("the second answer is not the cached response")
	}
	node, script := nobletest.Script(t, "../interop/noble")
	dir := t.TempDir()
	w := func(n string, b []byte) string { p := filepath.Join(dir, n); os.WriteFile(p, b, 0o600); return p }
	key, err := x509x.PublicKey(e.issuer)
	if err != nil {
		t.Fatal(err)
	}
	pub := w("pub", key.(interface{ Bytes() []byte }).Bytes())
	out, _ := exec.Command(node, script, "verify", "ml-dsa-87", pub, w("tbs", r.TBS), w("sig", r.Signature),
		"ml-dsa-87", pub, w("bad", append([]byte{1}, r.TBS...)), w("sig2", r.Signature)).CombinedOutput()
	if got := strings.Join(strings.Fields(string(out)), " "); got != "OK INVALID" {
		t.Fatalf("noble: %q", got)
	}
}

func TestModeFor(t *testing.T) {
	for a, want := range map[algo.Algorithm]ocsp.Mode{
		algo.ECDSAP256: ocsp.Presign, algo.RSA3072: ocsp.Presign, algo.Ed25519: ocsp.Presign,
		algo.MLDSA44: ocsp.Presign, algo.MLDSA65: ocsp.Presign, algo.MLDSA87: ocsp.OnDemand,
		algo.SLHDSASHA2128s: ocsp.OnDemand, algo.SLHDSASHA2128f: ocsp.OnDemand,
	} {
		if got, why := ocsp.ModeFor(a); got != want || why == "" {
			t.Errorf("%s: %s (%s), want %s", a, got, why, want)
		}
	}
}

// A delegated responder is renewed in the last third of its life.
func TestRenewDue(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		before, after time.Duration
		due           bool
	}{{-time.Hour, 47 * time.Hour, false}, {-33 * time.Hour, 15 * time.Hour, true}, {-48 * time.Hour, -time.Second, true}} {
		cert := &x509.Certificate{NotBefore: now.Add(c.before), NotAfter: now.Add(c.after)}
		if got := ocsp.RenewDue(cert, now); got != c.due {
			t.Errorf("valid %s..%s: due %v", c.before, c.after, got)
		}
	}
}
