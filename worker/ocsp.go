package worker

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/queue"
)

// ocsp signs a chunk of OCSP responses: with the session's CA key, another
// version's key, or the CA's delegated responder.
func (w *worker) ocsp(ctx context.Context, job queue.Job) ([]byte, error) {
	var spec jobspec.OCSP
	if err := jobspec.Decode(job.Payload, &spec); err != nil {
		return nil, permanent{err}
	}
	if err := spec.Check(); err != nil {
		return nil, permanent{err}
	}
	issuer, err := w.ca.Certificate(spec.Version)
	if err != nil {
		return nil, permanent{err}
	}
	signer, pss := w.s.iss.Signer, w.s.iss.PSS
	var responder *x509.Certificate
	switch {
	case spec.Delegated:
		r, err := w.responder()
		if err != nil {
			return nil, err
		}
		signer, responder, pss = r.signer, r.cert, false
	case spec.Version != w.s.version:
		other, closer, err := w.ca.Issuer(spec.Version, w.o.Keys)
		if err != nil {
			return nil, err
		}
		defer closer.Close()
		signer, pss = other.Signer, other.PSS
	}
	// One token of --rate per signature: a chunk is as many signatures
	// as it has responses.
	n := len(spec.Entries)
	if spec.Together {
		n = 1
	}
	for range n {
		if err := w.wait(ctx); err != nil {
			return nil, err
		}
	}
	out, err := ca.SignOCSP(&spec, issuer, signer, pss, responder)
	if err != nil {
		return nil, err
	}
	payload, err := jobspec.Encode(jobspec.OCSPResult{Responses: out})
	if err == nil {
		jobspec.Vouch(payload) // SignOCSP checked every signature
	}
	return payload, err
}

// delegated is an open delegated responder key, reopened when `qpki ocsp
// responder issue` or serve's renewal installs a new certificate.
type delegated struct {
	cert    *x509.Certificate
	signer  algo.Signer
	closer  interface{ Close() error }
	modTime time.Time
}

// responder returns the CA's delegated responder, opening it (again) when
// its metadata changed since it was opened.
func (w *worker) responder() (*delegated, error) {
	fi, err := os.Stat(filepath.Join(w.ca.Dir, ca.OCSPDir, "responder.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, permanent{ca.ErrNoResponder}
		}
		return nil, err
	}
	if w.delegated != nil && w.delegated.modTime.Equal(fi.ModTime()) {
		return w.delegated, nil
	}
	cert, s, err := w.ca.OpenResponder(w.o.Keys)
	if err != nil {
		return nil, fmt.Errorf("delegated OCSP responder: %w", err)
	}
	if w.delegated != nil {
		w.delegated.closer.Close()
	}
	w.delegated = &delegated{cert: cert, signer: s, closer: s, modTime: fi.ModTime()}
	return w.delegated, nil
}

// SignBatch makes a session signer sign many digests in one turn of the
// session (an OCSP chunk): maxBatch at a time, so that an interactive
// job waiting for the session gets its turn between them.
func (s sessionSigner) SignBatch(reqs []algo.SignRequest) {
	for i := 0; i < len(reqs); i += maxBatch {
		part := reqs[i:min(i+maxBatch, len(reqs))]
		calls := make([]*signCall, len(part))
		for k := range part {
			calls[k] = &signCall{req: part[k]}
		}
		s.mu.Lock()
		s.signBatch(calls)
		s.mu.Unlock()
		for k, c := range calls {
			part[k] = c.req
		}
	}
}
