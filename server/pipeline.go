package server

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/worker"
)

// Pipeline is how a CLI command reaches a CA: through the server that
// holds it, or, when none does, through the same enrollment service run in
// process (worker.Local signs each job at once instead of queueing it).
type Pipeline interface {
	Submit(ctx context.Context, req SubmitRequest) (*JobStatus, error)
	Job(ctx context.Context, id string, wait time.Duration) (*JobStatus, error)
	Certs(ctx context.Context, status string) ([]*store.Cert, error)
	Cert(ctx context.Context, serial string) (*store.Cert, error)
	Revoke(ctx context.Context, serial string, reason int) (*store.Cert, error)
	QueueStatus(ctx context.Context) (json.RawMessage, error)
	Close()
}

// Remote reports whether a pipeline goes through a running server.
func Remote(p Pipeline) bool { _, ok := p.(*Client); return ok }

// OpenPipeline returns the server's pipeline when one holds caDir, else an
// in-process one. Signer sessions are opened lazily, so commands that only
// read (cert list) never ask for a passphrase or a PIN.
func OpenPipeline(caDir string, keys ca.KeyOptions, sessions int) (Pipeline, error) {
	if cl, err := Dial(caDir); err == nil {
		return cl, nil
	}
	c, err := ca.Open(caDir)
	if err != nil {
		return nil, err
	}
	return &inProcess{ca: c, keys: keys, sessions: sessions}, nil
}

type inProcess struct {
	ca       *ca.CA
	keys     ca.KeyOptions
	sessions int
	svc      *enroll.Service
	local    *worker.Local
}

func (p *inProcess) service() (*enroll.Service, error) {
	if p.svc != nil {
		return p.svc, nil
	}
	svc, err := enroll.New(p.ca, nil)
	if err != nil {
		return nil, err
	}
	local, err := worker.NewLocal(p.ca, worker.Options{Sessions: p.sessions, Keys: p.keys, QueueName: enroll.QueueName(p.ca)}, svc.Record)
	if err != nil {
		return nil, err
	}
	svc.Queue = local
	p.svc, p.local = svc, local
	return svc, nil
}

func (p *inProcess) Submit(ctx context.Context, req SubmitRequest) (*JobStatus, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	er, err := req.enrollRequest()
	if err != nil {
		return nil, err
	}
	id, err := svc.Submit(ctx, er)
	if err != nil {
		return nil, err
	}
	return p.Job(ctx, id, req.Wait)
}

func (p *inProcess) Job(ctx context.Context, id string, wait time.Duration) (*JobStatus, error) {
	svc, err := p.service()
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, max(wait, time.Millisecond))
	defer cancel()
	res, err := svc.Wait(wctx, id)
	if errors.Is(err, enroll.ErrPending) {
		return &JobStatus{JobID: id, State: store.JobQueued}, nil
	}
	if err != nil {
		return nil, err
	}
	st := &JobStatus{JobID: id, State: res.State, Error: res.Error, DER: res.DER, Cert: res.Cert}
	if res.Cert != nil {
		st.Serial = res.Cert.Serial
	}
	return st, nil
}

func (p *inProcess) Certs(ctx context.Context, status string) ([]*store.Cert, error) {
	st, err := p.ca.Store()
	if err != nil {
		return nil, err
	}
	return st.List(store.Filter{Status: status})
}

func (p *inProcess) Cert(ctx context.Context, serial string) (*store.Cert, error) {
	n, err := store.ParseSerial(serial)
	if err != nil {
		return nil, err
	}
	st, err := p.ca.Store()
	if err != nil {
		return nil, err
	}
	return st.Cert(n)
}

func (p *inProcess) Revoke(ctx context.Context, serial string, reason int) (*store.Cert, error) {
	return p.ca.Revoke(serial, reason, time.Now())
}

func (p *inProcess) QueueStatus(ctx context.Context) (json.RawMessage, error) {
	return nil, errors.New("no qpki server holds this CA: the queue runs only inside `qpki serve`")
}

func (p *inProcess) Close() {
	if p.local != nil {
		p.local.Close()
	}
	p.ca.Close()
}
