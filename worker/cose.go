package worker

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"sync"

	"github.com/qpki/qpki/pkg/cose"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/queue"
)

// cose signs a COSE message or CWT with the CA version's key; the message
// carries the version's chain in x5chain. The job is checked again first,
// as issue jobs are: one that reached the stream without enroll is refused.
func (w *worker) cose(ctx context.Context, job queue.Job) ([]byte, error) {
	var spec jobspec.COSE
	if err := jobspec.Decode(job.Payload, &spec); err != nil {
		return nil, permanent{err}
	}
	iss, version := w.s.iss, w.s.version
	if spec.Version != "" && spec.Version != w.s.version {
		// Another version's key, as enroll chose: open it for this job.
		other, closer, err := w.ca.Issuer(spec.Version, w.o.Keys)
		if err != nil {
			return nil, err
		}
		defer closer.Close()
		iss, version = other, spec.Version
	}
	chain, err := w.chain(version)
	if err != nil {
		return nil, err
	}
	if err := spec.Check(chain[0]); err != nil {
		return nil, permanent{err}
	}
	if err := w.wait(ctx); err != nil {
		return nil, err
	}
	// A Catalyst CA signs with its classical key, the one its certificate
	// (and so the x5chain) names.
	msg, err := cose.Sign(rand.Reader, spec.Request, []cose.Signer{iss.Signer}, [][]*x509.Certificate{chain})
	if err != nil {
		if errors.Is(err, cose.ErrInvalidRequest) || errors.Is(err, cose.ErrUnsupported) {
			return nil, permanent{err}
		}
		return nil, err // the signer failed: retry on a fresh session
	}
	return jobspec.Encode(jobspec.COSEResult{Message: msg, CAVersion: version})
}

// chains caches each CA version's chain: a version's certificate files
// never change once written, and reading them per token would cost more
// than an ECDSA signature.
var chains sync.Map // CA dir + "\x00" + version → []*x509.Certificate

func (w *worker) chain(version string) ([]*x509.Certificate, error) {
	key := w.ca.Dir + "\x00" + version
	if c, ok := chains.Load(key); ok {
		return c.([]*x509.Certificate), nil
	}
	c, err := w.ca.Chain(version)
	if err != nil {
		return nil, err
	}
	chains.Store(key, c)
	return c, nil
}
