package est

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
)

// PathPrefix is where EST lives (RFC 7030 §3.2.2).
const PathPrefix = "/.well-known/est/"

// Frontend serves EST (RFC 7030, RFC 8951) over the enrollment service:
// /.well-known/est/<op> for the default profile and
// /.well-known/est/<label>/<op> for each configured label, where op is
// cacerts, simpleenroll, simplereenroll, serverkeygen or csrattrs;
// fullcmc answers 501.
type Frontend struct {
	o       Options
	log     *slog.Logger
	svc     *enroll.Service
	st      store.Store
	basic   *basicAuth
	certs   *certCache
	pending *pendingKeys
	def     *Label
	limits  *limits
}

// New checks the options and returns a front-end to mount.
func New(o Options, log *slog.Logger) (*Frontend, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Frontend{o: o, log: log, certs: newCertCache(), pending: newPendingKeys(o.PendingKeys, o.PendingKeyTTL),
		def: o.Default, limits: newLimits(o)}
	users := o.Users
	if users == nil && o.DataDir != "" {
		users = UsersDir(o.DataDir)
	}
	if users != nil {
		b, err := newBasicAuth(users, o.AuthCacheTTL, o.AuthCacheMax, o.MaxPasswordChecks)
		if err != nil {
			return nil, err
		}
		f.basic = b
	}
	return f, nil
}

// Mount adds the EST endpoints to mux.
func (f *Frontend) Mount(mux *http.ServeMux, svc *enroll.Service) error {
	st, err := svc.CA.Store()
	if err != nil {
		return err
	}
	f.svc, f.st = svc, st
	for name, l := range f.labels() {
		p, err := f.loadProfile(l.Profile)
		if err != nil {
			return fmt.Errorf("est: label %q: %v", name, err)
		}
		if l.Names != nil && l.Names.ClientCert == enroll.ClientCertIDevID && p.Var(varSerialNumber) == nil {
			return fmt.Errorf("est: %s.names: client_cert: idevid copies the serialNumber into variable %s, which profile %s does not declare (est/device does)", l.where, varSerialNumber, l.Profile)
		}
	}
	for _, prefix := range []string{PathPrefix, PathPrefix + "{label}/"} {
		mux.HandleFunc("GET "+prefix+"cacerts", f.cacerts)
		mux.HandleFunc("GET "+prefix+"csrattrs", f.csrattrs)
		mux.HandleFunc("POST "+prefix+"simpleenroll", func(w http.ResponseWriter, r *http.Request) { f.enroll(w, r, false) })
		mux.HandleFunc("POST "+prefix+"simplereenroll", func(w http.ResponseWriter, r *http.Request) { f.enroll(w, r, true) })
		mux.HandleFunc("POST "+prefix+"serverkeygen", f.serverKeygen)
		mux.HandleFunc(prefix+"fullcmc", func(w http.ResponseWriter, r *http.Request) {
			httpError(w, http.StatusNotImplemented, "fullcmc is not implemented")
		})
	}
	return nil
}

// Close forgets the server-generated keys still waiting for a retry.
func (f *Frontend) Close() error {
	f.pending.clear()
	return nil
}

// labels returns every label, "" for the unlabelled endpoints.
func (f *Frontend) labels() map[string]*Label {
	out := map[string]*Label{"": f.def}
	for n, l := range f.o.Labels {
		out[n] = l
	}
	return out
}

// label resolves the request's label, answering 404 for an unknown one,
// and applies the per-address rate limit.
func (f *Frontend) label(w http.ResponseWriter, r *http.Request) (string, *Label, bool) {
	if !f.limits.allowAddr(w, r) {
		return "", nil, false
	}
	name := r.PathValue("label")
	if name == "" {
		return "", f.def, true
	}
	l, ok := f.o.Labels[name]
	if !ok {
		httpError(w, http.StatusNotFound, "unknown EST label %q", name)
		return "", nil, false
	}
	return name, l, true
}

