package scep

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
)

// PathPrefix is where SCEP lives: /scep (the default label) and
// /scep/<label>, each also with /pkiclient.exe appended.
const PathPrefix = "/scep"

// Authority is a CA that labels may name with ca:. serve hosts one today;
// several CAs will pass several.
type Authority struct {
	Name    string
	Enroll  *enroll.Service
	ra      atomic.Pointer[RA]
	store   store.Store
	raOnce  sync.Once
	raReady chan struct{} // closed once ra is set
}

// RA is the authority's RA, nil until it is issued.
func (a *Authority) RA() *RA { return a.ra.Load() }

// Frontend serves SCEP over the enrollment service. It is a server.Wrapper
// so that it answers on the plain-HTTP listener too, where SCEP clients
// usually talk.
type Frontend struct {
	o          Options
	challenges ChallengeStore
	cas        atomic.Pointer[map[string]*Authority]
	done       chan struct{}
	closeOnce  sync.Once
}

// New checks the options and returns a front-end to mount.
func New(o Options) (*Frontend, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	f := &Frontend{o: o, challenges: o.Challenges, done: make(chan struct{})}
	if f.challenges == nil && o.OpenChallenges == nil {
		if o.DataDir == "" {
			return nil, errors.New("scep: a data dir or a challenge store is needed")
		}
		f.challenges = FileChallenges{Path: ChallengesPath(o.DataDir)}
	}
	return f, nil
}

// Mount starts SCEP for the CA of svc (Wrap serves the paths).
func (f *Frontend) Mount(_ *http.ServeMux, svc *enroll.Service) error { return f.MountAll(svc) }

// MountAll starts SCEP for the CAs of svcs; the first is the one labels
// without ca: use. The RA certificate of a CA that has none is issued
// through the queue first.
func (f *Frontend) MountAll(svcs ...*enroll.Service) error {
	if len(svcs) == 0 {
		return errors.New("scep: no CA to serve")
	}
	if f.o.OpenChallenges != nil {
		cs, err := f.o.OpenChallenges(svcs[0])
		if err != nil {
			return err
		}
		f.challenges = cs
	}
	cas := map[string]*Authority{}
	for i, svc := range svcs {
		st, err := svc.CA.Store()
		if err != nil {
			return err
		}
		a := &Authority{Name: svc.CA.Name(), Enroll: svc, store: st, raReady: make(chan struct{})}
		cas[a.Name] = a
		if i == 0 {
			cas[""] = a
		}
	}
	for name, l := range f.labels() {
		a, ok := cas[l.CA]
		if !ok {
			return fmt.Errorf("scep: label %q: ca %q is not a CA this server hosts", name, l.CA)
		}
		if _, err := loadProfile(l.Profile, a.Enroll.CA.Dir); err != nil {
			return fmt.Errorf("scep: label %q: %v", name, err)
		}
	}
	for name, a := range cas {
		if name == "" {
			continue
		}
		ra, err := LoadRA(a.Enroll.CA.Dir)
		if errors.Is(err, os.ErrNotExist) {
			// Issued through the queue, which may wait for a worker: serve
			// starts meanwhile. Without IssueRAAtStart, when SCEP is first
			// used, so that a serve nobody enrolls through over SCEP
			// issues nothing.
			if f.o.IssueRAAtStart {
				f.startRA(name, a)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("scep: CA %s: RA: %w", name, err)
		}
		a.setRA(ra)
	}
	f.cas.Store(&cas)
	return nil
}

func (a *Authority) setRA(ra *RA) {
	a.ra.Store(ra)
	close(a.raReady)
}

// startRA starts issuing the RA of a CA that has none, once.
func (f *Frontend) startRA(name string, a *Authority) {
	a.raOnce.Do(func() { go f.issueRA(name, a) })
}

// raWait bounds how long a request waits for the RA to be issued.
const raWait = 60 * time.Second

// issueRA makes the RA of a CA that has none, retrying while the queue
// cannot sign it.
func (f *Frontend) issueRA(name string, a *Authority) {
	for delay := time.Second; ; delay = min(2*delay, time.Minute) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		ra, err := IssueRA(ctx, a.Enroll)
		cancel()
		if err == nil {
			a.setRA(ra)
			f.o.Log.Info("scep: issued the RA certificate", "ca", name, "serial", fmt.Sprintf("%x", ra.Cert.SerialNumber))
			return
		}
		f.o.Log.Error("scep: issuing the RA certificate failed (or run qpki scep ra issue)", "ca", name, "error", err)
		select {
		case <-f.done:
			return
		case <-time.After(delay):
		}
	}
}

