package est

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

func TestSimpleReenroll(t *testing.T) {
	e := sharedEnv(t)
	dev := e.deviceCert("router-re")
	const name = "re.example.com"
	csr, key := newCSR(t, name)
	old := certsResponse(t, e.do(e.client(&dev), "POST", "simpleenroll", b64(csr), "", ""))[0]
	iss, _ := LoadCertificates(e.chainPEM)
	oldTLS := tls.Certificate{Certificate: [][]byte{old.Raw, iss[0].Raw}, PrivateKey: key}
	c := e.client(&oldTLS)

	// Renewal with a new key, same subject and names.
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	renew := csrWithKey(t, newKey, pkix.Name{CommonName: name}, []string{name})
	got := certsResponse(t, e.do(c, "POST", "simplereenroll", b64(renew), "", ""))[0]
	if got.Subject.String() != old.Subject.String() || got.SerialNumber.Cmp(old.SerialNumber) == 0 ||
		!got.PublicKey.(*ecdsa.PublicKey).Equal(newKey.Public()) {
		t.Fatalf("renewed certificate: %v %v", got.Subject, got.SerialNumber)
	}

	before := e.certCount()
	// Another subject, or other names: refused.
	other := csrWithKey(t, newKey, pkix.Name{CommonName: "other.example.com"}, []string{"other.example.com"})
	if r := e.do(c, "POST", "simplereenroll", b64(other), "", ""); r.code != http.StatusForbidden || !strings.Contains(r.text(), "subject") {
		t.Errorf("reenroll for another subject: %d %s", r.code, r.text())
	}
	moreNames := csrWithKey(t, newKey, pkix.Name{CommonName: name}, []string{name, "extra.example.com"})
	if r := e.do(c, "POST", "simplereenroll", b64(moreNames), "", ""); r.code != http.StatusForbidden || !strings.Contains(r.text(), "subjectAltName") {
		t.Errorf("reenroll with more names: %d %s", r.code, r.text())
	}
	// A renewal keeps the profile: a TLS server certificate is not renewed
	// into a client certificate.
	if r := e.do(c, "POST", "client/simplereenroll", b64(renew), "", ""); r.code != http.StatusForbidden || !strings.Contains(r.text(), "issued under profile "+DefaultProfile) {
		t.Errorf("reenroll under another profile: %d %s", r.code, r.text())
	}
	// Once revoked, the old certificate renews nothing.
	if _, err := e.srv.Core.CA.Revoke(store.FormatSerial(old.SerialNumber), 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	renew2 := csrWithKey(t, newKey, pkix.Name{CommonName: name}, []string{name, name})
	if r := e.do(e.client(&oldTLS), "POST", "simplereenroll", b64(renew2), "", ""); r.code != http.StatusForbidden || !strings.Contains(r.text(), "revoked") {
		t.Errorf("reenroll with a revoked certificate: %d %s", r.code, r.text())
	}
	if n := e.certCount(); n != before {
		t.Fatalf("refused renewals issued %d certificates", n-before)
	}
}
