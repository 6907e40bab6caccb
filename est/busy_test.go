package est

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/worker"
)

// With no signer running, a request gets 202 and Retry-After; sent again
// once a worker runs, the same CSR gets its certificate (one job, one
// certificate), and a server-generated key is still delivered.
func TestBusyQueue(t *testing.T) {
	e := newEnv(t, envConfig{workers: 0, tlsCert: true, opts: func(o *Options) {
		o.Wait, o.RetryAfter = 300*time.Millisecond, 3*time.Second
	}})
	dev := e.deviceCert("router-busy")
	c := e.client(&dev)
	csr, _ := newCSR(t, "busy.example.com")
	kgCSR, _ := newCSR(t, "busy-kg.example.com")
	for range 2 {
		r := e.do(c, "POST", "simpleenroll", b64(csr), "", "")
		if r.code != http.StatusAccepted || r.header.Get("Retry-After") != "3" || !strings.Contains(r.text(), "Retry-After") {
			t.Fatalf("busy simpleenroll: %d %q %s", r.code, r.header.Get("Retry-After"), r.text())
		}
		r = e.do(c, "POST", "serverkeygen", b64(kgCSR), "", "")
		if r.code != http.StatusAccepted || r.header.Get("Retry-After") != "3" {
			t.Fatalf("busy serverkeygen: %d %q %s", r.code, r.header.Get("Retry-After"), r.text())
		}
	}
	if n := e.certCount(); n != 0 {
		t.Fatalf("%d certificates before any worker ran", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		wq, err := e.srv.Core.Queue.WorkerQueue(ctx) // the worker user, as qpki worker signs in
		if err != nil {
			done <- err
			return
		}
		defer wq.Close()
		done <- worker.Run(ctx, e.srv.Core.CA, wq, worker.Options{QueueName: enroll.QueueName(e.srv.Core.CA)})
	}()
	t.Cleanup(func() { cancel(); <-done })
	var r response
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r = e.do(c, "POST", "simpleenroll", b64(csr), "", ""); r.code != http.StatusAccepted {
			break
		}
	}
	cert := certsResponse(t, r)[0]
	if cert.DNSNames[0] != "busy.example.com" {
		t.Fatal(cert.DNSNames)
	}
	var kg response
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if kg = e.do(c, "POST", "serverkeygen", b64(kgCSR), "", ""); kg.code != http.StatusAccepted {
			break
		}
	}
	parts := splitKeygen(t, kg)
	checkKeyMatches(t, parts.key, parts.cert)
	if n := e.certCount(); n != 2 {
		t.Fatalf("%d certificates for two requests sent four times", n)
	}
}