func (f *Frontend) labels() map[string]*Label {
	out := map[string]*Label{"": f.o.Default}
	for n, l := range f.o.Labels {
		out[n] = l
	}
	return out
}

// Endpoints lists the SCEP paths, for serve's banner.
func (f *Frontend) Endpoints() []string {
	out := []string{PathPrefix + "  (SCEP, " + string(f.o.Default.Challenge.Kind) + " challenges)"}
	names := make([]string, 0, len(f.o.Labels))
	for n := range f.o.Labels {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		out = append(out, PathPrefix+"/"+n+"  (SCEP, "+string(f.o.Labels[n].Challenge.Kind)+" challenges)")
	}
	return out
}

// Wrap answers /scep paths before the ServeMux.
func (f *Frontend) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		label, ok := scepPath(r.URL.Path)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		f.serve(w, r, label)
	})
}

// scepPath maps /scep[/<label>][/pkiclient.exe] to the label.
func scepPath(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, PathPrefix)
	if !ok || rest != "" && rest[0] != '/' {
		return "", false
	}
	rest = strings.TrimSuffix(strings.TrimPrefix(rest, "/"), "pkiclient.exe")
	rest = strings.TrimSuffix(rest, "/")
	if strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}

func (f *Frontend) serve(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		httpError(w, http.StatusMethodNotAllowed, "SCEP takes GET or POST")
		return
	}
	l := f.o.Default
	if name != "" {
		var ok bool
		if l, ok = f.o.Labels[name]; !ok {
			httpError(w, http.StatusNotFound, "unknown SCEP label %q", name)
			return
		}
	}
	cas := f.cas.Load()
	if cas == nil {
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "SCEP is starting")
		return
	}
	a := (*cas)[l.CA]
	if a.RA() == nil {
		f.startRA(a.Name, a)
		select {
		case <-a.raReady:
		case <-time.After(raWait):
		case <-r.Context().Done():
		}
	}
	if a.RA() == nil {
		w.Header().Set("Retry-After", "10")
		httpError(w, http.StatusServiceUnavailable, "the SCEP RA certificate is being issued; retry later")
		return
	}
	switch op := r.URL.Query().Get("operation"); op {
	case "GetCACaps":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, caps)
	case "GetCACert":
		f.getCACert(w, a)
	case "GetNextCACert":
		f.getNextCACert(w, a)
	case "PKIOperation":
		body, err := readMessage(r)
		if err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, errTooLarge) {
				code = http.StatusRequestEntityTooLarge
			}
			httpError(w, code, "%v", err)
			return
		}
		f.pkiOperation(w, r, name, l, a, body)
	case "":
		httpError(w, http.StatusBadRequest, "the operation parameter is missing")
	default:
		httpError(w, http.StatusBadRequest, "unknown SCEP operation %q", op)
	}
}

// caps is what GetCACaps advertises: exactly what is implemented (DES
// and 3DES are accepted on legacy_des labels but never offered).
const caps = "AES\nGetNextCACert\nPOSTPKIOperation\nRenewal\nSHA-256\nSHA-512\nSCEPStandard\n"

var errTooLarge = fmt.Errorf("the message is larger than %d bytes", MaxBody)

