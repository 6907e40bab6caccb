package chaos

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"sort"
	"sync"
	"time"
)

// reqKind names a load client.
type reqKind string

const (
	kindACME   reqKind = "acme"
	kindEST    reqKind = "est"
	kindBatch  reqKind = "batch"
	kindRevoke reqKind = "revoke"
	kindCRL    reqKind = "crl"
)

// request is one client request under one idempotency key, with every
// answer it got across its retries.
type request struct {
	kind     reqKind
	id       string
	start    time.Time
	end      time.Time
	answered bool                           // a final answer came (a certificate, or a refusal)
	err      string                         // the refusal, or why no answer came
	retries  int                            // requests sent again after a lost or non-final answer
	certs    map[[32]byte]*x509.Certificate // distinct certificates delivered
}

// ledger records every request of the run, and when certificates were
// issued, for the checks and the table at the end.
type ledger struct {
	mu       sync.Mutex
	reqs     []*request
	byID     map[string]*request
	issued   []time.Time // first delivery of each issuance request
	revoked  map[string]bool
	problems []string
}

func newLedger() *ledger {
	return &ledger{byID: map[string]*request{}, revoked: map[string]bool{}}
}

func (l *ledger) begin(k reqKind, id string) *request {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &request{kind: k, id: id, start: time.Now(), certs: map[[32]byte]*x509.Certificate{}}
	if _, dup := l.byID[id]; dup {
		l.problems = append(l.problems, fmt.Sprintf("request id %s used twice by the harness", id))
	}
	l.byID[id] = r
	l.reqs = append(l.reqs, r)
	return r
}

func (l *ledger) retry(r *request) { l.mu.Lock(); r.retries++; l.mu.Unlock() }

// deliver records a certificate the client received for r (the first
// answer, or the same request asked again).
func (l *ledger) deliver(r *request, c *x509.Certificate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(r.certs) == 0 && (r.kind == kindACME || r.kind == kindEST) {
		l.issued = append(l.issued, time.Now())
	}
	r.certs[sha256.Sum256(c.Raw)] = c
}

// finish records r's final answer: err == nil for a certificate (or a
// revocation, a CRL), a refusal otherwise; noAnswer when the client gave
// up without one.
func (l *ledger) finish(r *request, err error, noAnswer bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !r.end.IsZero() {
		l.problems = append(l.problems, fmt.Sprintf("%s %s finished twice", r.kind, r.id))
		return
	}
	r.end = time.Now()
	r.answered = !noAnswer
	if err != nil {
		r.err = err.Error()
	}
}

func (l *ledger) markRevoked(serial string) {
	l.mu.Lock()
	l.revoked[serial] = true
	l.mu.Unlock()
}

func (l *ledger) problem(format string, args ...any) {
	l.mu.Lock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// firstIssuedAfter is the first issuance at or after t, if any.
func (l *ledger) firstIssuedAfter(t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.issued), func(i int) bool { return !l.issued[i].Before(t) })
	if i == len(l.issued) {
		return time.Time{}, false
	}
	return l.issued[i], true
}

// snapshot returns the requests (the caller must not change them).
func (l *ledger) snapshot() []*request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*request(nil), l.reqs...)
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return fmt.Sprintf("%x", sum[:])
}

// stallAfter is the longest time after t that an ACME or EST request in
// flight at t took to finish.
func (l *ledger) stallAfter(t time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d time.Duration
	for _, r := range l.reqs {
		if (r.kind == kindACME || r.kind == kindEST) && r.start.Before(t) && !r.end.IsZero() && r.end.After(t) {
			d = max(d, r.end.Sub(t))
		}
	}
	return d
}
