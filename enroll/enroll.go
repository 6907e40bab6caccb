// Package enroll is the one place where a request for a certificate, a CRL
// or a token is checked against the CA's policy, given its job id and
// serial number, recorded, and published to the signing queue. Every
// front-end (ACME, EST, the CLI, batch) goes through it, so they all obey
// the same rules.
//
// Who may have which names. Every Request carries a Principal: the
// front-end's kind (Frontend: acme, est, scep, cmp, cli, batch, serve),
// the label or ACME account it asked under, and who authenticated (a
// user name or a client certificate). Its Names, a NamePolicy, are
// checked like the profile's policy, on the certificate the profile would
// make: a name they do not grant is refused with a NameError
// (errors.Is(err, ErrNotGranted)), which each front-end answers in its
// own form (EST 403, ACME rejectedIdentifier); a request without a
// principal is refused (ErrNoPrincipal). ACME's names are the order's
// authorized identifiers (ExactNames); EST, SCEP and CMP labels and users
// carry NamePolicy grants (the schema is documented on NamePolicy); the
// local operator (CLI, batch) may have any name the profile allows
// (Operator). The principal is recorded with the job and, through the
// store, with the certificate (store.Origin), so a renewal can be
// allowed only through the front-end, label and principal that obtained
// it.
package enroll

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
)

// ErrPending is returned by Wait when the job has no result yet.
var ErrPending = errors.New("the request is still being processed")

// Request is one thing to sign.
type Request struct {
	// Kind is jobspec.KindIssue (the default) or KindCRL.
	Kind    string
	Profile string
	Vars    map[string]any
	// CSR (PEM or DER) or PublicKey (SubjectPublicKeyInfo, PEM or DER).
	CSR       []byte
	PublicKey []byte
	// CRL options, for KindCRL.
	CRL ca.CRLOptions
	// OCSP is what to sign, for KindOCSP (decided by the ocsp front-end).
	OCSP *jobspec.OCSP
	// Key is the caller's idempotency key (an ACME order id, an EST
	// request hash, a batch line id): the same key gives the same job and,
	// in the end, the same certificate.
	Key string
	// Class is queue.ClassInteractive (default) or queue.ClassBatch.
	Class     string
	RequestID string
	// Principal is who asks. A certificate is issued only for names its
	// Names grant (ErrNoPrincipal without one); the store records it as
	// the job's and the certificate's Origin.
	Principal Principal
}

// Result is how a job ended.
type Result struct {
	JobID string
	State string // store.JobDone or store.JobFailed
	Error string
	Cert  *store.Cert // for issue jobs
	DER   []byte      // the signed object: certificate or CRL
}

// Publisher is the part of the queue enroll needs.
type Publisher interface {
	PublishJob(ctx context.Context, job queue.Job) error
}

// Service submits requests for one CA.
type Service struct {
	CA    *ca.CA
	Queue Publisher
	// Observer, when set, is told of each new job (metrics).
	Observer Observer
	// OnCert, when set, is told of each certificate recorded (the OCSP
	// responder pre-signs its response); it must not block.
	OnCert func(*store.Cert)
	// OCSPURL, when set, fills the ocsp_url variable that an issue
	// request's profile declares and the caller left unset (withOCSPURL).
	OCSPURL string

	store     store.Store
	jobs      store.JobStore
	caName    string
	mu        sync.Mutex
	waiters   map[string][]chan *Result
	recording [64]sync.Mutex          // see lockJob
	sweep     atomic.Pointer[sweeper] // while Sweep runs
	approvals approvals               // see checkedCert
}

// New returns the enrollment service of a CA. The CA's store must be a
// JobStore (the embedded bbolt store is).
func New(c *ca.CA, pub Publisher) (*Service, error) {
	st, err := c.Store()
	if err != nil {
		return nil, err
	}
	js, ok := st.(store.JobStore)
	if !ok {
		return nil, errors.New("enroll: the CA's store cannot keep jobs")
	}
	return &Service{CA: c, Queue: pub, store: st, jobs: js, caName: QueueName(c), waiters: map[string][]chan *Result{}}, nil
}