// readMessage reads a PKIOperation message: the POST body, or GET's
// message parameter in base64.
func readMessage(r *http.Request) ([]byte, error) {
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
		if err != nil {
			return nil, fmt.Errorf("reading the body: %v", err)
		}
		if len(body) > MaxBody {
			return nil, errTooLarge
		}
		return body, nil
	}
	raw := r.URL.Query().Get("message")
	if base64.StdEncoding.DecodedLen(len(raw)) > MaxBody+3 {
		return nil, errTooLarge
	}
	raw = strings.Map(func(c rune) rune {
		if c == '\n' || c == '\r' || c == ' ' {
			return -1
		}
		return c
	}, raw)
	der, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		// A client that did not URL-encode the message turned + into space.
		if der, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(url.QueryEscape(raw), "%2B", "+")); err != nil {
			return nil, errors.New("the message parameter is not base64")
		}
	}
	return der, nil
}

// caCerts is the active version's chain, CA first.
func caCerts(c *ca.CA) ([]*x509.Certificate, error) {
	return c.Chain(c.Meta.Active)
}

func (f *Frontend) getCACert(w http.ResponseWriter, a *Authority) {
	chain, err := caCerts(a.Enroll.CA)
	if err != nil {
		f.internal(w, "GetCACert", err)
		return
	}
	der, err := cms.CertsOnly(append([]*x509.Certificate{a.RA().Cert}, chain...)...)
	if err != nil {
		f.internal(w, "GetCACert", err)
		return
	}
	w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
	w.Write(der)
}

// getNextCACert answers the certificate of the pending version that `qpki
// ca rotate --pending` prepared (RFC 8894 §3.5.2), read from the CA
// directory now, since the rotation is made by another process.
func (f *Frontend) getNextCACert(w http.ResponseWriter, a *Authority) {
	c, err := ca.Open(a.Enroll.CA.Dir)
	if err != nil {
		f.internal(w, "GetNextCACert", err)
		return
	}
	var next []*x509.Certificate
	for name, v := range c.Meta.Versions {
		if v.Status != ca.StatusPending || v.Cert == "" {
			continue
		}
		cert, err := c.Certificate(name)
		if err != nil {
			f.internal(w, "GetNextCACert", err)
			return
		}
		next = append(next, cert)
	}
	if len(next) == 0 {
		httpError(w, http.StatusNotFound, "no CA rollover is pending")
		return
	}
	der, err := cms.CertsOnly(append(next, a.RA().Cert)...)
	if err != nil {
		f.internal(w, "GetNextCACert", err)
		return
	}
	w.Header().Set("Content-Type", "application/x-x509-next-ca-cert")
	w.Write(der)
}

func (f *Frontend) internal(w http.ResponseWriter, what string, err error) {
	f.o.Log.Error("scep: "+what, "error", err)
	httpError(w, http.StatusInternalServerError, "internal error")
}

// answer writes a CertRep.
func (f *Frontend) answer(w http.ResponseWriter, a *Authority, m *message, r reply) {
	der, err := certRep(a.RA(), m, r)
	if err != nil {
		f.internal(w, "CertRep", err)
		return
	}
	w.Header().Set("Content-Type", "application/x-pki-message")
	w.Write(der)
}

// failure answers FAILURE with the failInfo; the reason goes to the log
// (and the X-SCEP-Reason header), since a CertRep has no text.
func (f *Frontend) failure(w http.ResponseWriter, a *Authority, m *message, fl *Failure) {
	f.o.Log.Info("scep: request refused", "transaction", m.TransactionID, "type", m.Type.String(), "failInfo", fl.Info.String(), "reason", fl.Reason)
	w.Header().Set("X-SCEP-Reason", sanitize(fl.Reason))
	f.answer(w, a, m, reply{Status: StatusFailure, Fail: fl.Info})
}

// sanitize keeps a header value printable and short.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