func (f *Frontend) channelBinding(l *Label) bool {
	if l.ChannelBinding != nil {
		return *l.ChannelBinding
	}
	return f.o.ChannelBinding
}

func (f *Frontend) anchors(l *Label) []*x509.Certificate {
	if l.clientCAs != nil {
		return l.clientCAs
	}
	return f.o.ClientCAs
}

func (f *Frontend) loadProfile(name string) (*profile.Profile, error) {
	if strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
		return profile.LoadFile(name)
	}
	return profile.Load(name, f.svc.CA.Dir)
}

// cacerts answers the CA certificates (RFC 7030 §4.1): every version's
// chain up to its root.
func (f *Frontend) cacerts(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := f.label(w, r); !ok {
		return
	}
	var certs []*x509.Certificate
	for _, v := range f.svc.CA.Meta.VersionNames() {
		chain, err := f.svc.CA.Chain(v)
		if err != nil {
			continue
		}
		for _, c := range chain {
			if !slices.ContainsFunc(certs, c.Equal) {
				certs = append(certs, c)
			}
		}
	}
	der, err := cms.CertsOnly(certs...)
	if err != nil {
		f.internal(w, "cacerts", err)
		return
	}
	writeBase64(w, mediaCertsOnly, der)
}

// csrattrs answers what the label's profile wants in a CSR (RFC 7030
// §4.5).
func (f *Frontend) csrattrs(w http.ResponseWriter, r *http.Request) {
	_, l, ok := f.label(w, r)
	if !ok {
		return
	}
	p, err := f.loadProfile(l.Profile)
	if err != nil {
		f.internal(w, "csrattrs", err)
		return
	}
	der, err := MarshalCSRAttrs(profileCSRAttrs(p, f.channelBinding(l)))
	if err != nil {
		f.internal(w, "csrattrs", err)
		return
	}
	writeBase64(w, mediaCSRAttrs, der)
}

// readCSR reads and decodes the CSR of a POST to DER.
func readCSR(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := readBody(w, r)
	if errors.Is(err, errTooLarge) {
		httpError(w, http.StatusRequestEntityTooLarge, "the request body is larger than %d bytes", MaxBody)
		return nil, false
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return nil, false
	}
	der, err := decodeCSRBody(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return nil, false
	}
	if len(der) > x509x.MaxCSR {
		httpError(w, http.StatusRequestEntityTooLarge, "the CSR is larger than %d bytes", x509x.MaxCSR)
		return nil, false
	}
	return der, true
}

// parseCSR parses a CSR without checking its signature: enroll checks
// it (once) before anything is issued, and serverkeygen ignores it (RFC
// 7030 §4.4.1).
func parseCSR(w http.ResponseWriter, der []byte) (*x509.CertificateRequest, bool) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		httpError(w, http.StatusBadRequest, "malformed CSR: %v", err)
		return nil, false
	}
	return csr, true
}

// authenticate checks the credentials simpleenroll and serverkeygen take:
// a client certificate from the label's trust anchors, or HTTP Basic.
func (f *Frontend) authenticate(r *http.Request, l *Label) (*principal, error) {
	var certErr error
	if slices.Contains(l.Auth, AuthCert) {
		cert, err := f.certs.verifyClientCert(r, f.anchors(l))
		if cert != nil {
			return &principal{cert: cert}, nil
		}
		certErr = err
	}
	if user, pass, ok := r.BasicAuth(); ok {
		if !slices.Contains(l.Auth, AuthBasic) || f.basic == nil {
			return nil, forbidden("HTTP Basic authentication is not accepted here")
		}
		u, err := f.basic.check(user, pass)
		if err != nil {
			return nil, err
		}
		if len(l.Users) > 0 && !slices.Contains(l.Users, user) {
			return nil, forbidden("user %q may not enroll under this label", user)
		}
		return &principal{user: user, grants: u.Names}, nil
	}
	if certErr != nil {
		return nil, certErr
	}
	return nil, unauthorized("authentication required: a TLS client certificate from a trusted CA, or HTTP Basic")
}

