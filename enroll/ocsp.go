package enroll

import (
	"errors"
	"fmt"

	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// OCSP jobs: the ocsp front-end decides what each certificate's status
// is (from the store) and asks for signed responses; the recorder checks
// every response against its job before it keeps it.

func (s *Service) checkOCSP(r Request) (*jobspec.OCSP, error) {
	if r.OCSP == nil {
		return nil, errors.New("enroll: an OCSP job needs its request")
	}
	if err := r.OCSP.Check(); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if _, err := s.CA.Certificate(r.OCSP.Version); err != nil {
		return nil, err
	}
	if _, ok := s.store.(store.OCSPStore); !ok && !r.OCSP.Together {
		return nil, errors.New("enroll: the CA's store cannot keep OCSP responses")
	}
	return r.OCSP, nil
}

// recordOCSP keeps the responses of an OCSP job: in the store, one per
// certificate, or, for a response answering several CertIDs or a nonce,
// as the job's result only. A result whose responses do not verify under
// the CA (or its delegated responder), or do not say exactly what the job
// asked, is forged: refused, and the job waits for its genuine result.
func (s *Service) recordOCSP(j *store.Job, r queue.Result) error {
	var req jobspec.OCSP
	if err := jobspec.Decode(j.Payload, &req); err != nil {
		return s.fail(j, r, fmt.Errorf("the job's stored payload: %v", err))
	}
	var res jobspec.OCSPResult
	if err := jobspec.Decode(r.Payload, &res); err != nil {
		return forged(j, "the result does not decode: %v", err)
	}
	issuer, err := s.CA.Certificate(req.Version)
	if err != nil {
		return s.fail(j, r, err)
	}
	if err := ca.CheckOCSP(&req, issuer, res.Responses, !jobspec.Vouched(r.Payload)); err != nil {
		return forged(j, "%v", err)
	}
	if req.Together {
		return s.finish(j, r, store.JobDone, "", res.Responses[0], nil)
	}
	os, ok := s.store.(store.OCSPStore)
	if !ok {
		return s.fail(j, r, errors.New("the CA's store cannot keep OCSP responses"))
	}
	next := req.ThisUpdate.Add(req.Validity)
	recs := make([]*store.OCSPResponse, len(req.Entries))
	for i, e := range req.Entries {
		recs[i] = &store.OCSPResponse{Serial: e.Serial, Hash: req.Hash, Status: e.Status,
			ThisUpdate: req.ThisUpdate, NextUpdate: next, DER: res.Responses[i]}
	}
	if err := os.PutOCSP(recs); err != nil {
		return err
	}
	return s.finish(j, r, store.JobDone, "", nil, nil)
}

// withOCSPURL puts s.OCSPURL into the ocsp_url variable of an issue
// request whose profile declares that variable without a default and
// whose caller left it unset (serve's --ocsp-url).
func (s *Service) withOCSPURL(r Request) map[string]any {
	if s.OCSPURL == "" {
		return r.Vars
	}
	if _, set := r.Vars["ocsp_url"]; set {
		return r.Vars
	}
	p, err := s.CA.Profile(r.Profile)
	if err != nil {
		return r.Vars // Submit reports the unknown profile
	}
	v := p.Var("ocsp_url")
	if v == nil || v.Default != nil {
		return r.Vars
	}
	vars := make(map[string]any, len(r.Vars)+1)
	for k, val := range r.Vars {
		vars[k] = val
	}
	vars["ocsp_url"] = s.OCSPURL
	return vars
}
