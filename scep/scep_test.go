package scep

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/server"
	"github.com/qpki/qpki/worker"
)

func httpGet(t *testing.T, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

// hook is a real TLS webhook on loopback that allows the CNs in allow.
type hook struct {
	srv    *httptest.Server
	caFile string
	mu     sync.Mutex
	got    []WebhookRequest
}

func newHook(t *testing.T, allow string) *hook {
	h := &hook{}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q WebhookRequest
		json.NewDecoder(r.Body).Decode(&q)
		h.mu.Lock()
		h.got = append(h.got, q)
		h.mu.Unlock()
		ok := strings.Contains(q.Subject, "CN="+allow) && q.Challenge == "intune-token-1"
		json.NewEncoder(w).Encode(WebhookResponse{Allow: ok, Reason: "not a managed device"})
	}))
	t.Cleanup(h.srv.Close)
	h.caFile = filepath.Join(t.TempDir(), "hook.pem")
	os.WriteFile(h.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw}), 0o644)
	return h
}

// TestSCEP runs every operation against one server: a default label with
// one-time challenges, a static label, a legacy_des label and a webhook
// label.
func TestSCEP(t *testing.T) {
	t.Setenv("SCEP_TEST_PW", "jamf-static-secret")
	h := newHook(t, "managed.example.com")
	e := newEnv(t, func(o *Options) {
		o.Default = &Label{Names: &enroll.NamePolicy{}}
		o.Labels = map[string]*Label{
			"static":  {Challenge: ChallengeConfig{Kind: ChallengeStatic, PasswordEnv: "SCEP_TEST_PW"}, Names: namesDNS(".static.example.com")},
			"legacy":  {LegacyDES: true},
			"webhook": {Challenge: ChallengeConfig{Kind: ChallengeWebhook, Webhook: h.srv.URL, CAFile: h.caFile}},
			"other":   {},
		}
	})

	t.Run("GetCACaps", func(t *testing.T) {
		_, data := httpGet(t, e.base+"?operation=GetCACaps")
		for _, c := range []string{"AES", "SHA-256", "SHA-512", "POSTPKIOperation", "Renewal", "SCEPStandard", "GetNextCACert"} {
			if !strings.Contains(string(data)+"\n", c+"\n") {
				t.Errorf("GetCACaps lacks %s: %q", c, data)
			}
		}
		if strings.Contains(string(data), "DES") {
			t.Errorf("GetCACaps offers DES: %q", data)
		}
	})

	t.Run("GetCACert", func(t *testing.T) {
		for _, path := range []string{"", "/pkiclient.exe", "/static", "/static/pkiclient.exe"} {
			resp, data := httpGet(t, e.base+path+"?operation=GetCACert")
			if ct := resp.Header.Get("Content-Type"); ct != "application/x-x509-ca-ra-cert" {
				t.Fatalf("%s: content type %q", path, ct)
			}
			certs, err := cms.ParseCertsOnly(data)
			if err != nil || len(certs) != 2 {
				t.Fatalf("%s: %d certificates, %v", path, len(certs), err)
			}
		}
		// The RA: RSA for key transport, certified by the (ECDSA) CA, a
		// key other than the CA's.
		if e.ra.PublicKeyAlgorithm != x509.RSA || e.ra.KeyUsage&x509.KeyUsageKeyEncipherment == 0 || e.ra.IsCA {
			t.Errorf("RA certificate: %v, key usage %v", e.ra.PublicKeyAlgorithm, e.ra.KeyUsage)
		}
		if err := e.ra.CheckSignatureFrom(e.ca); err != nil {
			t.Errorf("RA certificate not issued by the CA: %v", err)
		}
		if bytes.Equal(e.ra.RawSubjectPublicKeyInfo, e.ca.RawSubjectPublicKeyInfo) {
			t.Error("the RA key is the CA key")
		}
	})

	var enrolled *client
	var first *x509.Certificate
	t.Run("PKCSReq one-time", func(t *testing.T) {
		c := newClient(t, e, "")
		pw := e.challenge("", "laptop-1.example.com")
		r := c.enroll("tx-one", "laptop-1.example.com", pw)
		if r.status != StatusSuccess || len(r.certs) != 1 {
			t.Fatalf("status %d fail %v (%s)", r.status, r.fail, r.reason)
		}
		if r.txid != "tx-one" {
			t.Errorf("transactionID %q not echoed", r.txid)
		}
		cert := r.certs[0]
		if cert.Subject.CommonName != "laptop-1.example.com" || cert.CheckSignatureFrom(e.ca) != nil {
			t.Errorf("certificate %s", cert.Subject)
		}
		if !bytes.Equal(cert.RawSubjectPublicKeyInfo, c.cert.RawSubjectPublicKeyInfo) {
			t.Error("the certificate is not for the CSR's key")
		}
		// The same transaction sent again is the same request: the same
		// certificate, not a replay of the challenge.
		n := e.issued()
		again := c.enroll("tx-one", "laptop-1.example.com", pw)
		if again.status != StatusSuccess || again.certs[0].SerialNumber.Cmp(cert.SerialNumber) != 0 || e.issued() != n {
			t.Errorf("resent PKCSReq: status %d, serial %v, want %v", again.status, again.certs, cert.SerialNumber)
		}
		// The same challenge in another transaction is a replay.
		other := newClient(t, e, "")
		if r := other.enroll("tx-replay", "laptop-1.example.com", pw); r.status != StatusFailure || r.fail != BadRequest {
			t.Errorf("replayed challenge: status %d fail %v", r.status, r.fail)
		}
		if e.issued() != n {
			t.Error("a replayed challenge issued a certificate")
		}
		enrolled, first = c, cert
		c.cert = cert
	})

	t.Run("recipientNonce", func(t *testing.T) {
		c := newClient(t, e, "")
		msg := c.message(PKCSReq, "tx-nonce", c.csr("n.example.com", "wrong"))
		m, err := parseMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		r := c.post(msg)
		if !bytes.Equal(r.recipientNonce, m.SenderNonce) || r.txid != "tx-nonce" {
			t.Errorf("recipientNonce %x, want the senderNonce %x", r.recipientNonce, m.SenderNonce)
		}
	})

	t.Run("GET, AES-256, ECDSA signer with SHA-512", func(t *testing.T) {
		c := newClient(t, e, "")
		key, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		c.key, c.cert, c.cipher = key, selfSigned(t, key), cms.OIDAES256CBC
		pw := e.challenge("", "phone-2.example.com")
		r := c.get(c.message(PKCSReq, "tx-get", c.csr("phone-2.example.com", pw, "phone-2.example.com")))
		if r.status != StatusSuccess || len(r.certs) != 1 || r.certs[0].DNSNames[0] != "phone-2.example.com" {
			t.Fatalf("status %d fail %v (%s)", r.status, r.fail, r.reason)
		}
	})

	refused := func(t *testing.T, r *rep, want FailInfo, n int) {
		t.Helper()
		if r.status != StatusFailure || r.fail != want || r.reason == "" {
			t.Errorf("status %d failInfo %v (%q), want FAILURE %v with a reason", r.status, r.fail, r.reason, want)
		}
		if e.issued() != n {
			t.Errorf("%d certificates issued, want %d", e.issued(), n)
		}
	}

	t.Run("names not granted", func(t *testing.T) {
		n := e.issued()
		c := newClient(t, e, "")
		pw := e.challenge("", "laptop-3.example.com")
		refused(t, c.enroll("tx-names", "laptop-3.example.com", pw, "admin.example.com"), BadRequest, n)
		c2 := newClient(t, e, "")
		refused(t, c2.enroll("tx-names2", "intruder.example.com", e.challenge("", "laptop-4.example.com")), BadRequest, n)
	})

	t.Run("signed by another key than the CSR's", func(t *testing.T) {
		n := e.issued()
		c := newClient(t, e, "")
		csr := c.csr("k.example.com", e.challenge("", "k.example.com"))
		other := newClient(t, e, "")
		other.key, other.cert = newP256(t), nil
		other.cert = selfSigned(t, other.key)
		refused(t, other.post(other.message(PKCSReq, "tx-otherkey", csr)), BadRequest, n)
	})

	t.Run("challenge for another label", func(t *testing.T) {
		n := e.issued()
		c := newClient(t, e, "other")
		refused(t, c.enroll("tx-label", "laptop-5.example.com", e.challenge("", "laptop-5.example.com")), BadRequest, n)
	})

	t.Run("expired challenge", func(t *testing.T) {
		n := e.issued()
		pw, hash, _ := NewChallenge()
		e.fe.challenges.Add(hash, Challenge{Label: "", Names: namesDNS("old.example.com"), Expires: time.Now().Add(-time.Second)})
		refused(t, newClient(t, e, "").enroll("tx-exp", "old.example.com", pw), BadRequest, n)
	})

	t.Run("encrypted to another RA", func(t *testing.T) {
		n := e.issued()
		otherKey, _, _ := NewRAKey("other")
		other := selfSigned(t, otherKey)
		c := newClient(t, e, "")
		msg := c.message(PKCSReq, "tx-otherra", c.csr("x.example.com", e.challenge("", "x.example.com")), other)
		refused(t, c.post(msg), BadMessageCheck, n)
	})

	t.Run("corrupted signature", func(t *testing.T) {
		n := e.issued()
		c := newClient(t, e, "")
		msg := c.message(PKCSReq, "tx-corrupt", c.csr("y.example.com", e.challenge("", "y.example.com")))
		sd, _ := cms.ParseSignedData(msg)
		_ = sd
		// The signature is the last element of the message: flip its
		// last byte.
		msg[len(msg)-1] ^= 0x01
		refused(t, c.post(msg), BadMessageCheck, n)
	})

	t.Run("DES only on legacy_des labels", func(t *testing.T) {
		n := e.issued()
		c := newClient(t, e, "")
		c.cipher = cms.OIDDESCBC
		refused(t, c.enroll("tx-des", "d.example.com", e.challenge("", "d.example.com")), BadAlg, n)
		l := newClient(t, e, "legacy")
		for i, cipher := range []asn1.ObjectIdentifier{cms.OIDDESCBC, cms.OIDDESEDE3CBC} {
			l.cipher = cipher
			name := []string{"des.example.com", "3des.example.com"}[i]
			if r := l.enroll("tx-legacy-"+name, name, e.challenge("legacy", name)); r.status != StatusSuccess {
				t.Errorf("%s on the legacy label: status %d fail %v (%s)", cms.OIDName(cipher), r.status, r.fail, r.reason)
			}
		}
	})

	t.Run("static challenge", func(t *testing.T) {
		c := newClient(t, e, "static")
		if r := c.enroll("tx-static", "printer.static.example.com", "jamf-static-secret"); r.status != StatusSuccess {
			t.Fatalf("status %d fail %v (%s)", r.status, r.fail, r.reason)
		}
		n := e.issued()
		refused(t, newClient(t, e, "static").enroll("tx-static-bad", "p2.static.example.com", "jamf-static-secreT"), BadRequest, n)
		refused(t, newClient(t, e, "static").enroll("tx-static-names", "p3.elsewhere.example.com", "jamf-static-secret"), BadRequest, n)
	})

	t.Run("webhook", func(t *testing.T) {
		c := newClient(t, e, "webhook")
		if r := c.enroll("tx-hook", "managed.example.com", "intune-token-1", "managed.example.com"); r.status != StatusSuccess {
			t.Fatalf("allowed by the webhook: status %d fail %v (%s)", r.status, r.fail, r.reason)
		}
		h.mu.Lock()
		q := h.got[len(h.got)-1]
		h.mu.Unlock()
		if q.Label != "webhook" || q.TransactionID != "tx-hook" || q.Challenge != "intune-token-1" || len(q.DNSNames) != 1 || len(q.CSR) == 0 {
			t.Errorf("webhook request %+v", q)
		}
		n := e.issued()
		refused(t, newClient(t, e, "webhook").enroll("tx-hook-deny", "rogue.example.com", "intune-token-1", "rogue.example.com"), BadRequest, n)
	})

	t.Run("RenewalReq", func(t *testing.T) {
		if enrolled == nil {
			t.Skip("no enrolled client")
		}
		r := enrolled.post(enrolled.message(RenewalReq, "tx-renew", enrolled.csr("laptop-1.example.com", "")))
		if r.status != StatusSuccess || r.certs[0].SerialNumber.Cmp(first.SerialNumber) == 0 {
			t.Fatalf("renewal: status %d fail %v (%s)", r.status, r.fail, r.reason)
		}
		// Only on the label that issued it.
		n := e.issued()
		o := *enrolled
		o.url = e.base + "/other"
		refused(t, o.post(o.message(RenewalReq, "tx-renew-other", o.csr("laptop-1.example.com", ""))), BadRequest, n)
		// Not with a certificate of another CA.
		stranger := newClient(t, e, "")
		refused(t, stranger.post(stranger.message(RenewalReq, "tx-renew-self", stranger.csr("laptop-1.example.com", ""))), BadRequest, n)
		// Not for other names.
		refused(t, enrolled.post(enrolled.message(RenewalReq, "tx-renew-names", enrolled.csr("laptop-1.example.com", "", "extra.example.com"))), BadRequest, n)
	})

	t.Run("GetCert", func(t *testing.T) {
		if enrolled == nil {
			t.Skip("no enrolled client")
		}
		ias, _ := asn1.Marshal(issuerAndSerial{Issuer: asn1.RawValue{FullBytes: first.RawIssuer}, Serial: rawInt(first.SerialNumber)})
		r := enrolled.post(enrolled.message(GetCert, "tx-getcert", ias))
		if r.status != StatusSuccess || !r.certs[0].Equal(first) {
			t.Fatalf("GetCert: status %d fail %v (%s)", r.status, r.fail, r.reason)
		}
		// Someone else's certificate is not given away.
		if r := newClient(t, e, "").post(newClient(t, e, "").message(GetCert, "tx-getcert2", ias)); r.status != StatusFailure || r.fail != BadCertID {
			t.Errorf("GetCert by another key: status %d fail %v", r.status, r.fail)
		}
	})

	t.Run("GetCRL", func(t *testing.T) {
		if enrolled == nil {
			t.Skip("no enrolled client")
		}
		ias, _ := asn1.Marshal(issuerAndSerial{Issuer: asn1.RawValue{FullBytes: first.RawIssuer}, Serial: rawInt(first.SerialNumber)})
		var r *rep
		for i := 0; i < 100; i++ { // the CRL is published through the queue at start
			if r = enrolled.post(enrolled.message(GetCRL, "tx-getcrl", ias)); r.status == StatusSuccess {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r.status != StatusSuccess || r.crls != 1 {
			t.Fatalf("GetCRL: status %d fail %v (%s), %d CRLs", r.status, r.fail, r.reason, r.crls)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		n := e.issued()
		resp, err := http.Post(e.base+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(make([]byte, MaxBody+1)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "larger than") {
			t.Errorf("oversized body: HTTP %d %q", resp.StatusCode, body)
		}
		for _, b := range [][]byte{[]byte("not a pkiMessage"), {0x30, 0x03, 0x02, 0x01, 0x01}} {
			resp, err := http.Post(e.base+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || len(body) < 10 {
				t.Errorf("garbage: HTTP %d %q", resp.StatusCode, body)
			}
		}
		resp, _ = httpGet(t, e.base+"?operation=PKIOperation&message="+strings.Repeat("A", 4*MaxBody))
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized GET message: HTTP %d", resp.StatusCode)
		}
		resp, _ = httpGet(t, e.base+"/nosuch?operation=GetCACaps")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown label: HTTP %d", resp.StatusCode)
		}
		resp, _ = httpGet(t, e.base+"?operation=Nope")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("unknown operation: HTTP %d", resp.StatusCode)
		}
		if e.issued() != n {
			t.Error("bad input issued a certificate")
		}
	})

	t.Run("GetNextCACert without a rotation", func(t *testing.T) {
		if resp, _ := httpGet(t, e.base+"?operation=GetNextCACert"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("HTTP %d, want 404", resp.StatusCode)
		}
	})
}

func rawInt(n *big.Int) asn1.RawValue {
	der, _ := asn1.Marshal(n)
	return asn1.RawValue{FullBytes: der}
}

// TestPendingThenCertPoll (and GetNextCACert after a pending rotation):
// with no worker running, PKCSReq is answered PENDING; once a worker
// runs, CertPoll returns the certificate of that same job, and the
// request sent again finds it too: one certificate.
func TestPendingThenCertPoll(t *testing.T) {
	var next *x509.Certificate
	e := newEnvWith(t, func(o *Options) { o.Wait = 200 * time.Millisecond; o.Default = &Label{Names: &enroll.NamePolicy{}} }, func(c *ca.CA) {
		issueRA(t, c)
		// `qpki ca rotate --pending`: GetNextCACert answers the new version.
		name, err := c.Rotate(ca.RotateOptions{Pending: true})
		if err != nil {
			t.Fatal(err)
		}
		next, _ = c.Certificate(name)
	}, func(c *server.Config) {
		c.Workers, c.PublishCRL = 0, false
		c.TLSCert, c.TLSKey = listenerFiles(t, t.TempDir())
	})
	resp, data := httpGet(t, e.base+"?operation=GetNextCACert")
	certs, err := cms.ParseCertsOnly(data)
	if resp.Header.Get("Content-Type") != "application/x-x509-next-ca-cert" || err != nil {
		t.Fatalf("GetNextCACert: %s %v", resp.Header.Get("Content-Type"), err)
	}
	if !slices.ContainsFunc(certs, next.Equal) || next.Equal(e.ca) {
		t.Error("GetNextCACert does not return the pending version's certificate")
	}
	c := newClient(t, e, "")
	n := e.issued()
	pw := e.challenge("", "slow.example.com")
	r := c.enroll("tx-pending", "slow.example.com", pw)
	if r.status != StatusPending {
		t.Fatalf("status %d, want PENDING", r.status)
	}
	ias, _ := asn1.Marshal(issuerAndSubject{Issuer: asn1.RawValue{FullBytes: e.ca.RawSubject}, Subject: asn1.RawValue{FullBytes: c.cert.RawSubject}})
	if r = c.post(c.message(CertPoll, "tx-pending", ias)); r.status != StatusPending {
		t.Fatalf("CertPoll without a worker: status %d, want PENDING", r.status)
	}
	// A worker comes up.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		worker.Run(ctx, e.srv.Core.CA, e.srv.Core.Queue, worker.Options{QueueName: server.QueueName(e.srv.Core.CA)})
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := 0; r.status == StatusPending && i < 200; i++ {
		time.Sleep(50 * time.Millisecond)
		r = c.post(c.message(CertPoll, "tx-pending", ias))
	}
	if r.status != StatusSuccess || len(r.certs) != 1 {
		t.Fatalf("CertPoll: status %d fail %v (%s)", r.status, r.fail, r.reason)
	}
	again := c.enroll("tx-pending", "slow.example.com", pw)
	for i := 0; again.status == StatusPending && i < 100; i++ {
		time.Sleep(50 * time.Millisecond)
		again = c.enroll("tx-pending", "slow.example.com", pw)
	}
	if again.status != StatusSuccess || again.certs[0].SerialNumber.Cmp(r.certs[0].SerialNumber) != 0 || e.issued() != n+1 {
		t.Errorf("the PKCSReq sent again: status %d, %d certificates issued", again.status, e.issued()-n)
	}
	// A poll for an unknown transaction, or by another key, gets nothing.
	if r := c.post(c.message(CertPoll, "tx-unknown", ias)); r.status != StatusFailure || r.fail != BadCertID {
		t.Errorf("poll of an unknown transaction: status %d fail %v", r.status, r.fail)
	}
	o := newClient(t, e, "")
	if r := o.post(o.message(CertPoll, "tx-pending", ias)); r.status == StatusSuccess {
		t.Error("another key polled the certificate")
	}
}
