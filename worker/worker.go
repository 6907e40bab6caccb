// Package worker signs the jobs of one CA's queue. Each worker goroutine
// owns one signer session (an HSM session or a file key) for its whole
// life, re-checks every job against the CA's profile policy, signs with the
// serial enroll reserved, publishes the result and only then acks.
package worker

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
)

// Options tune a pool of workers.
type Options struct {
	// Sessions is the number of signer sessions (default 1).
	Sessions int
	// PerSession is the number of worker goroutines sharing one session
	// (default 16): while one signs, the others fetch, check, publish and
	// wait for the queue, so that the session always has the next job
	// ready. With 4, a SoftHSM rsa-3072 session was busy 73% of the time;
	// with 16, 79%, and 32 added nothing.
	PerSession int
	// Rate caps signatures per second across the pool, so that batch work
	// never asks more of the HSM than it can do; 0 means no limit. A
	// throttled pool takes a job only when the one before it got its
	// turn to sign, so that it holds no more jobs than it can start.
	Rate float64
	// Keys unlocks the CA's keys.
	Keys    ca.KeyOptions
	Consume queue.ConsumeOptions
	Log     *slog.Logger
	// QueueName is the CA's name in queue subjects.
	QueueName string
	// Ready, when not nil, receives nil once every session is open and
	// the consumers are ready, or the error that stopped the start.
	Ready chan<- error
	// Observer, when set, is told of each signature (metrics).
	Observer Observer
}

