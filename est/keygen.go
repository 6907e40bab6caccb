package est

import (
	"bytes"
	"crypto"
	"crypto/hpke"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sync"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/queue"
)

// pendingKeys are the one-time keys of serverkeygen jobs not yet
// delivered. A worker seals the generated private key to one of them, so
// the key is never in clear outside the worker and the response; once
// delivered, or after the TTL, the one-time key is forgotten and what is
// left of the sealed key in the results stream can no longer be opened.
type pendingKeys struct {
	mu   sync.Mutex
	max  int
	ttl  time.Duration
	keys map[string]*pendingKey
}

type pendingKey struct {
	priv    hpke.PrivateKey
	created time.Time
	taken   bool
}

func newPendingKeys(max int, ttl time.Duration) *pendingKeys {
	return &pendingKeys{max: max, ttl: ttl, keys: map[string]*pendingKey{}}
}

var errTooManyPending = errors.New("too many server-generated keys are waiting for delivery")

// get returns the one-time key of a request, making it on first use.
func (p *pendingKeys) get(key string) (*pendingKey, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if k, ok := p.keys[key]; ok && now.Sub(k.created) < p.ttl {
		return k, nil
	}
	if len(p.keys) >= p.max {
		for n, k := range p.keys {
			if now.Sub(k.created) >= p.ttl {
				delete(p.keys, n)
			}
		}
		if len(p.keys) >= p.max {
			return nil, errTooManyPending
		}
	}
	priv, err := jobspec.NewKeygenRecipient()
	if err != nil {
		return nil, err
	}
	k := &pendingKey{priv: priv, created: now}
	p.keys[key] = k
	return k, nil
}

// take marks a key delivered and forgets it; only one response gets it.
func (p *pendingKeys) take(key string, k *pendingKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k.taken {
		return false
	}
	k.taken = true
	if p.keys[key] == k {
		delete(p.keys, key)
	}
	return true
}

func (p *pendingKeys) clear() {
	p.mu.Lock()
	p.keys = map[string]*pendingKey{}
	p.mu.Unlock()
}

// serverKeygen serves serverkeygen (RFC 7030 §4.4): a worker generates
// the key and the certificate; the answer is multipart/mixed with the key
// (application/pkcs8, or application/pkcs7-mime;
// smime-type=server-generated-key when the CSR names a key to encrypt
// it to) and the certificate (certs-only).
func (f *Frontend) serverKeygen(w http.ResponseWriter, r *http.Request) {
	label, l, ok := f.label(w, r)
	if !ok {
		return
	}
	der, ok := readCSR(w, r)
	if !ok {
		return
	}
	csr, ok := parseCSR(w, der)
	if !ok {
		return
	}
	who, err := f.authenticate(r, l)
	if err != nil {
		f.refuse(w, l, err)
		return
	}
	if !f.ready(w, l) || !f.limits.allowPrincipal(w, who) || !f.checkBinding(w, r, l, csr) {
		return
	}
	attrs, err := csrAttributes(csr.RawTBSCertificateRequest)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	_, symmetric, err := octetAttribute(attrs, oidDecryptKeyID)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	asymID, asymmetric, err := octetAttribute(attrs, oidAsymmDecryptKeyID)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var rcpt *recipient
	switch {
	case asymmetric:
		if rcpt, err = findRecipient(asymID, who.cert, csr); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
	case symmetric:
		httpError(w, http.StatusBadRequest, "DecryptKeyIdentifier names a symmetric key, and this server holds none: use AsymmetricDecryptKeyIdentifier, or neither for the key in clear over TLS")
		return
	}
	key := idempotencyKey("keygen", label, who.id(), der)
	pk, err := f.pending.get(key)
	if err != nil {
		w.Header().Set("Retry-After", fmt.Sprint(max(1, int(f.o.RetryAfter.Seconds()))))
		httpError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	id, err := f.svc.SubmitKeygen(r.Context(), enroll.KeygenRequest{Profile: l.Profile, Vars: l.vars(who), CSR: der,
		Key: key, Class: queue.ClassInteractive, Recipient: pk.priv.PublicKey().Bytes(), Principal: who.enroll(label, l)})
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
		f.internal(w, "serverkeygen", err)
		return
	}
	sealed, err := f.svc.SealedKey(r.Context(), id)
	if err != nil {
		f.internal(w, "serverkeygen", err)
		return
	}
	pkcs8, err := jobspec.OpenKey(pk.priv, id, sealed)
	if err != nil || !f.pending.take(key, pk) {
		httpError(w, http.StatusConflict, "the key generated for this CSR was already delivered or can no longer be opened by this server: send a new CSR")
		return
	}
	defer clear(pkcs8)
	priv, err := algo.ParsePKCS8(pkcs8)
	if err != nil {
		f.internal(w, "serverkeygen", err)
		return
	}
	signer, ok := priv.(crypto.Signer)
	if !ok || !samePublicKey(signer.Public(), cert) {
		f.internal(w, "serverkeygen", errors.New("the generated key does not match its certificate"))
		return
	}
	keyType, keyDER := mediaPKCS8, pkcs8
	if rcpt != nil {
		keyType = mediaKeyCMS
		if keyDER, err = encryptedKey(rand.Reader, rcpt, signer, pkcs8, cert); err != nil {
			httpError(w, http.StatusBadRequest, "encrypting the key: %v", err)
			return
		}
	}
	p7, err := cms.CertsOnly(cert)
	if err != nil {
		f.internal(w, "serverkeygen", err)
		return
	}
	body, ctype, err := multipartBody([]part{{keyType, keyDER}, {mediaCertsOnly, p7}})
	if err != nil {
		f.internal(w, "serverkeygen", err)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	clear(body)
}

func samePublicKey(pub crypto.PublicKey, cert *x509.Certificate) bool {
	spki, err := algo.MarshalPKIX(pub)
	return err == nil && bytes.Equal(spki, cert.RawSubjectPublicKeyInfo)
}

type part struct {
	mediaType string
	der       []byte
}

// multipartBody writes a multipart/mixed body of base64 parts.
func multipartBody(parts []part) ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.mediaType)
		h.Set("Content-Transfer-Encoding", "base64")
		pw, err := mw.CreatePart(h)
		if err != nil {
			return nil, "", err
		}
		pw.Write(encodeBase64(p.der))
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "multipart/mixed; boundary=" + mw.Boundary(), nil
}
