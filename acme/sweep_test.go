package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"github.com/qpki/qpki/acme"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
	"github.com/qpki/qpki/worker"
)

type signCount struct{ n atomic.Int64 }

func (s *signCount) Signed(_, _ string, _ time.Duration, err error) {
	if err == nil {
		s.n.Add(1)
	}
}
func (s *signCount) SignerBusy(string, time.Duration) {}

// selfSignedTLS writes a listener certificate for 127.0.0.1, so that
// serve starts without a worker to sign its own.
func selfSignedTLS(t *testing.T, dir string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile, cert
}

// An order whose finalize answered "processing" while its job's message
// was lost from the stream (deleted from the real JetStream stream, as a
// power loss of the embedded server can lose it) turns valid: serve's
// sweeper publishes the job again, and it is signed once.
func TestLostJobOrderTurnsValid(t *testing.T) {
	certFile, keyFile, tlsCert := selfSignedTLS(t, t.TempDir())
	e := newEnvServer(t, func(c *server.Config) {
		c.Workers = 0 // the job waits in the stream until a worker comes
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.Sweep = enroll.SweepOptions{After: time.Second}
	}, func(c *acme.Config) { c.FinalizeWait = 100 * time.Millisecond })
	e.roots.AddCert(tlsCert)
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	c := e.client()
	names := []string{"lost.example.com"}
	o := order(t, c, xacme.DomainIDs(names...), http01(answers))
	csr, _ := csrFor(t, names[0], names...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type issued struct {
		ders [][]byte
		err  error
	}
	done := make(chan issued, 1)
	go func() {
		ders, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csr, true) // waits while processing
		done <- issued{ders, err}
	}()

	core := e.srv.Core
	jobs, err := core.Queue.JetStream().Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := jobs.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 1 {
			if err := jobs.DeleteMsg(ctx, info.State.LastSeq); err != nil {
				t.Fatal(err)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the order's job never reached the stream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := c.GetOrder(ctx, o.URI)
	if err != nil || got.Status != xacme.StatusProcessing {
		t.Fatalf("order after finalize: %+v %v, want processing", got, err)
	}

	signed := &signCount{}
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		worker.Run(wctx, core.CA, core.Queue, worker.Options{QueueName: server.QueueName(core.CA), Observer: signed})
	}()
	defer func() { wcancel(); wg.Wait() }()
	res := <-done
	if res.err != nil {
		t.Fatalf("the order did not turn valid: %v", res.err)
	}
	e.verifyChain(t, res.ders, names)
	// Once the stream is empty, no copy is left to sign.
	for {
		info, err := jobs.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d jobs left in the stream", info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := signed.n.Load(); n != 1 {
		t.Fatalf("%d signatures for one order", n)
	}
}