func (f *Frontend) pkiOperation(w http.ResponseWriter, r *http.Request, name string, l *Label, a *Authority, body []byte) {
	m, err := parseMessage(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if fl := m.verify(l.LegacyDES); fl != nil {
		f.failure(w, a, m, fl)
		return
	}
	if m.Signer.PublicKeyAlgorithm != x509.RSA && m.Signer.PublicKeyAlgorithm != x509.ECDSA {
		f.failure(w, a, m, fail(BadAlg, "the signer's key must be RSA or ECDSA"))
		return
	}
	plain, cipher, fl := m.decrypt(a.RA(), l.LegacyDES)
	if fl != nil {
		f.failure(w, a, m, fl)
		return
	}
	switch m.Type {
	case PKCSReq, RenewalReq:
		f.enroll(w, r, name, l, a, m, plain, cipher)
	case CertPoll:
		f.certPoll(w, name, a, m, plain, cipher)
	case GetCert:
		f.getCert(w, a, m, plain, cipher)
	case GetCRL:
		f.getCRL(w, a, m, plain, cipher)
	default:
		f.failure(w, a, m, fail(BadRequest, "%s is not supported", m.Type))
	}
}

// enroll serves PKCSReq and RenewalReq.
func (f *Frontend) enroll(w http.ResponseWriter, r *http.Request, name string, l *Label, a *Authority, m *message, der []byte, cipher asn1.ObjectIdentifier) {
	csr, err := parseCSR(der)
	if err != nil {
		f.failure(w, a, m, fail(BadRequest, "%v", err))
		return
	}
	if f.challenges == nil {
		f.internal(w, "enroll", errors.New("no challenge and transaction store"))
		return
	}
	var grants *enroll.NamePolicy
	var key string
	if m.Type == RenewalReq {
		key = jobKey(name, m.TransactionID, "renew", m.Signer.SerialNumber.Text(16))
		grants, err = f.renewal(a, name, m.Signer)
	} else if !bytes.Equal(csr.RawSubjectPublicKeyInfo, m.Signer.RawSubjectPublicKeyInfo) {
		// RFC 8894 §2.3: the self-signed certificate and the CSR share the key.
		err = errors.New("the PKCSReq is not signed by the CSR's key")
	} else {
		var pw string
		if pw, err = challengePassword(csr); err == nil {
			key = jobKey(name, m.TransactionID, "enroll", pw)
			grants, err = f.challenge(r.Context(), name, l, m, csr, pw, key)
		}
	}
	if err != nil {
		f.failure(w, a, m, fail(BadRequest, "%v", err))
		return
	}
	who := enroll.Principal{Frontend: enroll.FrontendSCEP, Label: name, ClientCert: m.Signer, Names: l.Names.Join(grants)}
	id, err := a.Enroll.Submit(r.Context(), enroll.Request{Profile: l.Profile, Vars: l.Vars, CSR: der, Key: key,
		Class: queue.ClassInteractive, Principal: who})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || strings.HasPrefix(err.Error(), "queue:") {
			f.o.Log.Warn("scep: submission failed", "error", err)
			w.Header().Set("Retry-After", "10")
			httpError(w, http.StatusServiceUnavailable, "the signing queue is unavailable; retry later")
			return
		}
		f.failure(w, a, m, fail(BadRequest, "%v", err))
		return
	}
	// The transaction is recorded for CertPoll only when it is pending: a
	// client that got its certificate does not poll.
	f.finish(w, r.Context(), a, m, id, cipher, nil, func() error { return f.challenges.SetTransaction(name, m.TransactionID, key) })
}

// finish waits up to Options.Wait for a job, then answers SUCCESS,
// FAILURE, or PENDING (the client polls, or resends the same request,
// and finds the same job). owner, when set, must hold the certificate's
// key.
func (f *Frontend) finish(w http.ResponseWriter, ctx context.Context, a *Authority, m *message, id string, cipher asn1.ObjectIdentifier, owner *x509.Certificate, pending func() error) {
	ctx, cancel := context.WithTimeout(ctx, f.o.Wait)
	defer cancel()
	res, err := a.Enroll.Wait(ctx, id)
	if errors.Is(err, enroll.ErrPending) {
		if pending != nil {
			if err := pending(); err != nil {
				f.internal(w, "pending", err)
				return
			}
		}
		f.answer(w, a, m, reply{Status: StatusPending})
		return
	}
	if err != nil {
		f.internal(w, "wait", err)
		return
	}
	if res.State == store.JobFailed {
		f.failure(w, a, m, fail(BadRequest, "the request was refused: %s", res.Error))
		return
	}
	cert, err := x509.ParseCertificate(res.DER)
	if err != nil {
		f.internal(w, "result", err)
		return
	}
	if owner != nil && !bytes.Equal(owner.RawSubjectPublicKeyInfo, cert.RawSubjectPublicKeyInfo) {
		f.failure(w, a, m, fail(BadCertID, "the message is not signed by the key of the certificate"))
		return
	}
	f.success(w, a, m, cipher, cert)
}

