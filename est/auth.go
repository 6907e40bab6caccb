package est

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// authError is a failed authentication or authorization, with the status
// to answer.
type authError struct {
	code int
	msg  string
}

func (e *authError) Error() string { return e.msg }

func unauthorized(format string, args ...any) error {
	return &authError{http.StatusUnauthorized, fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &authError{http.StatusForbidden, fmt.Sprintf(format, args...)}
}

// principal is who made a request.
type principal struct {
	user   string             // HTTP Basic user, or ""
	cert   *x509.Certificate  // verified client certificate, or nil
	grants *enroll.NamePolicy // the user's own names
}

// enroll is the principal as enroll sees it: under label l, the label's
// name policy joined with the user's grants.
func (p *principal) enroll(label string, l *Label) enroll.Principal {
	return enroll.Principal{Frontend: enroll.FrontendEST, Label: label, User: p.user, ClientCert: p.cert, Names: l.Names.Join(p.grants)}
}

// id names the principal for keys and rate limits.
func (p *principal) id() string {
	return enroll.Principal{User: p.user, ClientCert: p.cert}.ID()
}

// errBusy refuses a password check when MaxPasswordChecks already run.
var errBusy = errors.New("too many password checks at once")

// basicAuth checks HTTP Basic credentials against est-users.json.
//
// Argon2id costs about 64 MiB and tens of milliseconds per check, on
// purpose. Two things keep that from ruining throughput or memory:
//   - a verified credential is cached for AuthCacheTTL under an HMAC (with
//     a per-process key) of the name, the password and the stored hash,
//     so a device's next requests skip the hash, and a password change or
//     removal takes effect at once; failures are never cached;
//   - at most Options.MaxPasswordChecks checks run at a time; a request
//     over that is refused at once (errBusy, 503), not queued, so a flood
//     of guesses cannot hold the memory or the goroutines.
type basicAuth struct {
	db   UserStore
	ttl  time.Duration
	max  int
	key  [32]byte
	sem  chan struct{}
	mu   sync.Mutex
	seen map[[32]byte]time.Time // credential MAC → expiry
	// dummy is hashed for unknown users, so that timing does not tell
	// which names exist.
	dummy string
}

func newBasicAuth(users UserStore, ttl time.Duration, max, checks int) (*basicAuth, error) {
	b := &basicAuth{db: users, ttl: ttl, max: max,
		sem: make(chan struct{}, checks), seen: map[[32]byte]time.Time{}}
	if _, err := rand.Read(b.key[:]); err != nil {
		return nil, err
	}
	dummy, err := HashPassword(b.key[:8])
	if err != nil {
		return nil, err
	}
	b.dummy = dummy
	return b, nil
}

func (b *basicAuth) mac(name, password, hash string) [32]byte {
	m := hmac.New(sha256.New, b.key[:])
	for _, s := range []string{name, password, hash} {
		fmt.Fprintf(m, "%d:%s", len(s), s)
	}
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// check verifies a user's password and returns the user.
func (b *basicAuth) check(name, password string) (User, error) {
	u, ok, err := b.db.Lookup(name)
	if err != nil {
		return User{}, fmt.Errorf("reading the EST users: %w", err)
	}
	if !ok {
		if _, err := b.verify(b.dummy, password); errors.Is(err, errBusy) {
			return User{}, err
		}
		return User{}, unauthorized("wrong user name or password")
	}
	key := b.mac(name, password, u.Hash)
	now := time.Now()
	if b.ttl > 0 {
		b.mu.Lock()
		exp, hit := b.seen[key]
		b.mu.Unlock()
		if hit && now.Before(exp) {
			return u, nil
		}
	}
	good, err := b.verify(u.Hash, password)
	if err != nil {
		return User{}, err
	}
	if !good {
		return User{}, unauthorized("wrong user name or password")
	}
	if b.ttl > 0 {
		b.remember(key, now.Add(b.ttl), now)
	}
	return u, nil
}

// verify runs one argon2id check, or refuses with errBusy when the
// bound is reached.
func (b *basicAuth) verify(hash, password string) (bool, error) {
	select {
	case b.sem <- struct{}{}:
	default:
		return false, errBusy
	}
	defer func() { <-b.sem }()
	return VerifyPassword(hash, []byte(password))
}

func (b *basicAuth) remember(key [32]byte, exp, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) >= b.max {
		for k, e := range b.seen {
			if now.After(e) {
				delete(b.seen, k)
			}
		}
		for k := range b.seen {
			if len(b.seen) < b.max {
				break
			}
			delete(b.seen, k)
		}
	}
	if b.max > 0 {
		b.seen[key] = exp
	}
}

// verifyClientCert checks the TLS client certificate against trust
// anchors, with the intermediates the client sent.
func (c *certCache) verifyClientCert(r *http.Request, anchors []*x509.Certificate) (*x509.Certificate, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, nil
	}
	leaf := r.TLS.PeerCertificates[0]
	if len(anchors) == 0 {
		return nil, forbidden("client certificates are not accepted here (no trust anchors configured)")
	}
	if err := clientAuthEKU(leaf); err != nil {
		return nil, err
	}
	now := time.Now()
	key := c.key(leaf, anchors)
	if c.seen(key, now) {
		return leaf, nil
	}
	if _, err := x509x.Verify(leaf, r.TLS.PeerCertificates[1:], anchors, now); err != nil {
		return nil, forbidden("the client certificate is not trusted: %v", err)
	}
	exp := now.Add(certCacheTTL)
	if leaf.NotAfter.Before(exp) {
		exp = leaf.NotAfter
	}
	c.remember(key, exp, now)
	return leaf, nil
}

