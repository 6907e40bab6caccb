package ca

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/keyfile"
	"github.com/qpki/qpki/pkg/ocspx"
	"github.com/qpki/qpki/pkg/store"
)

// OCSP: the CA's answers are signed by its own key or by a delegated
// responder, a short-lived certificate with id-kp-OCSPSigning and
// id-pkix-ocsp-nocheck whose key lives in <ca-dir>/ocsp/ or in the HSM.

// Files of the delegated responder, relative to the CA dir.
const (
	OCSPDir             = "ocsp"
	responderMetaFile   = "ocsp/responder.json"
	responderCertFile   = "ocsp/responder.crt"
	ResponderProfileRef = "ocsp/responder"
)

// ErrNoResponder is returned when the CA has no delegated responder.
var ErrNoResponder = errors.New("the CA has no delegated OCSP responder (`qpki ocsp responder issue`)")

// ResponderMeta records the delegated responder: its certificate and
// where its key lives (never the key itself).
type ResponderMeta struct {
	Cert     string    `json:"cert"`
	Key      Key       `json:"key"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

// CreateResponderKey makes the delegated responder's key: a file in
// <ca-dir>/ocsp/ (encrypted when spec has a passphrase) or, with
// spec.HSMConfig, a key on the token labelled spec.Label.
func (c *CA) CreateResponderKey(a algo.Algorithm, spec KeySpec) (Key, algo.SignerCloser, error) {
	if !a.CanSign() {
		return Key{}, nil, fmt.Errorf("%s cannot sign OCSP responses", a)
	}
	k := Key{ID: "ocsp-responder", Algorithm: string(a)}
	if spec.HSMConfig != "" {
		_, b, err := backendFor(spec)
		if err != nil {
			return Key{}, nil, err
		}
		st, s, err := b.Create(c.Dir, c.Dir, OCSPDir, k.ID, a, spec)
		if err != nil {
			return Key{}, nil, err
		}
		k.Storage = st
		return k, s, nil
	}
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		return Key{}, nil, err
	}
	rel := OCSPDir + "/responder-" + time.Now().UTC().Format("20060102T150405") + "." + string(a) + ".key"
	abs := filepath.Join(c.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return Key{}, nil, err
	}
	if err := keyfile.Write(abs, priv, spec.Passphrase); err != nil {
		return Key{}, nil, err
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		return Key{}, nil, err
	}
	k.Storage = Storage{Type: "software", Path: rel}
	return k, closeNop{s}, nil
}

// SaveResponder installs a newly issued responder certificate for key:
// the certificate first, then the metadata that points at it, each
// written atomically.
func (c *CA) SaveResponder(key Key, der []byte) error {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	issuer, err := c.Certificate("")
	if err != nil {
		return err
	}
	if err := ocspx.CheckDelegate(cert, issuer); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, OCSPDir), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(c.Dir, responderCertFile), EncodeCerts(cert), 0o644); err != nil {
		return err
	}
	m := ResponderMeta{Cert: responderCertFile, Key: key, Serial: store.FormatSerial(cert.SerialNumber), NotAfter: cert.NotAfter}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.Dir, responderMetaFile), append(data, '\n'), 0o644)
}

// Responder reads the delegated responder's metadata and certificate.
func (c *CA) Responder() (*ResponderMeta, *x509.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(c.Dir, responderMetaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, ErrNoResponder
	}
	if err != nil {
		return nil, nil, err
	}
	var m ResponderMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", responderMetaFile, err)
	}
	certs, err := readCerts(filepath.Join(c.Dir, filepath.FromSlash(m.Cert)))
	if err != nil || len(certs) != 1 {
		return nil, nil, fmt.Errorf("delegated responder certificate %s: %v", m.Cert, err)
	}
	return &m, certs[0], nil
}

// OpenResponder opens the delegated responder's key.
func (c *CA) OpenResponder(opts KeyOptions) (*x509.Certificate, algo.SignerCloser, error) {
	m, cert, err := c.Responder()
	if err != nil {
		return nil, nil, err
	}
	s, err := openKey(c.Dir, m.Key, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("delegated OCSP responder: %w", err)
	}
	return cert, s, nil
}

// InstallResponderProfile writes the profile the responder certificates
// are issued with into the CA dir (profiles/ocsp/responder.yaml), unless
// one is there: an operator may have adapted it.
func (c *CA) InstallResponderProfile(a algo.Algorithm) error {
	path := filepath.Join(c.Dir, "profiles", filepath.FromSlash(ResponderProfileRef)+".yaml")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(fmt.Sprintf(responderProfile, a, a)), 0o644)
}

// responderProfile: RFC 6960 §4.2.2.2 — id-kp-OCSPSigning, and
// id-pkix-ocsp-nocheck (§4.2.2.2.1) so that clients need not check the
// responder's own status; a short life stands in for revocation.
const responderProfile = `# ocsp/responder — the CA's delegated OCSP responder (qpki ocsp responder issue).
name: ocsp/responder
description: delegated OCSP responder, id-kp-OCSPSigning with id-pkix-ocsp-nocheck, short-lived
algorithm: %s
allowedAlgorithms: [%s]
validity: 7d
backdate: 1m
subject:
  cn: "{{ cn }}"
  o: "{{ o }}"
extensions:
  keyUsage:
    critical: true
    values: [digitalSignature]
  extKeyUsage:
    critical: false
    values: [OCSPSigning]
  basicConstraints:
    critical: true
    ca: false
  custom:
    - oid: 1.3.6.1.5.5.7.48.1.5
      critical: false
      der: "0500"
lint:
  enabled: false
variables:
  cn:
    type: string
    required: true
    max: 64
  o:
    type: string
    max: 64
  validity:
    type: duration
    default: 7d
    min: 1h
    max: 90d
`

// SignOCSP signs the responses an OCSP job asks for, with s: the key of
// issuer (the CA version named by the job) or, when responder is set, of
// that delegated responder, whose certificate goes into each response.
func SignOCSP(req *jobspec.OCSP, issuer *x509.Certificate, s algo.Signer, pss bool, responder *x509.Certificate) ([][]byte, error) {
	if err := req.Check(); err != nil {
		return nil, err
	}
	h := ocspx.Hash(req.Hash)
	ih, err := ocspx.HashIssuer(issuer, h)
	if err != nil {
		return nil, err
	}
	signerCert, certs := issuer, []*x509.Certificate(nil)
	if responder != nil {
		signerCert, certs = responder, []*x509.Certificate{responder}
	}
	kh, err := ocspx.KeyHashSHA1(signerCert)
	if err != nil {
		return nil, err
	}
	singles, extended, err := ocspSingles(req, ih)
	if err != nil {
		return nil, err
	}
	var ts []*ocspx.Template
	if req.Together {
		ts = []*ocspx.Template{{ResponderKeyHash: kh, ProducedAt: req.ThisUpdate, Responses: singles,
			Nonce: req.Nonce, ExtendedRevoke: anyTrue(extended), Certs: certs}}
	} else {
		for i, sr := range singles {
			ts = append(ts, &ocspx.Template{ResponderKeyHash: kh, ProducedAt: req.ThisUpdate,
				Responses: []ocspx.Single{sr}, ExtendedRevoke: extended[i], Certs: certs})
		}
	}
	return ocspx.SignMany(rand.Reader, ts, s, pss)
}

func anyTrue(bs []bool) bool {
	for _, b := range bs {
		if b {
			return true
		}
	}
	return false
}

// ocspSingles turns a job's entries into SingleResponses; extended[i]
// tells that entry i is the never-issued form.
func ocspSingles(req *jobspec.OCSP, ih ocspx.IssuerHashes) ([]ocspx.Single, []bool, error) {
	next := req.ThisUpdate.Add(req.Validity)
	out := make([]ocspx.Single, len(req.Entries))
	ext := make([]bool, len(req.Entries))
	for i, e := range req.Entries {
		serial, err := store.ParseSerial(e.Serial)
		if err != nil {
			return nil, nil, err
		}
		id := ocspx.CertID{IssuerHashes: ih, Serial: serial}
		switch e.Status {
		case jobspec.OCSPGood:
			out[i] = ocspx.Single{ID: id, Status: ocspx.Good, Reason: ocspx.NoReason, ThisUpdate: req.ThisUpdate, NextUpdate: next}
		case jobspec.OCSPRevoked:
			out[i] = ocspx.Single{ID: id, Status: ocspx.Revoked, RevokedAt: e.RevokedAt, Reason: e.Reason, ThisUpdate: req.ThisUpdate, NextUpdate: next}
		default:
			out[i], ext[i] = ocspx.NotIssued(id, req.ThisUpdate, next), true
		}
	}
	return out, ext, nil
}

// CheckOCSP is the recorder's check of an OCSP result against its job:
// as many responses as asked for, each signed by the CA version's key or
// by a delegated responder of it (unless signatures is false: a result
// this process signed and checked, jobspec.Vouched), and saying exactly
// what the job asked (serials, statuses, revocation times and reasons,
// validity, nonce).
func CheckOCSP(req *jobspec.OCSP, issuer *x509.Certificate, responses [][]byte, signatures bool) error {
	want := len(req.Entries)
	if req.Together {
		want = 1
	}
	if len(responses) != want {
		return fmt.Errorf("OCSP result has %d responses, the job asked for %d", len(responses), want)
	}
	ih, err := ocspx.HashIssuer(issuer, ocspx.Hash(req.Hash))
	if err != nil {
		return err
	}
	singles, extended, err := ocspSingles(req, ih)
	if err != nil {
		return err
	}
	for i, der := range responses {
		expect, ext := singles, anyTrue(extended)
		if !req.Together {
			expect, ext = singles[i:i+1], extended[i]
		}
		r, err := ocspx.ParseResponse(der)
		if err != nil {
			return err
		}
		if signatures {
			if _, err := r.Verify(issuer); err != nil {
				return err
			}
		} else if err := checkResponder(r, issuer); err != nil {
			return err
		}
		if len(r.Responses) != len(expect) || r.ExtendedRevoke != ext || !bytes.Equal(r.Nonce, req.Nonce) {
			return fmt.Errorf("OCSP response %d does not answer what the job asked", i)
		}
		for k := range expect {
			if !sameSingle(r.Responses[k], expect[k]) {
				return fmt.Errorf("OCSP response %d: serial %s does not say what the job asked", i, expect[k].ID.Serial.Text(16))
			}
		}
	}
	return nil
}

// checkResponder checks, without the signature, that the response names
// the issuer or a delegated responder of it as its signer.
func checkResponder(r *ocspx.Response, issuer *x509.Certificate) error {
	kh, err := ocspx.KeyHashSHA1(issuer)
	if err != nil {
		return err
	}
	if bytes.Equal(kh, r.ResponderKeyHash) {
		return nil
	}
	for _, c := range r.Certs {
		if ckh, err := ocspx.KeyHashSHA1(c); err == nil && bytes.Equal(ckh, r.ResponderKeyHash) {
			return ocspx.CheckDelegate(c, issuer)
		}
	}
	return errors.New("ocspx: the responder is neither the issuer nor a certificate in the response")
}

func sameSingle(got, want ocspx.Single) bool {
	eq := func(a, b []byte) bool { return bytes.Equal(a, b) }
	return got.ID.Hash == want.ID.Hash && eq(got.ID.NameHash, want.ID.NameHash) && eq(got.ID.KeyHash, want.ID.KeyHash) &&
		got.ID.Serial.Cmp(want.ID.Serial) == 0 && got.Status == want.Status && got.Reason == want.Reason &&
		got.RevokedAt.Equal(want.RevokedAt.UTC().Truncate(time.Second)) && got.ThisUpdate.Equal(want.ThisUpdate.UTC().Truncate(time.Second)) &&
		got.NextUpdate.Equal(want.NextUpdate.UTC().Truncate(time.Second))
}