func (f *Frontend) success(w http.ResponseWriter, a *Authority, m *message, cipher asn1.ObjectIdentifier, certs ...*x509.Certificate) {
	p7, err := cms.CertsOnly(certs...)
	if err != nil {
		f.internal(w, "CertRep", err)
		return
	}
	f.answer(w, a, m, reply{Status: StatusSuccess, Content: p7, Cipher: cipher})
}

// challenge checks the CSR's challengePassword under the label's rule and
// returns what it grants on top of the label's names.
func (f *Frontend) challenge(ctx context.Context, name string, l *Label, m *message, csr *x509.CertificateRequest, pw, key string) (*enroll.NamePolicy, error) {
	if pw == "" {
		return nil, errors.New("the CSR has no challengePassword")
	}
	switch l.Challenge.Kind {
	case ChallengeStatic:
		if !staticMatches(l.static, pw) {
			return nil, ErrChallenge
		}
		return nil, nil
	case ChallengeWebhook:
		q := WebhookRequest{Label: name, TransactionID: m.TransactionID, Challenge: pw, Subject: csr.Subject.String(),
			DNSNames: csr.DNSNames, Emails: csr.EmailAddresses, CSR: csr.Raw}
		for _, ip := range csr.IPAddresses {
			q.IPAddresses = append(q.IPAddresses, ip.String())
		}
		for _, u := range csr.URIs {
			q.URIs = append(q.URIs, u.String())
		}
		if err := l.hook.ask(ctx, q); err != nil {
			return nil, err
		}
		return csrNames(csr), nil
	}
	c, err := f.challenges.Redeem(HashChallenge(pw), name, key, time.Now())
	if err != nil {
		return nil, err
	}
	if c.Names == nil {
		return &enroll.NamePolicy{}, nil
	}
	return c.Names, nil
}

// csrNames grants exactly the names and subject a CSR asks for: what a
// webhook allowed.
func csrNames(csr *x509.CertificateRequest) *enroll.NamePolicy {
	var ips []string
	for _, ip := range csr.IPAddresses {
		ips = append(ips, ip.String())
	}
	return enroll.ExactNames(csr.DNSNames, ips).Join(subjectNames(csr.Subject.Names, csr.EmailAddresses, csr.URIs))
}

// renewal checks the certificate that signed a RenewalReq: issued by this
// CA, recorded, unrevoked, unexpired, and issued through SCEP on this
// label. It grants that certificate's names.
func (f *Frontend) renewal(a *Authority, name string, old *x509.Certificate) (*enroll.NamePolicy, error) {
	issued := false
	for _, v := range a.Enroll.CA.Meta.VersionNames() {
		c, err := a.Enroll.CA.Certificate(v)
		if err == nil && bytes.Equal(c.RawSubject, old.RawIssuer) && x509x.CheckSignatureFrom(old, c) == nil {
			issued = true
			break
		}
	}
	if !issued {
		return nil, errors.New("renewal: the signing certificate was not issued by this CA")
	}
	rec, err := a.store.Cert(old.SerialNumber)
	if err != nil || !bytes.Equal(rec.DER, old.Raw) {
		return nil, errors.New("renewal: the signing certificate is not in this CA's records")
	}
	now := time.Now()
	switch {
	case rec.Revocation != nil:
		return nil, errors.New("renewal: the signing certificate is revoked")
	case now.After(old.NotAfter) || now.Before(old.NotBefore):
		return nil, errors.New("renewal: the signing certificate is not valid now")
	case rec.Origin == nil || rec.Origin.Frontend != string(enroll.FrontendSCEP) || rec.Origin.Label != name:
		return nil, errors.New("renewal: the signing certificate was not issued through SCEP on this label")
	}
	var ips []string
	for _, ip := range old.IPAddresses {
		ips = append(ips, ip.String())
	}
	return enroll.ExactNames(old.DNSNames, ips).Join(subjectNames(old.Subject.Names, old.EmailAddresses, old.URIs)), nil
}

