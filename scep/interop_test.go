package scep

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"testing"

	"github.com/smallstep/pkcs7"
	sscep "github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"
)

// TestSmallstepClient enrolls with github.com/smallstep/scep (the
// message code under micromdm's scepclient 2.3 and step-ca), an
// implementation independent of pkg/cms: its PKCSReq (SHA-1 signed, hence
// a legacy_des label; AES-256-CBC here, DES-CBC by default) is accepted,
// and it parses, verifies and decrypts qpki's CertRep.
func TestSmallstepClient(t *testing.T) {
	// The RA is made by the first request here (serve without --scep-config).
	e := newEnv(t, func(o *Options) { o.Labels = map[string]*Label{"legacy": {LegacyDES: true}}; o.IssueRAAtStart = false })
	for _, tc := range []struct {
		cipher int
		name   string
	}{{pkcs7.EncryptionAlgorithmAES256CBC, "aes.example.com"}, {pkcs7.EncryptionAlgorithmDESCBC, "des.example.com"}} {
		pkcs7.ContentEncryptionAlgorithm = tc.cipher
		key, _ := rsa.GenerateKey(rand.Reader, 2048)
		name := tc.name
		csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
			CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: name}},
			ChallengePassword:  e.challenge("legacy", name)}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := x509.ParseCertificateRequest(csrDER)
		self := selfSigned(t, key)
		msg, err := sscep.NewCSRRequest(csr, &sscep.PKIMessage{MessageType: sscep.PKCSReq, Recipients: []*x509.Certificate{e.ra}, SignerKey: key, SignerCert: self})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(e.base+"/legacy?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(msg.Raw))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		rep, err := sscep.ParsePKIMessage(body, sscep.WithCACerts([]*x509.Certificate{e.ra}))
		if err != nil {
			t.Fatalf("smallstep/scep cannot parse the CertRep: %v", err)
		}
		if rep.PKIStatus != sscep.SUCCESS || rep.TransactionID != msg.TransactionID || !bytes.Equal(rep.RecipientNonce, msg.SenderNonce) {
			t.Fatalf("CertRep: status %s failInfo %s (%s)", rep.PKIStatus, rep.FailInfo, resp.Header.Get("X-SCEP-Reason"))
		}
		if err := rep.DecryptPKIEnvelope(self, key); err != nil {
			t.Fatalf("smallstep/scep cannot decrypt the CertRep: %v", err)
		}
		if c := rep.CertRepMessage.Certificate; c == nil || c.Subject.CommonName != name || c.CheckSignatureFrom(e.ca) != nil {
			t.Errorf("certificate %v", c)
		}
	}
	// Its SHA-1 signature is refused on a label without legacy_des.
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	csrDER, _ := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: "sha1.example.com"}},
		ChallengePassword:  e.challenge("", "sha1.example.com")}, key)
	csr, _ := x509.ParseCertificateRequest(csrDER)
	self := selfSigned(t, key)
	msg, err := sscep.NewCSRRequest(csr, &sscep.PKIMessage{MessageType: sscep.PKCSReq, Recipients: []*x509.Certificate{e.ra}, SignerKey: key, SignerCert: self})
	if err != nil {
		t.Fatal(err)
	}
	n := e.issued()
	c := &client{t: t, key: key, cert: self, ra: e.ra, url: e.base}
	if r := c.post(msg.Raw); r.status != StatusFailure || r.fail != BadAlg || e.issued() != n {
		t.Errorf("SHA-1 on a label without legacy_des: status %d failInfo %v", r.status, r.fail)
	}
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmDESCBC
}
