package ocsp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/ocspx"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// entryOf is a certificate's status as a job entry.
func entryOf(c *store.Cert) jobspec.OCSPEntry {
	if c.Revocation != nil {
		return jobspec.OCSPEntry{Serial: c.Serial, Status: jobspec.OCSPRevoked, RevokedAt: c.Revocation.Time, Reason: c.Revocation.Reason}
	}
	return jobspec.OCSPEntry{Serial: c.Serial, Status: jobspec.OCSPGood}
}

// jobKey is an OCSP job's idempotency key: the same chunk asked for
// twice at the same thisUpdate is the same job.
func jobKey(prefix string, spec *jobspec.OCSP) string {
	h := sha256.New()
	for _, e := range spec.Entries {
		h.Write([]byte(e.Serial + "/" + e.Status + "\x00"))
	}
	h.Write(spec.Nonce)
	return fmt.Sprintf("ocsp-%s-%s-%s-%d-%s", prefix, spec.Version, spec.Hash, spec.ThisUpdate.Unix(), hex.EncodeToString(h.Sum(nil)[:12]))
}

// submit publishes an OCSP job and waits for it.
func (r *Responder) submit(ctx context.Context, a *authority, prefix, class string, spec *jobspec.OCSP) (*enroll.Result, error) {
	id, err := a.Enroll.Submit(ctx, enroll.Request{Kind: jobspec.KindOCSP, Key: jobKey(prefix, spec), Class: class, OCSP: spec})
	if err != nil {
		return nil, err
	}
	res, err := a.Enroll.Wait(ctx, id)
	if err != nil {
		return nil, err
	}
	return res, res.Err()
}

// signCerts signs and stores the responses of certificates of one CA
// version, in one job; interactive for a request or a revocation that
// waits for it, batch for the presigner.
func (r *Responder) signCerts(ctx context.Context, a *authority, version, hash string, certs []*store.Cert, interactive bool) error {
	_, delegated, _ := a.state()
	spec := &jobspec.OCSP{Version: version, Delegated: delegated, Hash: hash, Validity: r.o.Validity}
	for _, c := range certs {
		spec.Entries = append(spec.Entries, entryOf(c))
	}
	spec.ThisUpdate = thisUpdate(spec.Entries)
	class := queue.ClassBatch
	if interactive {
		class = queue.ClassInteractive
	}
	if _, err := r.submit(ctx, a, "c", class, spec); err != nil {
		return err
	}
	for _, c := range certs {
		r.cache.drop(cacheKey{a.idx, hash, c.Serial})
	}
	return nil
}

// signTogether signs one response for several CertIDs of one issuer (or
// for one with a nonce, or for a serial never issued), interactive; it
// is not stored per certificate. A never-issued serial's answer without a
// nonce is cached until half its validity.
func (r *Responder) signTogether(ctx context.Context, ref issuerRef, ids []ocspx.CertID, nonce []byte) (*entry, error) {
	a := ref.auth
	_, delegated, _ := a.state()
	spec := &jobspec.OCSP{Version: ref.version, Delegated: delegated, Hash: string(ids[0].Hash),
		Validity: r.o.Validity, Together: true, Nonce: nonce}
	for _, id := range ids {
		c, err := a.store.Cert(id.Serial)
		switch {
		case errors.Is(err, store.ErrNotFound):
			spec.Entries = append(spec.Entries, jobspec.OCSPEntry{Serial: store.FormatSerial(id.Serial), Status: jobspec.OCSPNotIssued})
		case err != nil:
			return nil, err
		case c.CAVersion != "" && c.CAVersion != ref.version:
			// Another version of this CA issued it: by this issuer's key,
			// the serial was never issued.
			spec.Entries = append(spec.Entries, jobspec.OCSPEntry{Serial: c.Serial, Status: jobspec.OCSPNotIssued})
		default:
			spec.Entries = append(spec.Entries, entryOf(c))
		}
	}
	spec.ThisUpdate = thisUpdate(spec.Entries)
	prefix := "t"
	if nonce != nil {
		prefix = "n"
	}
	res, err := r.submit(ctx, a, prefix, queue.ClassInteractive, spec)
	if err != nil {
		return nil, err
	}
	next := spec.ThisUpdate.Add(spec.Validity)
	return newEntry(res.DER, spec.ThisUpdate, next, spec.ThisUpdate.Add(spec.Validity/2)), nil
}
