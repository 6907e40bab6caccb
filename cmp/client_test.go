package cmp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"math/big"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/server"
	"github.com/qpki/qpki/worker"
)

// client is a minimal CMP client for what openssl cmp 3.0 cannot do.
type client struct {
	t      testing.TB
	url    string
	ref    string
	secret []byte
	alg    func() pkix.AlgorithmIdentifier
	txid   []byte
	last   []byte // the server's last senderNonce
	// signer and cert, when set, sign the messages instead of the MAC.
	signer *ecdsa.PrivateKey
	cert   *x509.Certificate
	when   time.Time
}

func newClient(t testing.TB, url, ref, secret string) *client {
	txid := make([]byte, 16)
	rand.Read(txid)
	return &client{t: t, url: url, ref: ref, secret: []byte(secret), alg: NewPBMAlg, txid: txid}
}

// message builds a MAC-protected PKIMessage with body body.
func (c *client) message(t int, content []byte, info ...InfoTypeAndValue) []byte {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	when := c.when
	if when.IsZero() {
		when = time.Now()
	}
	h := Header{PVNO: PVNO2000, Sender: asn1.RawValue{FullBytes: emptyName}, Recipient: asn1.RawValue{FullBytes: emptyName},
		MessageTime: when.UTC().Truncate(time.Second), SenderKID: []byte(c.ref), TransactionID: c.txid,
		SenderNonce: nonce, RecipNonce: c.last, GeneralInfo: info}
	if c.signer != nil {
		h.ProtectionAlg, h.SenderKID, h.Sender = pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}, c.cert.SubjectKeyId, directoryName(c.cert.RawSubject)
	} else {
		h.ProtectionAlg = c.alg()
	}
	hder, err := asn1.Marshal(h)
	if err != nil {
		c.t.Fatal(err)
	}
	body, _ := asn1.Marshal(tagged(t, content))
	var prot []byte
	var extra []asn1.RawValue
	if c.signer != nil {
		d := sha256.Sum256(protectedPart(hder, body))
		prot, _ = ecdsa.SignASN1(rand.Reader, c.signer, d[:])
		extra = []asn1.RawValue{{FullBytes: c.cert.Raw}}
	} else if prot, err = computeMAC(h.ProtectionAlg, c.secret, protectedPart(hder, body)); err != nil {
		c.t.Fatal(err)
	}
	der, err := asn1.Marshal(rawMessage{Header: asn1.RawValue{FullBytes: hder}, Body: asn1.RawValue{FullBytes: body},
		Protection: asn1.BitString{Bytes: prot, BitLength: len(prot) * 8}, ExtraCerts: extra})
	if err != nil {
		c.t.Fatal(err)
	}
	return der
}

// post sends a message and parses the answer, checking its MAC when the
// answer is protected.
func (c *client) post(der []byte) (*Message, int) {
	resp, err := http.Post(c.url, MediaType, bytes.NewReader(der))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m, err := ParseMessage(body)
	if err != nil {
		c.t.Fatalf("HTTP %d: %v: %q", resp.StatusCode, err, body)
	}
	if IsMAC(m.Header.ProtectionAlg) {
		if err := verifyMAC(m, c.secret); err != nil {
			c.t.Fatalf("answer: %v", err)
		}
	}
	c.last = m.Header.SenderNonce
	return m, resp.StatusCode
}

// ir is a CertReqMessages for key with subject cn.
func ir(t testing.TB, key *ecdsa.PrivateKey, cn string) []byte {
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	var spkiSeq asn1.RawValue
	asn1.Unmarshal(spki, &spkiSeq)
	subj, _ := asn1.Marshal(pkix.Name{CommonName: cn}.ToRDNSequence())
	subjT, _ := asn1.Marshal(tagged(5, subj))
	pubT, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, IsCompound: true, Bytes: spkiSeq.Bytes})
	tmpl, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(subjT, pubT...)})
	id, _ := asn1.Marshal(0)
	certReq, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(id, tmpl...)})
	d := sha256.Sum256(certReq)
	sig, _ := ecdsa.SignASN1(rand.Reader, key, d[:])
	alg, _ := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}})
	bs, _ := asn1.Marshal(asn1.BitString{Bytes: sig, BitLength: len(sig) * 8})
	popo, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: append(alg, bs...)})
	msg, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(certReq, popo...)})
	out, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: msg})
	return out
}