// refuse answers an authentication or authorization failure.
func (f *Frontend) refuse(w http.ResponseWriter, l *Label, err error) {
	var ae *authError
	if errors.Is(err, errBusy) {
		f.busy(w, "too many password checks are running: retry later")
		return
	}
	if errors.As(err, &ae) {
		if ae.code == http.StatusUnauthorized && slices.Contains(l.Auth, AuthBasic) {
			w.Header().Set("WWW-Authenticate", `Basic realm="qpki EST", charset="UTF-8"`)
		}
		httpError(w, ae.code, "%s", ae.msg)
		return
	}
	f.internal(w, "authentication", err)
}

// idempotencyKey maps a request to its job: the same CSR from the same
// principal under the same label is the same job, so a client that got
// 202 finds its certificate, and another principal sending that CSR gets
// a job (and, for serverkeygen, a key) of its own.
func idempotencyKey(op, label, who string, der []byte) string {
	h := sha256.New()
	for _, s := range []string{op, label, who} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	h.Write(der)
	return "est:" + op + ":" + label + ":" + hex.EncodeToString(h.Sum(nil))
}

// ready refuses an enrollment on a label without a name policy, once
// the caller is authenticated (401 comes first).
func (f *Frontend) ready(w http.ResponseWriter, l *Label) bool {
	if l.Names == nil {
		httpError(w, http.StatusForbidden, "%s", l.noNames())
		return false
	}
	return true
}

// vars are the label's variables, with the IDevID's CN and serialNumber
// copied when the label's names come from the client certificate.
func (l *Label) vars(who *principal) map[string]any {
	if l.Names == nil || l.Names.ClientCert != enroll.ClientCertIDevID || who.cert == nil {
		return l.Vars
	}
	out := maps.Clone(l.Vars)
	if out == nil {
		out = map[string]any{}
	}
	out["cn"] = who.cert.Subject.CommonName
	if sn := who.cert.Subject.SerialNumber; sn != "" {
		out[varSerialNumber] = sn
	}
	return out
}

// varSerialNumber is the est/ profiles' variable for the subject's
// serialNumber.
const varSerialNumber = "serial_number"

// enroll serves simpleenroll and simplereenroll (RFC 7030 §4.2).
func (f *Frontend) enroll(w http.ResponseWriter, r *http.Request, renew bool) {
	label, l, ok := f.label(w, r)
	if !ok {
		return
	}
	der, ok := readCSR(w, r)
	if !ok {
		return
	}
	// The CSR is parsed here only when its content decides (a renewal's
	// identity, the channel binding); its signature is checked by enroll
	// before anything is issued.
	var csr *x509.CertificateRequest
	if renew || f.channelBinding(l) {
		if csr, ok = parseCSR(w, der); !ok {
			return
		}
	}
	var who *principal
	if renew {
		cert, rec, err := verifyRenewal(r, f.svc.CA, f.st, l.Profile)
		if err == nil {
			err = sameIdentity(cert, csr)
		}
		if err == nil {
			who, err = f.renewer(label, l, cert, rec)
		}
		if err != nil {
			f.refuse(w, l, err)
			return
		}
	} else {
		var err error
		if who, err = f.authenticate(r, l); err != nil {
			f.refuse(w, l, err)
			return
		}
	}
	if !f.ready(w, l) || !f.limits.allowPrincipal(w, who) || !f.checkBinding(w, r, l, csr) {
		return
	}
	op := "enroll"
	if renew {
		op = "reenroll"
	}
	id, err := f.svc.Submit(r.Context(), enroll.Request{Profile: l.Profile, Vars: l.vars(who), CSR: der,
		Key: idempotencyKey(op, label, who.id(), der), Class: queue.ClassInteractive, Principal: who.enroll(label, l)})
	if err != nil {
		f.submitError(w, err)
		return
	}
	res, ok := f.wait(w, r, id)
	if !ok {
		return
	}
	cert, err := x509.ParseCertificate(res.DER)
	if err != nil {
		f.internal(w, "enroll", err)
		return
	}
	p7, err := cms.CertsOnly(cert)
	if err != nil {
		f.internal(w, "enroll", err)
		return
	}
	writeBase64(w, mediaCertsOnly, p7)
}

