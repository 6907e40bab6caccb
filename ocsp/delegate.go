package ocsp

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/x509x"
)

// The delegated responder's certificate is short-lived (it carries
// id-pkix-ocsp-nocheck, so its life is what bounds a compromise): serve
// renews it, with the same key, when a third of its life is left.

func (r *Responder) renewLoop(ctx context.Context, a *authority) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := r.renewIfDue(ctx, a); err != nil && ctx.Err() == nil {
			r.o.Log.Error("OCSP: renewing the delegated responder failed", "ca", a.Name, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RenewDue reports whether a responder certificate is in the last third
// of its life.
func RenewDue(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return !now.Before(cert.NotAfter.Add(-life / 3))
}

func (r *Responder) renewIfDue(ctx context.Context, a *authority) error {
	meta, cert, err := a.CA.Responder()
	if errors.Is(err, ca.ErrNoResponder) {
		return nil
	}
	if err != nil {
		return err
	}
	if !RenewDue(cert, time.Now()) {
		return nil
	}
	alg, err := x509x.KeyAlgorithm(cert)
	if err != nil {
		return err
	}
	der, err := IssueResponder(ctx, a.Enroll, alg, cert.RawSubjectPublicKeyInfo, cert.Subject.CommonName, cert.NotAfter.Sub(cert.NotBefore))
	if err != nil {
		return err
	}
	if err := a.CA.SaveResponder(meta.Key, der); err != nil {
		return err
	}
	a.refreshSigner()
	r.o.Log.Info("OCSP: delegated responder renewed", "ca", a.Name)
	return nil
}

// IssueResponder asks the CA, through the queue, for a delegated
// responder certificate for the public key spki (DER), valid for life.
func IssueResponder(ctx context.Context, svc *enroll.Service, alg algo.Algorithm, spki []byte, cn string, life time.Duration) ([]byte, error) {
	if err := svc.CA.InstallResponderProfile(alg); err != nil {
		return nil, err
	}
	vars := map[string]any{"cn": cn, "validity": fmt.Sprintf("%dh", max(int(life.Hours()), 1))}
	key := fmt.Sprintf("ocsp-responder-%d", time.Now().UnixNano())
	id, err := svc.Submit(ctx, enroll.Request{Kind: jobspec.KindIssue, Profile: ca.ResponderProfileRef, PublicKey: spki, Vars: vars, Key: key,
		Principal: enroll.Operator(enroll.FrontendServe, "ocsp-responder-renewal")})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := svc.Wait(wctx, id)
	if err != nil {
		return nil, err
	}
	if err := res.Err(); err != nil {
		return nil, err
	}
	return res.DER, nil
}