// issued reads the certificate of an ip, or fails.
func issued(t testing.TB, m *Message) *x509.Certificate {
	t.Helper()
	if m.Type() != BodyIP && m.Type() != BodyCP {
		t.Fatalf("answer type %d: %s", m.Type(), errorText(m))
	}
	var rep CertRepMessage
	if err := m.content(&rep); err != nil || len(rep.Response) != 1 {
		t.Fatalf("CertRepMessage: %v", err)
	}
	var choice asn1.RawValue // certOrEncCert: certificate [0]
	if _, err := asn1.Unmarshal(rep.Response[0].CertifiedKeyPair.Bytes, &choice); err != nil || choice.Tag != 0 {
		t.Fatalf("certifiedKeyPair: %v (status %d)", err, rep.Response[0].Status.Status)
	}
	c, err := x509.ParseCertificate(choice.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// failInfo is an error message's failure bit, or -1.
func failInfo(m *Message) FailInfo {
	if m.Type() != BodyError {
		return -1
	}
	var e ErrorMsgContent
	if m.content(&e) != nil {
		return -1
	}
	for i := 0; i < e.Status.FailInfo.BitLength; i++ {
		if e.Status.FailInfo.At(i) == 1 {
			return FailInfo(i)
		}
	}
	return -1
}

func errorText(m *Message) string {
	var e ErrorMsgContent
	if m.Type() == BodyError && m.content(&e) == nil {
		return e.Status.StatusString.String()
	}
	return ""
}

func certConfBody(cert *x509.Certificate, id int64) []byte {
	alg, _ := certHashAlg(cert, pkix.AlgorithmIdentifier{})
	h := alg.New()
	h.Write(cert.Raw)
	der, _ := asn1.Marshal([]CertStatus{{CertHash: h.Sum(nil), CertReqID: big.NewInt(id)}})
	return der
}

// TestReplayNoncesAndTime: a replayed ir (same transactionID), a certConf
// with a wrong recipNonce, a certConf replayed after pkiConf and a stale
// messageTime are refused with their failure bits; only the one
// certificate is issued.
func TestReplayNoncesAndTime(t *testing.T) {
	e := newEnv(t, envConfig{})
	c := newClient(t, e.url+Path, "r1", e.secret("r1", "", nil))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	first := c.message(BodyIR, ir(t, key, "r1.example.com"))
	m, _ := c.post(first)
	cert := issued(t, m)
	good := c.last
	if m, _ := c.post(first); failInfo(m) != FailTransactionIDInUse {
		t.Fatalf("replayed ir: %d %s", failInfo(m), errorText(m))
	}
	c.last = bytes.Repeat([]byte{1}, 16)
	if m, _ := c.post(c.message(BodyCertConf, certConfBody(cert, 0))); failInfo(m) != FailBadRecipientNonce {
		t.Fatalf("wrong recipNonce: %d %s", failInfo(m), errorText(m))
	}
	// The refused certConf's answer changed c.last: go back to the ip's.
	c.last = good
	conf := c.message(BodyCertConf, certConfBody(cert, 0))
	if m, _ := c.post(conf); m.Type() != BodyPKIConf {
		t.Fatalf("certConf: %d %s", m.Type(), errorText(m))
	}
	if m, _ := c.post(conf); failInfo(m) != FailBadRecipientNonce {
		t.Fatalf("replayed certConf: %d %s", failInfo(m), errorText(m))
	}
	stale := newClient(t, e.url+Path, "r2", e.secret("r2", "", nil))
	stale.when = time.Now().Add(-time.Hour)
	if m, _ := stale.post(stale.message(BodyIR, ir(t, key, "r2.example.com"))); failInfo(m) != FailBadTime {
		t.Fatalf("stale messageTime: %d %s", failInfo(m), errorText(m))
	}
	if n := len(e.certs()); n != 1 {
		t.Fatalf("%d certificates, want 1", n)
	}
}

// TestGarbageAndOversized: bytes that are no PKIMessage, and a body over
// 256 KiB, get CMP error messages (badDataFormat, badRequest).
func TestGarbageAndOversized(t *testing.T) {
	e := newEnv(t, envConfig{})
	c := newClient(t, e.url+Path, "g", "")
	for _, tc := range []struct {
		body   []byte
		status int
		want   FailInfo
	}{
		{[]byte("not a PKIMessage"), http.StatusBadRequest, FailBadDataFormat},
		{make([]byte, MaxBody+1), http.StatusRequestEntityTooLarge, FailBadRequest},
	} {
		m, code := c.post(tc.body)
		if code != tc.status || failInfo(m) != tc.want {
			t.Errorf("%d bytes: HTTP %d, fail %d", len(tc.body), code, failInfo(m))
		}
	}
	if n := len(e.certs()); n != 0 {
		t.Fatalf("%d certificates", n)
	}
}

// TestPBMAC1 enrolls with PBMAC1 protection; the answer is PBMAC1 too.
func TestPBMAC1(t *testing.T) {
	e := newEnv(t, envConfig{})
	c := newClient(t, e.url+Path, "p1", e.secret("p1", "", nil))
	c.alg = NewPBMAC1Alg
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	m, _ := c.post(c.message(BodyIR, ir(t, key, "p1.example.com"), InfoTypeAndValue{Type: OIDITImplicitConfirm, Value: asn1.NullRawValue}))
	if !m.Header.ProtectionAlg.Algorithm.Equal(OIDPBMAC1) {
		t.Fatalf("answer protected with %v", m.Header.ProtectionAlg.Algorithm)
	}
	if cert := issued(t, m); cert.Subject.CommonName != "p1.example.com" {
		t.Fatal(cert.Subject)
	}
}

// TestPolling: with no worker the ir is answered "waiting"; pollReq gets
// pollRep until a worker signs, then the certificate: one job, one
// certificate.
func TestPolling(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, envConfig{noWorkers: true, opts: func(o *Options) { o.Wait = 200 * time.Millisecond; o.CheckAfter = time.Second },
		server: func(c *server.Config) { c.TLSCert, c.TLSKey = selfSigned(t, dir) }})
	<-e.srv.HTTPSReady()
	c := newClient(t, e.url+Path, "w1", e.secret("w1", "", nil))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	m, _ := c.post(c.message(BodyIR, ir(t, key, "w1.example.com"), InfoTypeAndValue{Type: OIDITImplicitConfirm, Value: asn1.NullRawValue}))
	var rep CertRepMessage
	if m.Type() != BodyIP || m.content(&rep) != nil || rep.Response[0].Status.Status != int(StatusWaiting) {
		t.Fatalf("first answer %d %s", m.Type(), errorText(m))
	}
	poll, _ := asn1.Marshal([]PollReq{{CertReqID: big.NewInt(0)}})
	if m, _ := c.post(c.message(BodyPollReq, poll)); m.Type() != BodyPollRep {
		t.Fatalf("poll before a worker: %d %s", m.Type(), errorText(m))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		wq, err := e.srv.Core.Queue.WorkerQueue(ctx)
		if err != nil {
			done <- err
			return
		}
		defer wq.Close()
		done <- worker.Run(ctx, e.srv.Core.CA, wq, worker.Options{QueueName: enroll.QueueName(e.srv.Core.CA)})
	}()
	t.Cleanup(func() { cancel(); <-done })
	for i := 0; i < 100; i++ {
		m, _ = c.post(c.message(BodyPollReq, poll))
		if m.Type() != BodyPollRep {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if cert := issued(t, m); cert.Subject.CommonName != "w1.example.com" {
		t.Fatal(cert.Subject)
	}
	if n := len(e.certs()); n != 1 {
		t.Fatalf("%d certificates, want 1", n)
	}
}

// selfSigned writes a listener certificate and key, so that serve mounts
// its front-ends without a worker.
func selfSigned(t testing.TB, dir string) (string, string) {
	key := filepath.Join(dir, "tls.key")
	k := newKeyFile(t, key)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return writePEM(t, filepath.Join(dir, "tls.pem"), c), key
}

// TestUnconfirmedRevoked: a certificate whose certConf never comes is
// revoked once the confirmation timeout passed (RFC 9810 §5.3.18); a
// confirmed one is left alone.
func TestUnconfirmedRevoked(t *testing.T) {
	e := newEnv(t, envConfig{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lost := newClient(t, e.url+Path, "u1", e.secret("u1", "", nil))
	m, _ := lost.post(lost.message(BodyIR, ir(t, key, "u1.example.com")))
	unconfirmed := issued(t, m)
	kept := newClient(t, e.url+Path, "u2", e.secret("u2", "", nil))
	m, _ = kept.post(kept.message(BodyIR, ir(t, key, "u2.example.com")))
	confirmed := issued(t, m)
	if m, _ := kept.post(kept.message(BodyCertConf, certConfBody(confirmed, 0))); m.Type() != BodyPKIConf {
		t.Fatalf("certConf: %s", errorText(m))
	}
	e.fe.SweepOnce(time.Now().Add(time.Hour))
	st, _ := e.srv.Core.CA.Store()
	if rec, err := st.Cert(unconfirmed.SerialNumber); err != nil || rec.Revocation == nil {
		t.Fatalf("unconfirmed certificate not revoked: %v", err)
	}
	if rec, err := st.Cert(confirmed.SerialNumber); err != nil || rec.Revocation != nil {
		t.Fatalf("confirmed certificate revoked: %v", err)
	}
}
