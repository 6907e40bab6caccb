package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// ResponderOptions shape a delegated OCSP responder.
type ResponderOptions struct {
	// Algorithm of the responder's key; the CA key's algorithm when empty.
	Algorithm algo.Algorithm
	// Key is where the key goes: a file in <ca-dir>/ocsp/ (Passphrase
	// encrypts it) or the HSM of HSMConfig under Label.
	Key ca.KeySpec
	// Days of validity: short, since clients do not check a responder
	// with id-pkix-ocsp-nocheck for revocation.
	Days int
}

// IssueResponder makes the CA's delegated OCSP responder: a new key, its
// certificate issued through the CA's pipeline (the running server's
// queue, or in process) with profile ocsp/responder, installed in
// <ca-dir>/ocsp/ for the workers, which sign with it from then on.
func IssueResponder(ctx context.Context, p Pipeline, c *ca.CA, o ResponderOptions) (*x509.Certificate, error) {
	if o.Days < 1 || o.Days > 90 {
		return nil, errors.New("a delegated responder is valid for 1 to 90 days")
	}
	caCert, err := c.Certificate("")
	if err != nil {
		return nil, err
	}
	if o.Algorithm == "" {
		if o.Algorithm, err = x509x.KeyAlgorithm(caCert); err != nil {
			return nil, err
		}
	}
	if err := c.InstallResponderProfile(o.Algorithm); err != nil {
		return nil, err
	}
	key, signer, err := c.CreateResponderKey(o.Algorithm, o.Key)
	if err != nil {
		return nil, err
	}
	defer signer.Close()
	spki, err := algo.MarshalPKIX(signer.Public())
	if err != nil {
		return nil, err
	}
	cn := caCert.Subject.CommonName + " OCSP Responder"
	if len(cn) > 64 {
		cn = cn[:64]
	}
	st, err := p.Submit(ctx, SubmitRequest{Profile: ca.ResponderProfileRef, PublicKey: spki,
		Vars: map[string]any{"cn": cn, "validity": fmt.Sprintf("%dh", o.Days*24)},
		Key:  fmt.Sprintf("ocsp-responder-%d", time.Now().UnixNano()), Wait: 2 * time.Minute})
	if err != nil {
		return nil, err
	}
	switch st.State {
	case store.JobFailed:
		return nil, errors.New(st.Error)
	case store.JobQueued:
		return nil, fmt.Errorf("job %s is still queued: run the command again once the server caught up", st.JobID)
	}
	if err := c.SaveResponder(key, st.DER); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(st.DER)
}
