// Package cmp is the CMP front-end (RFC 9810, the Lightweight CMP
// Profile RFC 9483, HTTP transfer RFC 9811): /.well-known/cmp and
// /.well-known/cmp/p/<label>, application/pkixcmp, on the HTTPS and the
// plain-HTTP listener (CMP messages protect themselves).
//
// A transaction (ir, cr or p10cr, then certConf, or pollReq while the
// queue has not answered) is a record in the store, keyed by the label
// and the transactionID, so that a restarted front-end, or another one
// sharing the JetStream store, continues it. Each message's recipNonce
// must be the senderNonce of our last answer, so a message cannot be
// replayed; a new transaction's ID must be new.
//
// MAC-protected requests use one-time shared secrets (`qpki cmp secret
// add`) and get MAC-protected answers. An issued certificate that the
// client does not confirm (certConf) within the confirmation timeout is
// revoked, unless implicitConfirm was asked for and the label grants it.
package cmp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
)

// Path is the unlabelled CMP endpoint; labels are under Path+"/p/".
const Path = "/.well-known/cmp"

// MediaType is the CMP HTTP content type (RFC 9811).
const MediaType = "application/pkixcmp"

// Frontend serves CMP over the enrollment service.
type Frontend struct {
	o        Options
	log      *slog.Logger
	secrets  Records
	txs      Records
	mu       sync.RWMutex
	svc      *enroll.Service
	profiles map[string]*profile.Profile
	ra       *RA
	stop     chan struct{}
	stopOnce sync.Once
}

// New checks the options and returns a front-end to mount.
func New(o Options, log *slog.Logger) (*Frontend, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Frontend{o: o, log: log, secrets: o.Secrets, txs: o.Transactions, stop: make(chan struct{})}
	if (f.secrets == nil || f.txs == nil) && o.OpenRecords == nil {
		if o.DataDir == "" {
			return nil, errors.New("cmp: a data dir is required for shared secrets and transactions")
		}
		f.secrets = FileRecords(DBPath(o.DataDir), "secrets")
		f.txs = FileRecords(DBPath(o.DataDir), "transactions")
	}
	return f, nil
}

// Mount loads the labels' profiles; the endpoints are served by Wrap, on
// both listeners.
func (f *Frontend) Mount(_ *http.ServeMux, svc *enroll.Service) error {
	profiles := map[string]*profile.Profile{}
	for _, l := range f.labels() {
		if _, ok := profiles[l.Profile]; ok {
			continue
		}
		p, err := loadProfile(l.Profile, svc.CA.Dir)
		if err != nil {
			return fmt.Errorf("cmp: %s: %v", l.where, err)
		}
		profiles[l.Profile] = p
	}
	if f.o.OpenRecords != nil {
		var err error
		if f.secrets, f.txs, err = f.o.OpenRecords(svc); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.svc, f.profiles = svc, profiles
	f.mu.Unlock()
	go f.sweepUnconfirmed()
	ra, err := LoadRA(svc.CA.Dir)
	if err == nil && !issuedBy(svc, ra.Cert) {
		err = errors.New("issued by another CA")
	}
	if err != nil {
		// Made at first start, through the pipeline, once a worker signs.
		go f.makeRA(svc)
		return nil
	}
	f.setRA(svc, ra)
	return nil
}

func (f *Frontend) makeRA(svc *enroll.Service) {
	caCert, err := svc.CA.Certificate("")
	if err != nil {
		f.log.Error("cmp: RA certificate", "error", err)
		return
	}
	ra, err := IssueRA(context.Background(), svc.CA.Dir, caCert, ServiceIssuer(svc))
	if err != nil {
		f.log.Error("cmp: RA certificate", "error", err)
		return
	}
	f.setRA(svc, ra)
	f.log.Info("cmp: made the CMP RA certificate", "subject", ra.Cert.Subject.String())
}

func (f *Frontend) setRA(svc *enroll.Service, ra *RA) {
	ra.Chain = chainFor(svc, ra.Cert)
	f.mu.Lock()
	f.ra = ra
	f.mu.Unlock()
}

func (f *Frontend) currentRA() *RA {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.ra
}

// ServiceIssuer issues through the enrollment service as the operator
// (serve's own certificates).
func ServiceIssuer(svc *enroll.Service) IssueFunc {
	return func(ctx context.Context, prof string, csr []byte, key string) ([]byte, error) {
		id, err := svc.Submit(ctx, enroll.Request{Profile: prof, CSR: csr, Key: key, Principal: enroll.Operator(enroll.FrontendServe, "qpki serve")})
		if err != nil {
			return nil, err
		}
		res, err := svc.Wait(ctx, id)
		if err != nil {
			return nil, err
		}
		if res.State == store.JobFailed {
			return nil, errors.New(res.Error)
		}
		return res.DER, nil
	}
}

// Close stops the sweeper of unconfirmed certificates.
func (f *Frontend) Close() error {
	f.stopOnce.Do(func() { close(f.stop) })
	return nil
}

func loadProfile(name, caDir string) (*profile.Profile, error) {
	if strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
		return profile.LoadFile(name)
	}
	return profile.Load(name, caDir)
}