// checkBinding enforces channel binding when the label requires it.
func (f *Frontend) checkBinding(w http.ResponseWriter, r *http.Request, l *Label, csr *x509.CertificateRequest) bool {
	if !f.channelBinding(l) {
		return true
	}
	attrs, err := csrAttributes(csr.RawTBSCertificateRequest)
	if err == nil {
		err = checkChannelBinding(r.TLS, attrs)
	}
	if err != nil {
		httpError(w, http.StatusForbidden, "%v", err)
		return false
	}
	return true
}

// submitError answers a refused submission: names the caller was not
// granted (403), the policy's reason (400), a reused idempotency key
// (409), or an unavailable queue (503).
func (f *Frontend) submitError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, enroll.ErrNotGranted):
		httpError(w, http.StatusForbidden, "the name policy of this EST endpoint refuses the request: %v", err)
	case errors.Is(err, store.ErrKeyReused):
		httpError(w, http.StatusConflict, "this CSR was already submitted under another profile or variables: %v", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), strings.HasPrefix(err.Error(), "queue:"),
		// The shared store's NATS errors (a leader election under --store
		// jetstream: "nats: no response from stream") are the server's,
		// not the request's: the device retries the same CSR.
		strings.Contains(err.Error(), "nats: "):
		f.log.Warn("est: submission failed", "error", err)
		f.busy(w, "the signing queue is unavailable; retry later")
	default:
		httpError(w, http.StatusBadRequest, "%v", err)
	}
}

// wait waits for a job's result; when it takes longer than Options.Wait
// it answers 202 with Retry-After (RFC 7030 §4.2.3), and the same request
// sent again finds the same job.
func (f *Frontend) wait(w http.ResponseWriter, r *http.Request, id string) (*enroll.Result, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), f.o.Wait)
	defer cancel()
	res, err := f.svc.Wait(ctx, id)
	if errors.Is(err, enroll.ErrPending) {
		w.Header().Set("Retry-After", fmt.Sprint(max(1, int(f.o.RetryAfter.Seconds()))))
		httpError(w, http.StatusAccepted, "the request is queued; send it again after the Retry-After delay")
		return nil, false
	}
	if err != nil {
		f.internal(w, "wait", err)
		return nil, false
	}
	if res.State == store.JobFailed {
		httpError(w, http.StatusBadRequest, "the request was refused: %s", res.Error)
		return nil, false
	}
	return res, true
}

// busy answers 503 with Retry-After.
func (f *Frontend) busy(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", fmt.Sprint(max(1, int(f.o.RetryAfter.Seconds()))))
	httpError(w, http.StatusServiceUnavailable, "%s", msg)
}

// internal answers 500 and logs the cause, which the client does not see.
func (f *Frontend) internal(w http.ResponseWriter, what string, err error) {
	f.log.Error("est: "+what, "error", err)
	httpError(w, http.StatusInternalServerError, "internal error")
}

// Endpoints lists the EST base paths, for serve's start-up banner; an
// endpoint without a name policy says so, since it issues nothing.
func (f *Frontend) Endpoints() []string {
	banner := func(path string, l *Label) string {
		s := path + "  (EST, profile " + l.Profile
		if l.Names == nil {
			s += "; no name policy: " + l.where + ".names unset, issues nothing"
		}
		return s + ")"
	}
	out := []string{banner(PathPrefix, f.def)}
	names := make([]string, 0, len(f.o.Labels))
	for n := range f.o.Labels {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		out = append(out, banner(PathPrefix+n+"/", f.o.Labels[n]))
	}
	return out
}
