package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/server"
)

// env is a running qpki server (ECDSA root CA, one worker) with the SCEP
// front-end on its plain-HTTP listener.
type env struct {
	t    testing.TB
	dir  string
	srv  *server.Server
	fe   *Frontend
	base string // http://addr/scep
	ra   *x509.Certificate
	ca   *x509.Certificate
}

func newEnv(t testing.TB, opts func(*Options)) *env { return newEnvWith(t, opts, nil, nil) }

// newEnvWith runs before on the CA (opened) before serve starts, and
// scfg on serve's configuration.
func newEnvWith(t testing.TB, opts func(*Options), before func(*ca.CA), scfg func(*server.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "SCEP Test Root"}})
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := c.Certificate("")
	if before != nil {
		before(c)
	}
	c.Close()
	o := Options{DataDir: filepath.Join(dir, "data"), Wait: 20 * time.Second, IssueRAAtStart: true}
	if opts != nil {
		opts(&o)
	}
	fe, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{CADir: filepath.Join(dir, "ca"), DataDir: o.DataDir,
		Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Workers: 1, PublishCRL: true}
	if scfg != nil {
		scfg(&cfg)
	}
	srv, err := server.Start(context.Background(), cfg, fe)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	<-srv.HTTPSReady()
	e := &env{t: t, dir: dir, srv: srv, fe: fe, base: "http://" + srv.CRLAddr + PathPrefix, ca: caCert}
	a := (*fe.cas.Load())[""]
	if !o.IssueRAAtStart {
		// The first request makes the RA, and waits for it.
		resp, err := http.Get(e.base + "?operation=GetCACert")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || a.RA() == nil {
			t.Fatalf("first GetCACert without an RA: HTTP %d", resp.StatusCode)
		}
	}
	for i := 0; a.RA() == nil; i++ {
		if i == 600 {
			t.Fatal("no RA certificate after 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.ra = a.RA().Cert
	return e
}

// issued counts the certificates in the CA's store.
func (e *env) issued() int {
	st, err := e.srv.Core.CA.Store()
	if err != nil {
		e.t.Fatal(err)
	}
	all, err := st.List(store.Filter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(all)
}

// challenge adds a one-time challenge granting dns on label.
func (e *env) challenge(label string, dns ...string) string {
	pw, hash, err := NewChallenge()
	if err != nil {
		e.t.Fatal(err)
	}
	c := Challenge{Label: label, Created: time.Now(), Expires: time.Now().Add(time.Hour)}
	if len(dns) > 0 {
		c.Names = namesDNS(dns...)
	}
	if err := e.fe.challenges.Add(hash, c); err != nil {
		e.t.Fatal(err)
	}
	return pw
}

// client is a SCEP client written on pkg/cms, so that tests can choose
// every field (and break it).
type client struct {
	t      testing.TB
	key    crypto.Signer
	cert   *x509.Certificate // self-signed, or the one being renewed
	ra     *x509.Certificate
	url    string
	cipher asn1.ObjectIdentifier
}

func newClient(t testing.TB, e *env, label string) *client {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	u := e.base
	if label != "" {
		u += "/" + label
	}
	c := &client{t: t, key: key, ra: e.ra, url: u, cipher: cms.OIDAES128CBC}
	c.cert = selfSigned(t, key)
	return c
}

func selfSigned(t testing.TB, key crypto.Signer) *x509.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "SCEP SIGNER"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// csr makes a CSR for cn (and dns) with a challengePassword.
func (c *client) csr(cn, challenge string, dns ...string) []byte {
	c.t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	if challenge != "" {
		v, _ := asn1.Marshal(challenge)
		return csrWithChallenge(c.t, c.key, tmpl, v)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, c.key)
	if err != nil {
		c.t.Fatal(err)
	}
	return der
}

// csrWithChallenge builds a CSR whose attributes hold, next to the
// extension request, a challengePassword.
func csrWithChallenge(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest, value []byte) []byte {
	t.Helper()
	base, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := x509.ParseCertificateRequest(base)
	var tbs struct {
		Version int
		Subject asn1.RawValue
		SPKI    asn1.RawValue
		Attrs   []asn1.RawValue `asn1:"optional,tag:0,set"`
	}
	if _, err := asn1.Unmarshal(parsed.RawTBSCertificateRequest, &tbs); err != nil {
		t.Fatal(err)
	}
	attrDER, _ := asn1.Marshal(struct {
		Type  asn1.ObjectIdentifier
		Value []asn1.RawValue `asn1:"set"`
	}{oidChallengePassword, []asn1.RawValue{{FullBytes: value}}})
	tbs.Attrs = append(tbs.Attrs, asn1.RawValue{FullBytes: attrDER})
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		t.Fatal(err)
	}
	s, err := algo.NewSigner(key, mustAlg(t, key))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := algo.SignDigest(s, rand.Reader, tbsDER, false)
	if err != nil {
		t.Fatal(err)
	}
	var sigAlg asn1.RawValue
	rest := parsed.Raw
	var outer struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(rest, &outer); err != nil {
		t.Fatal(err)
	}
	sigAlg = outer.Alg
	der, err := asn1.Marshal(struct {
		TBS    asn1.RawValue
		Alg    asn1.RawValue
		Signed asn1.BitString
	}{asn1.RawValue{FullBytes: tbsDER}, sigAlg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		t.Fatal(err)
	}
	if csr, err := x509.ParseCertificateRequest(der); err != nil || csr.CheckSignature() != nil {
		t.Fatalf("test CSR: %v", err)
	}
	return der
}

func mustAlg(t testing.TB, key crypto.Signer) algo.Algorithm {
	a, err := algo.Of(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// message builds a pkiMessage: content encrypted to the RA (or to), and
// signed by the client's certificate.
func (c *client) message(typ MessageType, txid string, content []byte, to ...*x509.Certificate) []byte {
	c.t.Helper()
	if len(to) == 0 {
		to = []*x509.Certificate{c.ra}
	}
	var rs []cms.Recipient
	for _, r := range to {
		rs = append(rs, cms.Recipient{Certificate: r})
	}
	env, err := cms.EncryptTo(rand.Reader, content, rs, cms.EncryptOptions{RSAPKCS1v15: true, ContentCipher: c.cipher})
	if err != nil {
		c.t.Fatal(err)
	}
	s, err := algo.NewSigner(c.key, mustAlg(c.t, c.key))
	if err != nil {
		c.t.Fatal(err)
	}
	nonce := make([]byte, nonceSize)
	rand.Read(nonce)
	der, err := cms.Sign(rand.Reader, env, cms.SignOptions{Signer: s, Certificate: c.cert, Attributes: []cms.Attribute{
		{Type: oidMessageType, Value: printable(strconv.Itoa(int(typ)))},
		{Type: oidTransactionID, Value: printable(txid)},
		{Type: oidSenderNonce, Value: nonce},
	}})
	if err != nil {
		c.t.Fatal(err)
	}
	return der
}

// rep is a parsed CertRep.
type rep struct {
	status         PKIStatus
	fail           FailInfo
	txid           string
	recipientNonce []byte
	certs          []*x509.Certificate
	crls           int
	reason         string
}

// post sends a message and parses the CertRep, checking the RA's
// signature.
func (c *client) post(body []byte) *rep {
	c.t.Helper()
	resp, err := http.Post(c.url+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	return c.parse(resp)
}

// get sends a message with GET, base64 in message=.
func (c *client) get(body []byte) *rep {
	c.t.Helper()
	resp, err := http.Get(c.url + "?operation=PKIOperation&message=" + url.QueryEscape(base64.StdEncoding.EncodeToString(body)))
	if err != nil {
		c.t.Fatal(err)
	}
	return c.parse(resp)
}

func (c *client) parse(resp *http.Response) *rep {
	c.t.Helper()
	r, err := c.parseRep(resp)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *client) parseRep(resp *http.Response) (*rep, error) {
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-pki-message" {
		return nil, fmt.Errorf("HTTP %d %s: %.300s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	sd, err := cms.ParseSignedData(data)
	if err != nil {
		return nil, err
	}
	content := sd.Content
	if content == nil {
		content = []byte{}
	}
	vs, err := sd.Verify(cms.VerifyOptions{Content: content, AllowSHA1: true}) // step-ca signs with SHA-1
	if err != nil || !vs[0].Certificate.Equal(c.ra) {
		return nil, fmt.Errorf("CertRep signature: %v", err)
	}
	s := sd.Signers[0]
	r := &rep{reason: resp.Header.Get("X-SCEP-Reason")}
	var typ, status, fi string
	attr(s, oidMessageType, &typ)
	attr(s, oidPKIStatus, &status)
	attr(s, oidTransactionID, &r.txid)
	attr(s, oidRecipientNonce, &r.recipientNonce)
	if typ != "3" {
		return nil, fmt.Errorf("messageType %q", typ)
	}
	n, _ := strconv.Atoi(status)
	r.status = PKIStatus(n)
	if attr(s, oidFailInfo, &fi) == nil {
		n, _ := strconv.Atoi(fi)
		r.fail = FailInfo(n)
	}
	if r.status == StatusSuccess {
		env, err := cms.ParseEnvelope(sd.Content)
		var plain []byte
		if err == nil {
			plain, err = env.DecryptWith(c.key, nil, cms.DecryptOptions{Legacy: true})
		}
		if err != nil {
			return nil, fmt.Errorf("decrypting the CertRep: %v", err)
		}
		r.certs, _ = cms.ParseCertsOnly(plain)
		r.crls = countCRLs(plain)
	}
	return r, nil
}

func countCRLs(p7 []byte) int {
	_, inner, err := cms.Unwrap(p7)
	if err != nil {
		return 0
	}
	var sd struct {
		Version int
		Digests asn1.RawValue
		Encap   asn1.RawValue
		Certs   asn1.RawValue `asn1:"optional,tag:0"`
		CRLs    asn1.RawValue `asn1:"optional,tag:1"`
		Signers asn1.RawValue
	}
	if _, err := asn1.Unmarshal(inner, &sd); err != nil {
		return 0
	}
	n := 0
	for rest := sd.CRLs.Bytes; len(rest) > 0; n++ {
		var rv asn1.RawValue
		if rest, err = asn1.Unmarshal(rest, &rv); err != nil {
			return n
		}
	}
	return n
}

// enroll sends a PKCSReq and returns the CertRep.
func (c *client) enroll(txid, cn, challenge string, dns ...string) *rep {
	c.t.Helper()
	return c.post(c.message(PKCSReq, txid, c.csr(cn, challenge, dns...)))
}

func newP256(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issueRA certifies an RA for c in process, for a server without workers.
func issueRA(t testing.TB, c *ca.CA) {
	t.Helper()
	key, der, err := NewRAKey("ca")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509x.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.Issue(context.Background(), ca.IssueRequest{Profile: RAProfile, CSR: csr, Vars: map[string]any{"cn": "ca SCEP RA"}}, ca.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SaveRA(c.Dir, key, rec.DER); err != nil {
		t.Fatal(err)
	}
}

// listenerFiles writes a self-signed listener certificate and key.
func listenerFiles(t testing.TB, dir string) (string, string) {
	key := newP256(t)
	cert := selfSigned(t, key)
	k, _ := x509.MarshalPKCS8PrivateKey(key)
	cf, kf := filepath.Join(dir, "listener.crt"), filepath.Join(dir, "listener.key")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600)
	return cf, kf
}