// Run consumes and signs jobs until ctx is done, then finishes the jobs in
// hand and returns.
func Run(ctx context.Context, c *ca.CA, q *queue.Queue, o Options) error {
	if o.Sessions < 1 {
		o.Sessions = 1
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ready := func(err error) error {
		if o.Ready != nil {
			o.Ready <- err
		}
		return err
	}
	var th *throttle
	if o.Rate > 0 {
		th = &throttle{lim: rate.NewLimiter(rate.Limit(o.Rate), 1), turn: make(chan struct{}, 1)}
		if o.Consume.FetchBatch == 0 {
			o.Consume.FetchBatch = throttledFetch(o.Rate, o.Consume.AckWait)
		}
	}
	// Workers sign in as the worker user, who alone may publish results,
	// even in the process that runs the embedded server.
	wq, err := q.WorkerQueue(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ready(nil)
		}
		return ready(err)
	}
	if wq != q {
		defer wq.Close()
		q = wq
	}
	cons, err := q.Jobs(ctx, o.QueueName, o.Consume)
	if err != nil {
		if ctx.Err() != nil {
			return ready(nil) // stopped while starting: not a failure
		}
		return ready(err)
	}
	defer cons.Close()
	// Open every session before taking work, so that a wrong PIN or a
	// missing key fails the start, not the first jobs.
	sessions := make([]*session, o.Sessions)
	for i := range sessions {
		s, err := openSession(c, o)
		if err != nil {
			for _, s := range sessions[:i] {
				s.close()
			}
			return ready(err)
		}
		sessions[i] = s
	}
	ready(nil)
	// Several goroutines share each session: while one waits for the
	// signer, the others parse, check policy and publish, so that the
	// pipeline keeps an HSM session busy. The signer holds its HSM
	// session only for the sign call itself.
	groups := make([]*group, len(sessions))
	for i, s := range sessions {
		groups[i] = &group{cur: s}
	}
	defer func() {
		for _, g := range groups {
			g.close()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, o.Sessions*o.perSession())
	for i, g := range groups {
		for j := 0; j < o.perSession(); j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &worker{id: i*o.perSession() + j, ca: c, q: q, cons: cons, th: th, o: o, s: g.current(), g: g}
				if err := w.loop(ctx); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// throttle is a pool's rate limit. The goroutine whose turn it is takes
// the next job and waits for the limiter; the others wait for the turn
// without a job, so that the pool never holds jobs only to make them wait
// (they would be taken from workers that could sign them sooner).
type throttle struct {
	lim  *rate.Limiter
	turn chan struct{} // holds a token while a goroutine has the turn
}

// throttledFetch is how many jobs a throttled pool fetches at a time:
// what the limiter admits in a quarter of AckWait, at least one.
func throttledFetch(perSecond float64, ackWait time.Duration) int {
	if ackWait == 0 {
		ackWait = queue.DefaultAckWait
	}
	n := int(perSecond * ackWait.Seconds() / 4)
	return max(1, min(n, queue.DefaultFetchBatch))
}

func (o Options) perSession() int {
	if o.PerSession < 1 {
		return 16
	}
	return o.PerSession
}

// group is one worker session and the goroutines that share it. When
// signing fails, the first of them to see it reopens the session for all
// (the others take the new one up at their next job), so that a session
// stays one session whatever the failures: --workers keeps bounding the
// load on the signer, and the sessions given up are closed at once.
type group struct {
	mu  sync.Mutex
	cur *session
}

func (g *group) current() *session {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cur
}

// reopen replaces failed, unless a sibling already did, and returns the
// session to use. When a new one cannot be opened, the failed one stays,
// to be reopened at the next failure. The session given up is closed
// after the group's lock is released: closing waits for a signature in
// progress on it, which on a hung HSM may take long, and the siblings
// must not wait for that to take up the new session.
func (g *group) reopen(failed *session, open func() (*session, error), log func(error)) *session {
	g.mu.Lock()
	if g.cur != failed {
		defer g.mu.Unlock()
		return g.cur
	}
	s, err := open()
	if err != nil {
		defer g.mu.Unlock()
		log(err)
		return g.cur
	}
	g.cur = s
	g.mu.Unlock()
	failed.close() // a sibling signing on it then gets errSessionClosed and moves over
	return s
}

func (g *group) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cur.close()
}

// session is one signer session and the CA version it signs for.
type session struct {
	iss     x509x.Issuer
	closer  io.Closer
	version string
	signer  string // the signer's name in metrics
	gate    *gate
}

func openSession(c *ca.CA, o Options) (*session, error) {
	name, _, err := c.Version("")
	if err != nil {
		return nil, err
	}
	iss, closer, err := c.Issuer(name, o.Keys)
	if err != nil {
		return nil, err
	}
	label := signerLabel(c, name, o.Keys)
	// The goroutines sharing the session take turns at its signer, so
	// that a session signs one thing at a time, as an HSM session does:
	// an HSM signer would otherwise spread them over its token's session
	// pool, and --workers would no longer bound the load on the HSM.
	g := &gate{busy: func(time.Duration) {}}
	if o.Observer != nil {
		g.busy = func(d time.Duration) { o.Observer.SignerBusy(label, d) }
	}
	iss.Signer = newSessionSigner(iss.Signer, g)
	if iss.AltSigner != nil {
		iss.AltSigner = newSessionSigner(iss.AltSigner, g)
	}
	return &session{iss: iss, closer: closer, version: name, signer: label, gate: g}, nil
}

// gate is what a session's signers share: the turn to sign, whether the
// session is closed, and where the time spent signing is reported.
type gate struct {
	mu     sync.Mutex
	closed bool // under mu
	busy   func(time.Duration)
}

// sessionSigner is a signer that one worker session's goroutines share.
// It reports how long each signature held the session: the share of time
// a session is busy tells whether the queue keeps the signer fed.
//
// A signer that signs in batches (an HSM's: algo.BatchSigner) gets the
// signatures that wait for the session all at once: the goroutine whose
// turn it is signs its own and those queued behind it in one batch, and
// the others find theirs done when their turn comes. Each call into the
// token costs a wait for the Go scheduler on the way back, and the
// session would sit idle for it between signatures.
type sessionSigner struct {
	algo.Signer
	*gate
	queue *signQueue // nil: not a batch signer
}

func newSessionSigner(s algo.Signer, g *gate) sessionSigner {
	ss := sessionSigner{Signer: s, gate: g}
	if _, ok := s.(algo.BatchSigner); ok {
		ss.queue = &signQueue{}
	}
	return ss
}

var errSessionClosed = errors.New("worker: signer session closed")

func (s sessionSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.queue != nil {
		return s.signQueued(digest, opts)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errSessionClosed
	}
	start := time.Now()
	defer func() { s.busy(time.Since(start)) }()
	return s.Signer.Sign(rand, digest, opts)
}

// maxBatch bounds the signatures of one batch.
const maxBatch = 32

func (s sessionSigner) signQueued(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c := &signCall{req: algo.SignRequest{Digest: digest, Opts: opts}}
	s.queue.add(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Sign what waits, oldest first, until c is signed: at once when an
	// earlier turn took it, else in one of this turn's batches.
	for !c.done {
		s.signBatch(s.queue.take(maxBatch))
	}
	return c.req.Sig, c.req.Err
}

// signBatch signs calls taken from the queue and marks them done, with an
// error if the signer panicked, so that no caller waits for them forever.
func (s sessionSigner) signBatch(calls []*signCall) {
	reqs := make([]algo.SignRequest, len(calls))
	for i, cl := range calls {
		reqs[i] = cl.req
	}
	finished := false
	defer func() {
		for i, cl := range calls {
			if !finished {
				reqs[i].Sig, reqs[i].Err = nil, errors.New("worker: the signer failed during a batch")
			}
			cl.req, cl.done = reqs[i], true // read by its caller under s.mu
		}
	}()
	if s.closed {
		for i := range reqs {
			reqs[i].Err = errSessionClosed
		}
	} else {
		start := time.Now()
		algo.SignBatch(s.Signer, reqs)
		s.busy(time.Since(start))
	}
	finished = true
}

// signCall is one signature waiting in a signQueue.
type signCall struct {
	req  algo.SignRequest
	done bool // under the gate's mu
}

// signQueue holds the signatures waiting for a session, oldest first.
type signQueue struct {
	mu    sync.Mutex
	calls []*signCall
}

func (q *signQueue) add(c *signCall) {
	q.mu.Lock()
	q.calls = append(q.calls, c)
	q.mu.Unlock()
}

// take removes and returns up to n of the oldest calls.
func (q *signQueue) take(n int) []*signCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.calls))
	out := q.calls[:n:n]
	q.calls = append([]*signCall(nil), q.calls[n:]...)
	return out
}