// QueueName is the CA's name in queue subjects: its directory name with
// anything but [A-Za-z0-9_-] replaced.
func QueueName(c *ca.CA) string {
	var b strings.Builder
	for _, r := range c.Name() {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 || b.Len() > queue.MaxCANameLen {
		sum := sha256.Sum256([]byte(c.Dir))
		return "ca-" + hex.EncodeToString(sum[:8])
	}
	return b.String()
}

// JobID derives a job id from the CA and the idempotency key.
func JobID(caName, key string) string {
	sum := sha256.Sum256([]byte(caName + "\x00" + key))
	return "j" + hex.EncodeToString(sum[:16])
}

// Submit checks a request against the profile's policy, records it with a
// reserved serial number, and publishes it. A request the policy refuses
// never reaches the queue. Submitting the same key again returns the same
// job id (and republishes it if it is still queued, which the queue
// de-duplicates).
func (s *Service) Submit(ctx context.Context, r Request) (string, error) {
	if r.Key == "" {
		return "", errors.New("enroll: an idempotency key is required")
	}
	if strings.Contains(r.Key, attemptMark) {
		// Else a caller's key could take the job id of another key's
		// later attempt, and that retry would fail as a reused key.
		return "", fmt.Errorf("enroll: idempotency key %q: %q is kept for the retries of a request", r.Key, attemptMark)
	}
	if r.Kind == "" {
		r.Kind = jobspec.KindIssue
	}
	if r.Class == "" {
		r.Class = queue.ClassInteractive
	}
	if !queue.ValidClass(r.Class) {
		return "", fmt.Errorf("enroll: unknown job class %q", r.Class)
	}
	id := JobID(s.caName, r.Key)
	var payload any
	var approval *ca.Prepared // an issue job's, kept for the recorder (approvals)
	rec := &store.Job{ID: id, Key: r.Key, Kind: r.Kind, Class: r.Class, State: store.JobQueued, Created: time.Now().UTC()}
	if r.Principal.Frontend != "" {
		rec.Origin = r.Principal.Origin()
	}
	switch r.Kind {
	case jobspec.KindIssue:
		if !r.Principal.Frontend.Valid() {
			return "", ErrNoPrincipal
		}
		r.Vars = s.withOCSPURL(r)
		p, prep, err := s.checkIssue(r)
		if err != nil {
			return "", err
		}
		rec.Profile, rec.RequestHash = r.Profile, requestHash(r.Kind, p.Profile, p.Vars, p.CSR, p.PublicKey)
		key, aid, old, err := s.attempt(r.Key, rec.RequestHash)
		if err != nil {
			return "", err
		}
		if old != nil {
			return aid, s.republish(ctx, old, r, p)
		}
		id, rec.ID, rec.Key = aid, aid, key
		serial, err := ca.NewSerial()
		if err != nil {
			return "", err
		}
		p.Serial, rec.Serial = store.FormatSerial(serial), store.FormatSerial(serial)
		payload = p
		s.CA.AssignShard(prep, serial)
		approval = prep
	case jobspec.KindCRL:
		if old, err := s.jobs.Job(id); err == nil {
			return id, s.republish(ctx, old, r, nil)
		}
		req, err := s.CA.CRLRequest(r.CRL)
		if err != nil {
			return "", err
		}
		rec.RequestHash = requestHash(r.Kind, req.Version, nil, nil, nil)
		payload = req
	case jobspec.KindOCSP:
		if old, err := s.jobs.Job(id); err == nil {
			return id, s.republish(ctx, old, r, nil)
		}
		req, err := s.checkOCSP(r)
		if err != nil {
			return "", err
		}
		rec.RequestHash = requestHash(r.Kind, req.Version, nil, nil, nil)
		payload = req
	default:
		return "", fmt.Errorf("enroll: unknown job kind %q", r.Kind)
	}
	data, err := jobspec.Encode(payload)
	if err != nil {
		return "", err
	}
	rec.Payload = data
	existing, created, err := s.jobs.CreateJob(rec)
	if err != nil {
		return "", err
	}
	if !created {
		return existing.ID, nil // a concurrent submit with the same key won
	}
	if approval != nil {
		s.approvals.remember(id, approval)
	}
	return id, s.publish(ctx, id, r, data)
}

// checkIssue parses the subject key and runs the profile's policy; it
// returns the job's payload and the certificate the policies approved.
func (s *Service) checkIssue(r Request) (*jobspec.Issue, *ca.Prepared, error) {
	p := &jobspec.Issue{Profile: r.Profile, Vars: r.Vars}
	req := ca.IssueRequest{Profile: r.Profile, Vars: r.Vars}
	switch {
	case len(r.CSR) > 0 && len(r.PublicKey) > 0:
		return nil, nil, errors.New("give a CSR or a public key, not both")
	case len(r.CSR) > 0:
		der, err := x509x.DecodeCSR(r.CSR)
		if err != nil {
			return nil, nil, err
		}
		if x509x.KeyCannotSign(der) {
			return s.checkStatement(der, p, req, r.Principal)
		}
		csr, err := x509x.ParseCertificateRequest(der)
		if err != nil {
			return nil, nil, err
		}
		req.CSR, p.CSR = csr, der
	case len(r.PublicKey) > 0:
		der, err := decodePublicKey(r.PublicKey)
		if err != nil {
			return nil, nil, err
		}
		pub, err := algo.ParsePKIX(der)
		if err != nil {
			return nil, nil, err
		}
		req.PublicKey, p.PublicKey = pub, der
	default:
		return nil, nil, errors.New("no subject key: give a CSR or a public key")
	}
	prep, err := s.approve(req, r.Principal)
	if err != nil {
		return nil, nil, err
	}
	return p, prep, nil
}

// prepare runs the profile's policy and then the principal's name policy
// on the certificate the profile would make.
func (s *Service) prepare(req ca.IssueRequest, who Principal) error {
	_, err := s.approve(req, who)
	return err
}

// approve is prepare returning the certificate both policies approved.
func (s *Service) approve(req ca.IssueRequest, who Principal) (*ca.Prepared, error) {
	prep, err := s.CA.Prepare(req)
	if err != nil {
		return nil, err
	}
	if err := who.Names.Check(prep.Template, who.ClientCert); err != nil {
		return nil, err
	}
	return prep, nil
}

// checkStatement accepts an RFC 9883 request for a key that cannot sign
// (ML-KEM): the signature certificate it names must be one this CA issued,
// valid, unrevoked and of the same subject. The key is then certified from
// its public key, with the request's names as variables, so the worker
// (which cannot reach the store) sees an ordinary public-key job.
func (s *Service) checkStatement(der []byte, p *jobspec.Issue, req ca.IssueRequest, who Principal) (*jobspec.Issue, *ca.Prepared, error) {
	csr, err := s.CA.CheckStatementRequest(der, nil, time.Now())
	if err != nil {
		return nil, nil, err
	}
	vars, err := s.CA.RequestVars(p.Profile, csr, p.Vars)
	if err != nil {
		return nil, nil, err
	}
	p.Vars, p.PublicKey = vars, csr.RawSubjectPublicKeyInfo
	req.Vars, req.PublicKey = vars, csr.PublicKey
	prep, err := s.approve(req, who)
	if err != nil {
		return nil, nil, err
	}
	return p, prep, nil
}

func (s *Service) publish(ctx context.Context, id string, r Request, payload []byte) error {
	err := s.send(ctx, id, r, payload, false)
	if err == nil && s.Observer != nil {
		s.Observer.JobSubmitted(r.Kind, r.Profile, r.Class)
	}
	return err
}

// send publishes a job; the request id comes from r or else from ctx (the
// front-end's request).
func (s *Service) send(ctx context.Context, id string, r Request, payload []byte, again bool) error {
	if r.RequestID == "" {
		r.RequestID = RequestID(ctx)
	}
	job := queue.Job{
		V: queue.JobVersion, ID: id, CA: s.caName, Kind: r.Kind, Class: r.Class,
		Submitted: time.Now().UTC(), RequestID: r.RequestID, Payload: payload, Republished: again,
	}
	p, ok := s.Queue.(seqPublisher)
	if !ok {
		return s.Queue.PublishJob(ctx, job)
	}
	at, err := p.PublishJobAt(ctx, job)
	s.published(id, at.Seq) // 0 when it failed: the sweeper publishes it later
	return err
}

// republish sends a still-queued job again: after a crash between
// recording and publishing, the retry of the client is what gets it
// signed. The queue drops the copy when the first is still there.
func (s *Service) republish(ctx context.Context, old *store.Job, r Request, _ *jobspec.Issue) error {
	if old.State != store.JobQueued {
		return nil
	}
	r.Class = old.Class
	// Marked as published again: beyond the duplicate window this may
	// be a second copy, and a worker checks for a result before it signs.
	return s.send(ctx, old.ID, r, old.Payload, true)
}

// maxAttempts bounds how often one request starts over after its job was
// dead-lettered.
const maxAttempts = 16

// attemptMark joins a request's key and the number of its attempt.
const attemptMark = "#attempt-"

// attemptKey is the idempotency key of a request's attempt n (from 1).
func attemptKey(key string, n int) string {
	if n == 1 {
		return key
	}
	return fmt.Sprintf("%s%s%d", key, attemptMark, n)
}

// attempt finds the job a request with idempotency key key belongs to:
// the key's own job, or, when that job was dead-lettered (it failed for
// want of a working signer, not because of the request), the job of the
// next attempt, under a key of its own, so that it has a new job id,
// serial and queue message. It returns the attempt's key and job id and
// the job already there (nil when there is none yet). A key whose job
// holds another request is refused.
func (s *Service) attempt(key, hash string) (string, string, *store.Job, error) {
	for n := 1; ; n++ {
		k := attemptKey(key, n)
		id := JobID(s.caName, k)
		old, err := s.jobs.Job(id)
		if errors.Is(err, store.ErrNotFound) {
			return k, id, nil, nil
		}
		if err != nil {
			return "", "", nil, err
		}
		if old.RequestHash != hash {
			return "", "", nil, fmt.Errorf("%w (key %q)", store.ErrKeyReused, key)
		}
		if old.State != store.JobFailed || !old.Retryable || n == maxAttempts {
			return k, id, old, nil
		}
	}
}

func requestHash(kind, profile string, vars map[string]any, csr, pub []byte) string {
	h := sha256.New()
	b, _ := json.Marshal(struct {
		K string         `json:"k"`
		P string         `json:"p"`
		V map[string]any `json:"v"`
		C []byte         `json:"c"`
		U []byte         `json:"u"`
	}{kind, profile, vars, csr, pub})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}
