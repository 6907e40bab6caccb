package worker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/queue"
)

// Observer learns how each signature went, for metrics (*metrics.Metrics
// is one). err is nil when the signer signed, else the signer's failure
// (the job is retried); a job refused by the policy check is not a
// signature and is not reported. elapsed leaves out the time spent waiting
// for the rate limiter. Signed must be fast and safe for concurrent use.
type Observer interface {
	Signed(kind, signer string, elapsed time.Duration, err error)
	// SignerBusy adds the time one signature held a session of signer
	// (the signer's call alone).
	SignerBusy(signer string, held time.Duration)
}

// signObserved signs a job and tells the Observer how it went.
func (w *worker) signObserved(ctx context.Context, job queue.Job) ([]byte, error) {
	w.waited = 0
	start := time.Now()
	payload, err := w.sign(ctx, job)
	if w.o.Observer == nil {
		return payload, err
	}
	var perm permanent
	switch {
	case err == nil:
		w.o.Observer.Signed(job.Kind, w.s.signer, time.Since(start)-w.waited, nil)
	case !errors.As(err, &perm):
		w.o.Observer.Signed(job.Kind, w.s.signer, time.Since(start)-w.waited, err)
	}
	return payload, err
}

// signerLabel names a session's signer in metrics: the storage type of the
// version's signing key and, for an HSM, its token's label (or serial or
// slot). It never fails: a metric label is not worth refusing to sign.
func signerLabel(c *ca.CA, version string, keys ca.KeyOptions) string {
	_, v, err := c.Version(version)
	if err != nil || len(v.Keys) == 0 {
		return "unknown"
	}
	k := v.Keys[0]
	for _, key := range v.Keys {
		if key.ID != "pqc" { // a Catalyst CA signs with its classical key
			k = key
			break
		}
	}
	if k.Storage.Type != "pkcs11" {
		return k.Storage.Type
	}
	path := keys.HSMConfig
	if path == "" && k.Storage.Config != "" {
		path = filepath.Join(c.Dir, filepath.FromSlash(k.Storage.Config))
	}
	if path != "" {
		if cfg, err := hsm.LoadConfig(path); err == nil {
			switch p := cfg.PKCS11; {
			case p.Token != "":
				return "pkcs11:" + p.Token
			case p.TokenSerial != "":
				return "pkcs11:serial=" + p.TokenSerial
			case p.Slot != nil:
				return fmt.Sprintf("pkcs11:slot=%d", *p.Slot)
			}
		}
	}
	return "pkcs11"
}