// close waits for a signature in progress before it closes the signer:
// SoftHSM, for one, crashes when a session closes under C_Sign.
func (s *session) close() {
	if s == nil {
		return
	}
	if g := s.gate; g != nil {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.closed = true
	}
	if s.closer != nil {
		s.closer.Close()
	}
}

type worker struct {
	id      int
	ca      *ca.CA
	q       *queue.Queue
	cons    *queue.JobConsumer
	th      *throttle // nil: no rate limit
	hasTurn bool
	o       Options
	s       *session
	g       *group        // nil for a Local worker, which owns its session
	waited  time.Duration // for the limiter, in the current job
	// delegated is the CA's delegated OCSP responder, once opened.
	delegated *delegated
}

func (w *worker) loop(ctx context.Context) error {
	for {
		if w.th != nil {
			select {
			case w.th.turn <- struct{}{}:
				w.hasTurn = true
			case <-ctx.Done():
				return nil
			}
		}
		d, err := w.cons.Next(ctx)
		if err != nil {
			w.passTurn()
			if ctx.Err() != nil || errors.Is(err, queue.ErrClosed) {
				return nil
			}
			return err
		}
		// A job in hand is finished even when ctx ends meanwhile: SIGTERM
		// stops the taking of work, not the work taken.
		w.handle(context.WithoutCancel(ctx), d)
		w.passTurn() // a job refused or settled before it reached the limiter
	}
}

// passTurn lets the next goroutine of a throttled pool take a job.
func (w *worker) passTurn() {
	if w.hasTurn {
		w.hasTurn = false
		<-w.th.turn
	}
}

// permanent marks errors that no retry can fix.
type permanent struct{ error }

// result turns the outcome of signing into a result message; transient
// is true when the job should be retried instead.
func result(job queue.Job, payload []byte, err error) (res queue.Result, transient bool) {
	res = queue.Result{V: queue.ResultVersion, JobID: job.ID, CA: job.CA, Kind: job.Kind, Finished: time.Now().UTC(), RequestID: job.RequestID}
	var perm permanent
	switch {
	case err == nil:
		res.OK, res.Payload = true, payload
	case errors.As(err, &perm):
		res.Error, res.Permanent = perm.Error(), true
	default:
		res.Error = err.Error()
		return res, true
	}
	return res, false
}

func (w *worker) handle(ctx context.Context, d *queue.Delivery) {
	log := w.o.Log.With("job", d.Job.ID, "kind", d.Job.Kind, "request_id", d.Job.RequestID, "worker", w.id)
	if w.g != nil {
		w.s = w.g.current()
	}
	payload, err := w.signObserved(ctx, d.Job)
	if w.g != nil && errors.Is(err, errSessionClosed) {
		// A sibling reopened the session while this job was on its way
		// to the old one: sign on the new one.
		w.s = w.g.current()
		payload, err = w.signObserved(ctx, d.Job)
	}
	res, transient := result(d.Job, payload, err)
	switch {
	case !transient && !res.OK:
		log.Info("job refused", "error", res.Error)
	case transient:
		// A transient signer failure: reopen the session, retry later.
		log.Warn("signing failed; will retry", "error", err, "delivery", d.NumDelivered)
		w.reopen()
		if rerr := d.Retry(ctx, err, backoff(d.NumDelivered)); rerr != nil {
			log.Error("nak failed", "error", rerr)
		}
		return
	}
	if err := w.q.PublishResult(ctx, res); err != nil {
		// Not acked: the job comes back after AckWait and is signed again
		// with the same serial; the recorder keeps the first result.
		log.Error("publishing the result failed", "error", err)
		d.Nak(time.Second)
		return
	}
	if err := d.Ack(); err != nil {
		log.Warn("ack failed (the job will be redelivered and find its result)", "error", err)
		return
	}
	if res.OK {
		log.Debug("job signed")
	}
}

