package worker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// keygen generates a key pair in software for a client (EST
// serverkeygen), certifies it with the reserved serial and returns the
// private key sealed to the front-end's one-time key: it never travels or
// rests in clear. A redelivered job makes another key and certificate
// under the same serial; the results stream keeps only the first, so the
// client gets one key and the certificate that matches it.
func (w *worker) keygen(ctx context.Context, job queue.Job) ([]byte, error) {
	var spec jobspec.Keygen
	if err := jobspec.Decode(job.Payload, &spec); err != nil {
		return nil, permanent{err}
	}
	a, err := algo.Parse(spec.Algorithm)
	if err != nil {
		return nil, permanent{err}
	}
	if !a.CanSign() || a.Family() == algo.FamilyComposite {
		return nil, permanent{fmt.Errorf("server-side generation of %s keys is not supported", a)}
	}
	serial, err := store.ParseSerial(spec.Serial)
	if err != nil {
		return nil, permanent{fmt.Errorf("job has no valid reserved serial: %v", err)}
	}
	if len(spec.Recipient) == 0 {
		return nil, permanent{errors.New("keygen job has no recipient key")}
	}
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, err := algo.PublicKey(priv)
	if err != nil {
		return nil, permanent{err}
	}
	csr, err := jobspec.KeygenTemplate(spec.Template, pub)
	if err != nil {
		return nil, permanent{err}
	}
	// The policy is checked again, as for issue jobs.
	p, err := w.ca.Prepare(ca.IssueRequest{Profile: spec.Profile, Vars: spec.Vars, CSR: csr, Serial: serial})
	if err != nil {
		return nil, permanent{err}
	}
	pkcs8, err := algo.MarshalPKCS8(priv)
	if err != nil {
		return nil, permanent{err}
	}
	sealed, err := jobspec.SealKey(spec.Recipient, job.ID, pkcs8)
	clear(pkcs8)
	if err != nil {
		return nil, permanent{err}
	}
	if err := w.wait(ctx); err != nil {
		return nil, err
	}
	der, err := ca.Sign(p, serial, w.s.iss)
	if err != nil {
		var lintErr *ca.LintError
		if errors.As(err, &lintErr) {
			return nil, permanent{err}
		}
		return nil, err
	}
	return jobspec.Encode(jobspec.KeygenResult{DER: der, CAVersion: w.s.version, SealedKey: sealed})
}