// certPoll answers CertPoll (GetCertInitial): the job of the same
// transaction on the same label, never a second one.
func (f *Frontend) certPoll(w http.ResponseWriter, name string, a *Authority, m *message, plain []byte, cipher asn1.ObjectIdentifier) {
	var ias issuerAndSubject
	if asn1Unmarshal(plain, &ias) != nil {
		f.failure(w, a, m, fail(BadRequest, "malformed IssuerAndSubject"))
		return
	}
	key, err := f.challenges.Transaction(name, m.TransactionID)
	var job *store.Job
	if err == nil {
		job, err = a.Enroll.KeyJob(key)
	}
	if errors.Is(err, store.ErrNotFound) {
		f.failure(w, a, m, fail(BadCertID, "no request with this transactionID on this label"))
		return
	}
	if err != nil {
		f.internal(w, "CertPoll", err)
		return
	}
	f.finish(w, context.Background(), a, m, job.ID, cipher, m.Signer, nil)
}

// getCert answers GetCert: a certificate of this CA by serial, to the
// holder of its key.
func (f *Frontend) getCert(w http.ResponseWriter, a *Authority, m *message, plain []byte, cipher asn1.ObjectIdentifier) {
	serial, ok := f.issuerSerial(w, a, m, plain)
	if !ok {
		return
	}
	rec, err := a.store.Cert(serial)
	if err != nil {
		f.failure(w, a, m, fail(BadCertID, "no certificate with this serial number"))
		return
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil || !bytes.Equal(cert.RawSubjectPublicKeyInfo, m.Signer.RawSubjectPublicKeyInfo) {
		f.failure(w, a, m, fail(BadCertID, "the message is not signed by the key of the certificate"))
		return
	}
	f.success(w, a, m, cipher, cert)
}

// getCRL answers GetCRL with the CA's current CRL.
func (f *Frontend) getCRL(w http.ResponseWriter, a *Authority, m *message, plain []byte, cipher asn1.ObjectIdentifier) {
	if _, ok := f.issuerSerial(w, a, m, plain); !ok {
		return
	}
	crl, err := os.ReadFile(filepath.Join(a.Enroll.CA.Dir, ca.CRLDir, "ca.crl.der"))
	if err != nil {
		f.failure(w, a, m, fail(BadRequest, "no CRL is published yet"))
		return
	}
	p7, err := cms.CRLsOnly(crl)
	if err != nil {
		f.internal(w, "GetCRL", err)
		return
	}
	f.answer(w, a, m, reply{Status: StatusSuccess, Content: p7, Cipher: cipher})
}

// issuerSerial reads an IssuerAndSerialNumber naming this CA.
func (f *Frontend) issuerSerial(w http.ResponseWriter, a *Authority, m *message, plain []byte) (*big.Int, bool) {
	var is issuerAndSerial
	if asn1Unmarshal(plain, &is) != nil {
		f.failure(w, a, m, fail(BadRequest, "malformed IssuerAndSerialNumber"))
		return nil, false
	}
	var serial *big.Int
	if _, err := asn1.Unmarshal(is.Serial.FullBytes, &serial); err != nil || serial.Sign() <= 0 {
		f.failure(w, a, m, fail(BadRequest, "malformed serial number"))
		return nil, false
	}
	ours := false
	for _, v := range a.Enroll.CA.Meta.VersionNames() {
		if c, err := a.Enroll.CA.Certificate(v); err == nil && bytes.Equal(c.RawSubject, is.Issuer.FullBytes) {
			ours = true
		}
	}
	if !ours {
		f.failure(w, a, m, fail(BadCertID, "the issuer is not this CA"))
		return nil, false
	}
	return serial, true
}

// Close stops issuing a missing RA certificate.
func (f *Frontend) Close() error {
	f.closeOnce.Do(func() { close(f.done) })
	return nil
}