func (f *Frontend) labels() []*Label {
	out := []*Label{f.o.Default}
	for _, l := range f.o.Labels {
		out = append(out, l)
	}
	return out
}

func (f *Frontend) service() *enroll.Service {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.svc
}

// Endpoints lists the CMP paths, for serve's banner.
func (f *Frontend) Endpoints() []string {
	out := []string{Path + "  (CMP, profile " + f.o.Default.Profile + ")"}
	for n, l := range f.o.Labels {
		out = append(out, Path+"/p/"+n+"  (CMP, profile "+l.Profile+")")
	}
	return out
}

// Wrap answers the CMP paths before next sees the request.
func (f *Frontend) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		label, ok := f.route(r.URL.Path)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		f.serve(w, r, label)
	})
}

// route maps a path to its label.
func (f *Frontend) route(path string) (*Label, bool) {
	if path == Path || path == Path+"/" {
		return f.o.Default, true
	}
	name, ok := strings.CutPrefix(path, Path+"/p/")
	if !ok {
		return nil, strings.HasPrefix(path, Path+"/")
	}
	l := f.o.Labels[strings.TrimSuffix(name, "/")]
	return l, true
}

// serve is one CMP HTTP exchange: a PKIMessage in, one out.
func (f *Frontend) serve(w http.ResponseWriter, r *http.Request, l *Label) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "CMP takes POST with "+MediaType, http.StatusMethodNotAllowed)
		return
	}
	if l == nil {
		f.writeError(w, http.StatusNotFound, nil, nil, FailBadRequest, "unknown CMP label")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.EqualFold(strings.TrimSpace(strings.Split(ct, ";")[0]), MediaType) {
		f.writeError(w, http.StatusUnsupportedMediaType, nil, nil, FailBadDataFormat, "the content type must be "+MediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			f.writeError(w, http.StatusRequestEntityTooLarge, nil, nil, FailBadRequest, fmt.Sprintf("the message is larger than %d bytes", MaxBody))
			return
		}
		f.writeError(w, http.StatusBadRequest, nil, nil, FailBadRequest, "the body could not be read")
		return
	}
	m, err := ParseMessage(body)
	if err != nil {
		f.writeError(w, http.StatusBadRequest, nil, nil, FailBadDataFormat, err.Error())
		return
	}
	svc := f.service()
	if svc == nil {
		f.writeError(w, http.StatusServiceUnavailable, m, nil, FailSystemUnavail, "the CMP service is starting")
		return
	}
	resp, err := f.handle(r.Context(), svc, l, m)
	if err != nil {
		var pe *pkiError
		if !errors.As(err, &pe) {
			f.log.Error("cmp: internal error", "error", err)
			pe = &pkiError{fail: FailSystemFailure, msg: "internal error"}
		}
		f.writeError(w, http.StatusOK, m, pe.prot, pe.fail, pe.msg)
		return
	}
	w.Header().Set("Content-Type", MediaType)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(resp)
}

// pkiError is a refusal answered as a CMP error message; prot, when
// set, protects it (the request's secret was good).
type pkiError struct {
	fail FailInfo
	msg  string
	prot *protector
}

func (e *pkiError) Error() string { return e.msg }

func refuse(fail FailInfo, format string, args ...any) error {
	return &pkiError{fail: fail, msg: fmt.Sprintf(format, args...)}
}

