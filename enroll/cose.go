package enroll

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/qpki/qpki/pkg/audit"
	"io"
	"sync"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cose"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
)

// SubmitCOSE checks a request for a COSE message or CWT to be signed with
// the CA's active key, records it and publishes it; Wait returns the
// signed message in Result.DER. For a CWT it fixes iat (now) and cti (16
// random bytes) when the request leaves them unset, so that a re-sign after
// a crash gives the same token. The same key with the same request returns
// the same job; with another request, store.ErrKeyReused.
func (s *Service) SubmitCOSE(ctx context.Context, key string, req cose.SignRequest, class string) (string, error) {
	if key == "" {
		return "", errors.New("enroll: an idempotency key is required")
	}
	if class == "" {
		class = queue.ClassInteractive
	}
	if !queue.ValidClass(class) {
		return "", fmt.Errorf("enroll: unknown job class %q", class)
	}
	id := JobID(s.caName, key)
	hash, err := coseRequestHash(req)
	if err != nil {
		return "", err
	}
	r := Request{Kind: jobspec.KindCOSE, Key: key, Class: class}
	if old, err := s.jobs.Job(id); err == nil {
		if old.Kind != jobspec.KindCOSE || old.RequestHash != hash {
			return "", fmt.Errorf("%w (key %q)", store.ErrKeyReused, key)
		}
		return id, s.republish(ctx, old, r, nil)
	}
	spec, err := s.checkCOSE(req)
	if err != nil {
		return "", err
	}
	data, err := jobspec.Encode(spec)
	if err != nil {
		return "", err
	}
	rec := &store.Job{ID: id, Key: key, Kind: jobspec.KindCOSE, Class: class, State: store.JobQueued,
		Created: time.Now().UTC(), RequestHash: hash, Payload: data}
	existing, created, err := s.jobs.CreateJob(rec)
	if err != nil {
		return "", err
	}
	if !created {
		return existing.ID, nil
	}
	return id, s.publish(ctx, id, r, data)
}

// checkCOSE fixes what the worker must not choose (the CA version, a
// token's iat and cti) and runs the request through cose.Sign with a signer
// that holds only the CA's public key: every check the library makes on a
// request (type, claims, content type, the algorithm for the CA's key)
// runs here, before the queue, and no signature is made.
func (s *Service) checkCOSE(req cose.SignRequest) (*jobspec.COSE, error) {
	if len(req.KIDs) > 1 || len(req.Algorithms) > 1 {
		return nil, fmt.Errorf("%w: a queued COSE job has one signer, the CA", cose.ErrInvalidRequest)
	}
	name, v, err := s.CA.Version("")
	if err != nil {
		return nil, err
	}
	if v.Mode == "composite" {
		return nil, fmt.Errorf("%w: a composite CA key has no COSE algorithm; sign with a classical or ML-DSA CA", cose.ErrUnsupported)
	}
	chain, err := s.CA.Chain(name)
	if err != nil {
		return nil, err
	}
	if req.Type == cose.TypeCWT {
		c := cose.Claims{}
		if req.Claims != nil {
			c = *req.Claims
		}
		if c.IssuedAt.IsZero() {
			c.IssuedAt = time.Now().Truncate(time.Second)
		}
		if len(c.CTI) == 0 {
			c.CTI = make([]byte, 16)
			if _, err := io.ReadFull(rand.Reader, c.CTI); err != nil {
				return nil, err
			}
		}
		req.Claims = &c
	}
	spec := &jobspec.COSE{Version: name, Request: req}
	if err := spec.Check(chain[0]); err != nil {
		return nil, err
	}
	signer, err := s.caPublic(name, v.Keys, chain[0])
	if err != nil {
		return nil, err
	}
	// No chain: that the CA's certificate is for its key is the CA's own
	// invariant, and checking it costs a key parse per request.
	_, err = cose.Sign(rand.Reader, req, []cose.Signer{signer}, nil)
	if !errors.Is(err, errDryRun) {
		if err == nil {
			err = errors.New("enroll: the COSE request check made a signature")
		}
		return nil, err
	}
	return spec, nil
}

// caPublics caches the public half of each CA version's signing key: a
// post-quantum key costs more to parse than the rest of the check.
var caPublics sync.Map // CA dir + "\x00" + version → publicOnly

func (s *Service) caPublic(version string, keys []ca.Key, cert *x509.Certificate) (publicOnly, error) {
	key := s.CA.Dir + "\x00" + version
	if p, ok := caPublics.Load(key); ok {
		return p.(publicOnly), nil
	}
	pub, err := x509x.PublicKey(cert)
	if err != nil {
		return publicOnly{}, err
	}
	a, err := primaryAlgorithm(keys)
	if err != nil {
		return publicOnly{}, err
	}
	p := publicOnly{pub, a}
	caPublics.Store(key, p)
	return p, nil
}

// primaryAlgorithm is the algorithm of the key that signs: the only key,
// or the classical one of a Catalyst CA (whose certificate's key it is).
func primaryAlgorithm(keys []ca.Key) (algo.Algorithm, error) {
	for _, k := range keys {
		if k.ID != "pqc" {
			return algo.Parse(k.Algorithm)
		}
	}
	return "", errors.New("the CA version has no primary key")
}

var errDryRun = errors.New("dry run: no signature")

// publicOnly is a signer without a private key, for checking a request.
type publicOnly struct {
	pub crypto.PublicKey
	alg algo.Algorithm
}

func (p publicOnly) Public() crypto.PublicKey  { return p.pub }
func (p publicOnly) Algorithm() algo.Algorithm { return p.alg }
func (p publicOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errDryRun
}

// coseRequestHash identifies a COSE request as the caller sent it, before
// iat and cti are fixed, so that a retry with the same key matches.
func coseRequestHash(req cose.SignRequest) (string, error) {
	b, err := json.Marshal(struct {
		K string           `json:"k"`
		R cose.SignRequest `json:"r"`
	}{jobspec.KindCOSE, req})
	if err != nil {
		return "", fmt.Errorf("%w: %v", cose.ErrInvalidRequest, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// recordCOSE audits a signed message and stores it as its job's result.
func (s *Service) recordCOSE(j *store.Job, r queue.Result) error {
	var res jobspec.COSEResult
	if err := jobspec.Decode(r.Payload, &res); err != nil {
		return forged(j, "the result does not decode: %v", err)
	}
	if err := s.checkedCOSE(j, &res); err != nil {
		if IsForged(err) {
			return err
		}
		return s.fail(j, r, err)
	}
	if err := s.CA.Audit(audit.EventCOSE, coseFields(j, &res)); err != nil {
		return err
	}
	return s.finish(j, r, store.JobDone, "", res.Message, nil)
}

// coseFields describes a signed message for the audit log: what a token
// says about whom, and the message's hash; never its payload.
func coseFields(j *store.Job, res *jobspec.COSEResult) map[string]any {
	sum := sha256.Sum256(res.Message)
	f := map[string]any{"job_id": j.ID, "ca_version": res.CAVersion, "sha256": hex.EncodeToString(sum[:])}
	var spec jobspec.COSE
	if jobspec.Decode(j.Payload, &spec) != nil {
		return f
	}
	req := &spec.Request
	f["type"] = string(req.Type)
	if c := req.Claims; c != nil {
		f["iss"], f["sub"], f["aud"] = c.Issuer, c.Subject, c.Audience
		f["iat"], f["cti"] = c.IssuedAt, hex.EncodeToString(c.CTI)
		if !c.Expiry.IsZero() {
			f["exp"] = c.Expiry
		}
	} else {
		f["payload_bytes"] = len(req.Payload)
	}
	return f
}