// clientAuthEKU: a certificate authenticates a TLS client only when its
// extended key usage says so (clientAuth, or anyExtendedKeyUsage); a
// serverAuth-only certificate (an ACME one) does not.
func clientAuthEKU(c *x509.Certificate) error {
	if slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil
	}
	return forbidden("the client certificate (serial %s) has no clientAuth extended key usage: it cannot authenticate a TLS client", c.SerialNumber.Text(16))
}

// certCacheTTL is how long a client certificate that chained to a
// label's anchors is taken without checking the chain again: a device
// sends many requests on one keep-alive connection.
const certCacheTTL = time.Minute

// certCache remembers verified client certificates, by the certificate
// and the anchors it was verified against.
type certCache struct {
	mu sync.Mutex
	m  map[[32]byte]time.Time
}

func newCertCache() *certCache { return &certCache{m: map[[32]byte]time.Time{}} }

func (c *certCache) key(leaf *x509.Certificate, anchors []*x509.Certificate) [32]byte {
	h := sha256.New()
	h.Write(leaf.Raw)
	for _, a := range anchors {
		h.Write(a.Raw)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *certCache) seen(k [32]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.m[k]
	return ok && now.Before(exp)
}

func (c *certCache) remember(k [32]byte, exp, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= DefaultAuthCacheMax {
		for k, e := range c.m {
			if !now.Before(e) || len(c.m) >= DefaultAuthCacheMax {
				delete(c.m, k)
			}
		}
	}
	c.m[k] = exp
}

// caAnchors are the served CA's certificates, every version's chain, for
// checking the certificate being renewed.
func caAnchors(c *ca.CA) (roots, intermediates []*x509.Certificate, err error) {
	for _, v := range c.Meta.VersionNames() {
		chain, err := c.Chain(v)
		if err != nil {
			continue // a version without a certificate yet
		}
		roots = append(roots, chain[len(chain)-1])
		intermediates = append(intermediates, chain[:len(chain)-1]...)
	}
	if len(roots) == 0 {
		return nil, nil, errors.New("the CA has no certificate")
	}
	return roots, intermediates, nil
}

// verifyRenewal checks the certificate being renewed: the CA issued it
// under the profile the renewal asks for, it authenticates TLS clients,
// it has not expired, its record is in the store and it is not revoked.
// It returns the certificate and its record.
func verifyRenewal(r *http.Request, c *ca.CA, st store.Store, profile string) (*x509.Certificate, *store.Cert, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, nil, unauthorized("simplereenroll needs the certificate being renewed as the TLS client certificate")
	}
	leaf := r.TLS.PeerCertificates[0]
	if err := clientAuthEKU(leaf); err != nil {
		return nil, nil, err
	}
	roots, inter, err := caAnchors(c)
	if err != nil {
		return nil, nil, err
	}
	inter = append(inter, r.TLS.PeerCertificates[1:]...)
	if _, err := x509x.Verify(leaf, inter, roots, time.Now()); err != nil {
		return nil, nil, forbidden("the client certificate was not issued by this CA or is no longer valid: %v", err)
	}
	rec, err := st.Cert(leaf.SerialNumber)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, forbidden("the client certificate is not in this CA's records")
	}
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(rec.DER, leaf.Raw) {
		return nil, nil, forbidden("the client certificate does not match this CA's record of serial %s", rec.Serial)
	}
	if rec.Revocation != nil {
		return nil, nil, forbidden("the client certificate (serial %s) is revoked", rec.Serial)
	}
	if rec.Profile != profile {
		// A renewal keeps what the certificate is for.
		return nil, nil, forbidden("the client certificate was issued under profile %s; renew it where %s is served", rec.Profile, rec.Profile)
	}
	return leaf, rec, nil
}