// writeError answers an error message, protected when p is set.
func (f *Frontend) writeError(w http.ResponseWriter, status int, req *Message, p *protector, fail FailInfo, msg string) {
	content := ErrorMsgContent{Status: statusInfo(StatusRejection, &fail, msg)}
	der, err := f.build(req, p, BodyError, content, nil, nil)
	if err != nil {
		f.log.Error("cmp: error message", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", MediaType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(der)
}

// protector protects an answer: with the request's shared secret, or
// signed by the RA.
type protector struct {
	ra     *RA
	client *x509.Certificate // the request's signer, when signed

	macAlg pkix.AlgorithmIdentifier
	secret []byte
	kid    []byte
	// nonce, when set, receives the answer's senderNonce (kept with the
	// transaction).
	nonce *[]byte
}

// build encodes an answer to req with body content of type t.
func (f *Frontend) build(req *Message, p *protector, t int, content any, extra []*x509.Certificate, info []InfoTypeAndValue) ([]byte, error) {
	body, err := marshalBody(t, content)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	h := Header{PVNO: PVNO2000, Sender: f.senderName(), MessageTime: time.Now().UTC().Truncate(time.Second), SenderNonce: nonce, GeneralInfo: info}
	h.Recipient = asn1.RawValue{FullBytes: emptyName}
	if req != nil {
		if req.Header.PVNO == PVNO2021 {
			h.PVNO = PVNO2021
		}
		if len(req.Header.Sender.FullBytes) > 0 {
			h.Recipient = asn1.RawValue{FullBytes: req.Header.Sender.FullBytes}
		}
		h.TransactionID, h.RecipNonce = req.Header.TransactionID, req.Header.SenderNonce
	}
	if p != nil && p.ra != nil {
		h.ProtectionAlg, h.SenderKID, h.Sender = p.ra.alg, p.ra.Cert.SubjectKeyId, directoryName(p.ra.Cert.RawSubject)
		extra = append(append([]*x509.Certificate{p.ra.Cert}, p.ra.Chain...), extra...)
	} else if p != nil {
		if h.ProtectionAlg, err = freshMACAlg(p.macAlg); err != nil {
			return nil, err
		}
		h.SenderKID = p.kid
	}
	if p != nil && p.nonce != nil {
		*p.nonce = nonce
	}
	hder, err := asn1.Marshal(h)
	if err != nil {
		return nil, err
	}
	out := rawMessage{Header: asn1.RawValue{FullBytes: hder}, Body: asn1.RawValue{FullBytes: body}}
	switch {
	case p != nil && p.ra != nil:
		_, sig, err := p.ra.sign(protectedPart(hder, body))
		if err != nil {
			return nil, err
		}
		out.Protection = asn1.BitString{Bytes: sig, BitLength: len(sig) * 8}
	case p != nil:
		mac, err := computeMAC(h.ProtectionAlg, p.secret, protectedPart(hder, body))
		if err != nil {
			return nil, err
		}
		out.Protection = asn1.BitString{Bytes: mac, BitLength: len(mac) * 8}
	}
	var seen []*x509.Certificate
	for _, c := range extra {
		if !slices.ContainsFunc(seen, c.Equal) {
			seen = append(seen, c)
			out.ExtraCerts = append(out.ExtraCerts, asn1.RawValue{FullBytes: c.Raw})
		}
	}
	return asn1.Marshal(out)
}

// emptyName is a directoryName with an empty Name (RFC 9483 §3.1: the
// NULL-DN when a sender is not known).
var emptyName = []byte{0xa4, 0x02, 0x30, 0x00}

// senderName is our GeneralName: the issuing CA's subject.
func (f *Frontend) senderName() asn1.RawValue {
	if svc := f.service(); svc != nil {
		if c, err := svc.CA.Certificate(""); err == nil {
			return directoryName(c.RawSubject)
		}
	}
	return asn1.RawValue{FullBytes: emptyName}
}

func directoryName(rawName []byte) asn1.RawValue {
	der, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: rawName})
	return asn1.RawValue{FullBytes: der}
}

// txName is a transaction's record name.
func txName(label string, txid []byte) string {
	return "t." + base64.RawURLEncoding.EncodeToString([]byte(label)) + "." + base64.RawURLEncoding.EncodeToString(txid)
}

// checkHeader applies the rules every request obeys.
func (f *Frontend) checkHeader(m *Message) error {
	h := &m.Header
	if h.PVNO != PVNO2000 && h.PVNO != PVNO2021 {
		return refuse(FailUnsupportedVersion, "pvno %d: this server speaks cmp2000 (2) and cmp2021 (3)", h.PVNO)
	}
	if len(h.TransactionID) < 16 || len(h.TransactionID) > 64 {
		return refuse(FailBadRequest, "the transactionID must be 16 to 64 bytes")
	}
	if len(h.SenderNonce) < 16 || len(h.SenderNonce) > 64 {
		return refuse(FailBadSenderNonce, "the senderNonce must be 16 to 64 bytes")
	}
	if !h.MessageTime.IsZero() {
		if d := time.Since(h.MessageTime); d > f.o.Skew || d < -f.o.Skew {
			return refuse(FailBadTime, "messageTime is %s from the server's clock (allowed: %s)", d.Round(time.Second), f.o.Skew)
		}
	}
	return nil
}

// bytesEqual compares nonces.
func bytesEqual(a, b []byte) bool { return len(a) > 0 && bytes.Equal(a, b) }

// context helpers

func waitCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = time.Millisecond
	}
	return context.WithTimeout(ctx, d)
}