func (w *worker) reopen() {
	open := func() (*session, error) { return openSession(w.ca, w.o) }
	logErr := func(err error) { w.o.Log.Error("reopening the signer session failed", "error", err) }
	if w.g != nil {
		w.s = w.g.reopen(w.s, open, logErr)
		return
	}
	s, err := open()
	if err != nil {
		logErr(err)
		return
	}
	w.s.close()
	w.s = s
}

func backoff(delivered uint64) time.Duration {
	d := 200 * time.Millisecond << min(delivered, 6)
	return min(d, 10*time.Second)
}

func (w *worker) sign(ctx context.Context, job queue.Job) ([]byte, error) {
	switch job.Kind {
	case jobspec.KindIssue:
		if jobspec.IsKeygen(job.Payload) {
			return w.keygen(ctx, job)
		}
		return w.issue(ctx, job)
	case jobspec.KindCRL:
		return w.crl(ctx, job)
	case jobspec.KindCOSE:
		return w.cose(ctx, job)
	case jobspec.KindOCSP:
		return w.ocsp(ctx, job)
	}
	return nil, permanent{fmt.Errorf("this worker does not sign %q jobs", job.Kind)}
}

// wait waits for the limiter before a signature, then passes the turn:
// the job in hand waits for its signer session from here on.
func (w *worker) wait(ctx context.Context) error {
	if w.th == nil {
		return nil
	}
	start := time.Now()
	defer func() { w.waited += time.Since(start) }()
	defer w.passTurn()
	return w.th.lim.Wait(ctx)
}

func (w *worker) issue(ctx context.Context, job queue.Job) ([]byte, error) {
	var spec jobspec.Issue
	if err := jobspec.Decode(job.Payload, &spec); err != nil {
		return nil, permanent{err}
	}
	req := ca.IssueRequest{Profile: spec.Profile, Vars: spec.Vars}
	switch {
	case len(spec.CSR) > 0:
		// The CSR's signature (proof of possession) was checked by enroll,
		// the only publisher that holds the queue's credentials; the worker
		// re-checks the policy below, not the signature, which would cost
		// as much as signing the certificate.
		csr, err := x509x.ParseCertificateRequestUnverified(spec.CSR)
		if err != nil {
			return nil, permanent{err}
		}
		req.CSR = csr
	case len(spec.PublicKey) > 0:
		pub, err := algo.ParsePKIX(spec.PublicKey)
		if err != nil {
			return nil, permanent{err}
		}
		req.PublicKey = pub
	default:
		return nil, permanent{errors.New("job has no subject key")}
	}
	serial, err := store.ParseSerial(spec.Serial)
	if err != nil {
		return nil, permanent{fmt.Errorf("job has no valid reserved serial: %v", err)}
	}
	req.Serial = serial
	// The policy is checked again here: a job that reached the stream by
	// another route than enroll is refused, not signed.
	p, err := w.ca.Prepare(req)
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
	return jobspec.Encode(jobspec.IssueResult{DER: der, CAVersion: w.s.version})
}

func (w *worker) crl(ctx context.Context, job queue.Job) ([]byte, error) {
	var spec jobspec.CRL
	if err := jobspec.Decode(job.Payload, &spec); err != nil {
		return nil, permanent{err}
	}
	iss := w.s.iss
	if spec.Version != "" && spec.Version != w.s.version {
		// Another version's CRL: open its key for this job only.
		other, closer, err := w.ca.Issuer(spec.Version, w.o.Keys)
		if err != nil {
			return nil, err
		}
		defer closer.Close()
		iss = other
	}
	if err := w.wait(ctx); err != nil {
		return nil, err
	}
	der, err := ca.SignCRL(&spec, iss)
	if err != nil {
		return nil, err
	}
	if _, err := x509.ParseRevocationList(der); err != nil {
		return nil, permanent{err}
	}
	return jobspec.Encode(jobspec.CRLResult{DER: der, Version: spec.Version})
}
