package worker_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/testtoken"
)

// The qpki test token (a PKCS#11 3.2 token shaped like a network HSM) is
// killed in the middle of a batch going through the real queue, recorder
// and workers, and started again: every job of the batch completes, once.

func mldsaCSR(t testing.TB, name string) []byte {
	t.Helper()
	priv, err := algo.GenerateKey(algo.MLDSA44, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := algo.NewSigner(priv, algo.MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509x.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, s, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestTestTokenDaemonKilledMidBatch(t *testing.T) {
	d := testtoken.Shared(t)
	cfg := d.Config(t, testtoken.SharedToken)
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(t.TempDir(), "ca"), Profile: "ml/root-ca",
		Vars: map[string]any{"cn": "Worker Token ML Root"}, Key: ca.KeySpec{HSMConfig: cfg, Label: uniqueLabel("worker-ml")}})
	if err != nil {
		t.Fatal(err)
	}
	p := startPipeline(t, c, 2)
	caCert, err := c.Certificate("")
	if err != nil {
		t.Fatal(err)
	}

	const n = 60
	names := make([]string, n)
	ids := make([]string, n)
	submit := func(i int) {
		t.Helper()
		names[i] = fmt.Sprintf("batch-%d.token.example", i)
		id, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ml/tls-server", CSR: mldsaCSR(t, names[i]),
			Key: names[i], Class: queue.ClassBatch})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	wait := func(i int) *x509.Certificate {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := p.svc.Wait(ctx, ids[i])
		if err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		if res.State != store.JobDone {
			t.Fatalf("job %d: %s %s", i, res.State, res.Error)
		}
		cert, err := x509.ParseCertificate(res.DER)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}

	// The token dies once the first third is under way (part of it may be
	// in the workers' hands), stays down while the rest is queued, and
	// comes back: the workers meet it down in the middle of the batch.
	for i := 0; i < n/3; i++ {
		submit(i)
	}
	wait(4) // the rest of the first third may still be in flight
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := n / 3; i < n; i++ {
		submit(i)
	}
	// While the token is down nothing is signed: the jobs wait (or are
	// retried), they do not fail.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	res, err := p.svc.Wait(ctx, ids[n/3])
	cancel()
	if !errors.Is(err, enroll.ErrPending) {
		t.Fatalf("a job submitted with the token down: %+v, %v; want it pending", res, err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}

	serials := map[string]bool{}
	for i := range ids {
		cert := wait(i)
		if len(cert.DNSNames) != 1 || cert.DNSNames[0] != names[i] {
			t.Errorf("job %d got the certificate for %v", i, cert.DNSNames)
		}
		if _, err := ca.VerifyChain(cert, ca.VerifyOptions{Roots: []*x509.Certificate{caCert}}); err != nil {
			t.Errorf("job %d: %v", i, err)
		}
		serials[cert.SerialNumber.Text(16)] = true
	}
	if len(serials) != n {
		t.Errorf("%d jobs, %d distinct serials", n, len(serials))
	}
	st, err := c.Store()
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := st.List(store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recorded) != n {
		t.Errorf("%d certificates recorded for %d jobs", len(recorded), n)
	}
	for _, r := range recorded {
		if !serials[r.Serial] {
			t.Errorf("recorded certificate %s was not returned to any job", r.Serial)
		}
	}
}
