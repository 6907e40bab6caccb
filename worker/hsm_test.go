package worker_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/hsm/hsmtest"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/worker"
)

func TestMain(m *testing.M) { os.Exit(hsmtest.Run(m, "worker-hsm")) }

func uniqueLabel(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// hsmCA makes a CA whose key is generated in the token cfg names, and
// removes the key from the token when the test ends.
func hsmCA(t testing.TB, dir, profile, cfg string) *ca.CA {
	t.Helper()
	label := uniqueLabel("worker-ca")
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Profile: profile, Vars: map[string]any{"cn": "Worker HSM CA"},
		Key: ca.KeySpec{HSMConfig: cfg, Label: label}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tok, err := hsm.OpenFile(cfg)
		if err != nil {
			return
		}
		defer tok.Close()
		if k, err := tok.FindKey(label, nil); err == nil {
			tok.DestroyKey(k)
		}
	})
	return c
}

// secondHandle is another PKCS#11 handle on the module the token uses, as
// a tool or a crash of another thread would hold: what it does to the
// application's sessions and login happens behind the signers' back.
type secondHandle struct {
	ctx  *pkcs11.Ctx
	slot uint
}

func openSecondHandle(t testing.TB, cfg string) *secondHandle {
	t.Helper()
	conf, err := hsm.LoadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := hsm.Open(conf)
	if err != nil {
		t.Fatal(err)
	}
	slot := tok.Slot()
	tok.Close()
	ctx := pkcs11.New(conf.PKCS11.Lib)
	if ctx == nil {
		t.Fatalf("cannot load %s", conf.PKCS11.Lib)
	}
	// The module is initialised already (by the signers); never finalise
	// it from here.
	if err := ctx.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		t.Fatal(err)
	}
	t.Cleanup(ctx.Destroy)
	return &secondHandle{ctx: ctx, slot: slot}
}

// loggedIn reports whether the application is logged in to the token, as
// a new session sees it.
func (h *secondHandle) loggedIn(t testing.TB) bool {
	t.Helper()
	s, err := h.ctx.OpenSession(h.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer h.ctx.CloseSession(s)
	si, err := h.ctx.GetSessionInfo(s)
	if err != nil {
		t.Fatal(err)
	}
	return si.State == pkcs11.CKS_RO_USER_FUNCTIONS || si.State == pkcs11.CKS_RW_USER_FUNCTIONS
}

func (h *secondHandle) closeAllSessions(t testing.TB) {
	t.Helper()
	if err := h.ctx.CloseAllSessions(h.slot); err != nil {
		t.Fatal(err)
	}
}

func (h *secondHandle) logout(t testing.TB) {
	t.Helper()
	s, err := h.ctx.OpenSession(h.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer h.ctx.CloseSession(s)
	if err := h.ctx.Logout(s); err != nil {
		t.Fatal(err)
	}
}

type pipeline struct {
	ca     *ca.CA
	q      *queue.Queue
	svc    *enroll.Service
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// startPipeline runs a queue, a recorder and worker.Run, as serve does.
func startPipeline(t testing.TB, c *ca.CA, sessions int) *pipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	q, err := queue.Start(ctx, queue.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := enroll.New(c, q)
	if err != nil {
		t.Fatal(err)
	}
	// The workers sign in as the worker user, as in qpki serve.
	wq, err := q.WorkerQueue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{ca: c, q: q, svc: svc, cancel: cancel}
	name := enroll.QueueName(c)
	ready := make(chan error, 1)
	p.done.Add(2)
	go func() {
		defer p.done.Done()
		q.Results(ctx, name, svc.Record)
	}()
	go func() {
		defer p.done.Done()
		if err := worker.Run(ctx, c, wq, worker.Options{Sessions: sessions, QueueName: name, Ready: ready}); err != nil {
			t.Error(err)
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cancel()
		p.done.Wait()
		wq.Close()
		p.q.Close()
		p.ca.Close()
	})
	return p
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

// issue submits n jobs and checks that each gives a certificate for its
// name, signed by the CA's key.
func (p *pipeline) issue(t *testing.T, round string, n int) {
	t.Helper()
	caCert, err := p.ca.Certificate("")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		name := fmt.Sprintf("%s-%d.example.com", round, i)
		id, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, name), Key: name, Class: queue.ClassBatch})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	for i, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := p.svc.Wait(ctx, id)
		cancel()
		if err != nil {
			t.Fatalf("%s job %d: %v", round, i, err)
		}
		if res.State != store.JobDone {
			t.Fatalf("%s job %d: %s %s", round, i, res.State, res.Error)
		}
		cert, err := x509.ParseCertificate(res.DER)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%s-%d.example.com", round, i); cert.DNSNames[0] != want {
			t.Errorf("job %d got the certificate for %v", i, cert.DNSNames)
		}
		if err := cert.CheckSignatureFrom(caCert); err != nil {
			t.Errorf("%s job %d: %v", round, i, err)
		}
	}
}

// Workers whose HSM sessions are all closed behind their back (or whose
// login is dropped) reopen them, log in again and go on: every job of the
// next round is signed, none fails.
func TestHSMWorkerRecoversFromClosedSessions(t *testing.T) {
	tgt := hsmtest.Use(t, "worker-hsm")
	c := hsmCA(t, t.TempDir(), "ec/root-ca", tgt.Config)
	p := startPipeline(t, c, 2)
	h := openSecondHandle(t, tgt.Config)

	p.issue(t, "before", 10)
	if !h.loggedIn(t) {
		t.Fatal("the workers are not logged in")
	}

	h.closeAllSessions(t)
	if h.loggedIn(t) {
		t.Fatal("C_CloseAllSessions left the application logged in; the test would not test recovery")
	}
	p.issue(t, "after-close", 10)
	if !h.loggedIn(t) {
		t.Error("the workers signed without logging in again?")
	}

	h.logout(t)
	if h.loggedIn(t) {
		t.Fatal("C_Logout did not log out")
	}
	p.issue(t, "after-logout", 10)

	// Closing sessions while another thread is inside C_Sign on them is
	// outside what PKCS#11 defines (SoftHSM2 crashes on it), so the
	// sessions are closed between rounds, never under a signature.
	for i := 0; i < 3; i++ {
		h.closeAllSessions(t)
		p.issue(t, fmt.Sprintf("round%d", i), 10)
	}
	p.issue(t, "end", 5)
}

// worker.NewLocal (the CLI's in-process pipeline) recovers the same way.
func TestHSMLocalWorkerRecovers(t *testing.T) {
	tgt := hsmtest.Use(t, "worker-hsm")
	c := hsmCA(t, t.TempDir(), "ec/root-ca", tgt.Config)
	defer c.Close()
	svc, err := enroll.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	local, err := worker.NewLocal(c, worker.Options{Sessions: 1, QueueName: enroll.QueueName(c)}, svc.Record)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	svc.Queue = local
	p := &pipeline{ca: c, svc: svc}
	h := openSecondHandle(t, tgt.Config)
	p.issue(t, "local-before", 3)
	h.closeAllSessions(t)
	p.issue(t, "local-after", 3)
}