// renewer is who may renew a certificate under a label: the principal
// that obtained it through EST on that label, as the label's current
// rules still admit it. A certificate from another front-end (ACME) or
// label is never renewed here; one recorded before qpki kept origins
// only where the label sets renew_unrecorded.
func (f *Frontend) renewer(label string, l *Label, cert *x509.Certificate, rec *store.Cert) (*principal, error) {
	o := rec.Origin
	switch {
	case o == nil:
		if !l.RenewUnrecorded {
			return nil, forbidden("certificate %s was issued before qpki recorded who obtained each certificate: %s.renew_unrecorded is not set, so it cannot be renewed here", rec.Serial, l.where)
		}
		if !slices.Contains(l.Auth, AuthCert) {
			return nil, forbidden("this label does not accept client certificates (auth), so an unrecorded certificate cannot be renewed here")
		}
		return &principal{cert: cert}, nil
	case o.Frontend != string(enroll.FrontendEST):
		return nil, forbidden("certificate %s was issued through %s, not EST: renew it there", rec.Serial, o.Frontend)
	case o.Label != label:
		return nil, forbidden("certificate %s was issued under another EST label: renew it there", rec.Serial)
	}
	user, isUser := strings.CutPrefix(o.Principal, "user:")
	if !isUser {
		if !slices.Contains(l.Auth, AuthCert) {
			return nil, forbidden("this label no longer accepts client certificates (auth)")
		}
		return &principal{cert: cert}, nil
	}
	// Obtained with a password: the user must still exist and be
	// admitted by the label, and its grants are the current ones.
	if !slices.Contains(l.Auth, AuthBasic) || f.basic == nil {
		return nil, forbidden("this label no longer accepts HTTP Basic users (auth), through whom certificate %s was obtained", rec.Serial)
	}
	if len(l.Users) > 0 && !slices.Contains(l.Users, user) {
		return nil, forbidden("user %q may no longer enroll under this label", user)
	}
	u, ok, err := f.basic.db.Lookup(user)
	if err != nil {
		return nil, fmt.Errorf("reading the EST users: %w", err)
	}
	if !ok {
		return nil, forbidden("user %q, through whom certificate %s was obtained, no longer exists", user, rec.Serial)
	}
	return &principal{user: user, cert: cert, grants: u.Names}, nil
}

// sameIdentity checks RFC 7030 §4.2.2: a re-enrollment CSR's subject and
// subjectAltName are those of the certificate being renewed.
func sameIdentity(cert *x509.Certificate, csr *x509.CertificateRequest) error {
	if !bytes.Equal(cert.RawSubject, csr.RawSubject) && cert.Subject.String() != csr.Subject.String() {
		return forbidden("the CSR's subject %q is not the client certificate's %q", csr.Subject, cert.Subject)
	}
	if !slices.Equal(altNames(cert.DNSNames, cert.IPAddresses, cert.EmailAddresses, cert.URIs),
		altNames(csr.DNSNames, csr.IPAddresses, csr.EmailAddresses, csr.URIs)) {
		return forbidden("the CSR's subjectAltName is not the client certificate's")
	}
	return nil
}

// altNames lists subjectAltName entries by type, sorted.
func altNames(dns []string, ips []net.IP, emails []string, uris []*url.URL) []string {
	var out []string
	for _, n := range dns {
		out = append(out, "dns:"+strings.ToLower(n))
	}
	for _, ip := range ips {
		out = append(out, "ip:"+ip.String())
	}
	for _, e := range emails {
		out = append(out, "email:"+e)
	}
	for _, u := range uris {
		out = append(out, "uri:"+u.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}
