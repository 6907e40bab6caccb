package est

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/cms"
)

// The example messages of RFC 7030 Appendix A.
func readExample(t *testing.T, name string) []byte {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A.1: the /cacerts response holds the four certificates of a root
// rollover (OldWithOld, OldWithNew, NewWithOld, NewWithNew).
func TestRFC7030CACertsExample(t *testing.T) {
	der, err := decodeBase64(readExample(t, "rfc7030-a1-cacerts.b64"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := cms.ParseCertsOnly(der)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range certs {
		names = append(names, c.Subject.CommonName+"/"+c.Issuer.CommonName)
	}
	if got := strings.Join(names, " "); got != "estExampleCA OwO/estExampleCA OwO estExampleCA NwO/estExampleCA OwO estExampleCA OwN/estExampleCA NwN estExampleCA NwN/estExampleCA NwN" {
		t.Fatalf("certificates %s", got)
	}
	// Our encoding of the same certificates parses back to them.
	again, err := cms.CertsOnly(certs...)
	if err != nil {
		t.Fatal(err)
	}
	back, err := cms.ParseCertsOnly(again)
	if err != nil || len(back) != 4 {
		t.Fatal(err)
	}
}

// A.2: the /csrattrs response: challengePassword, an EC key on P-384, a
// macAddress extension, ecdsa-with-SHA384; our encoder writes the same
// bytes for the same elements.
func TestRFC7030CSRAttrsExample(t *testing.T) {
	der, err := decodeBase64(readExample(t, "rfc7030-a2-csrattrs.b64"))
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := ParseCSRAttrs(der)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		oid   asn1.ObjectIdentifier
		value asn1.ObjectIdentifier
	}{
		{oidChallengePassword, nil},
		{oidECPublicKey, curveOIDs["ecdsa-p384"]},
		{oidExtensionRequest, asn1.ObjectIdentifier{1, 3, 6, 1, 1, 1, 1, 22}},
		{ecdsaSigOIDs["ecdsa-p384"], nil},
	}
	if len(attrs) != len(want) {
		t.Fatalf("%d elements", len(attrs))
	}
	for i, w := range want {
		if !attrs[i].OID.Equal(w.oid) {
			t.Errorf("element %d: %v, want %v", i, attrs[i].OID, w.oid)
		}
		if w.value == nil {
			if attrs[i].Values != nil {
				t.Errorf("element %d has values", i)
			}
			continue
		}
		var v asn1.ObjectIdentifier
		if len(attrs[i].Values) != 1 {
			t.Fatalf("element %d: %d values", i, len(attrs[i].Values))
		}
		if _, err := asn1.Unmarshal(attrs[i].Values[0].FullBytes, &v); err != nil || !v.Equal(w.value) {
			t.Errorf("element %d: value %v, want %v", i, v, w.value)
		}
	}
	again, err := MarshalCSRAttrs(attrs)
	if err != nil || !bytes.Equal(again, der) {
		t.Fatalf("re-encoding differs: %x", again)
	}
	for _, bad := range [][]byte{nil, {0x30, 0x03, 0x02, 0x01, 0x01}, append(bytes.Clone(der), 0)} {
		if _, err := ParseCSRAttrs(bad); err == nil {
			t.Errorf("%x parsed", bad)
		}
	}
}

// A.3: the /simpleenroll request, line-broken base64 with a
// challengePassword, and its certs-only response.
func TestRFC7030EnrollExample(t *testing.T) {
	der, err := decodeCSRBody(readExample(t, "rfc7030-a3-simpleenroll-request.b64"))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != "demostep4 1368141352" {
		t.Errorf("subject %v", csr.Subject)
	}
	attrs, err := csrAttributes(csr.RawTBSCertificateRequest)
	if err != nil {
		t.Fatal(err)
	}
	if pw, ok, err := challengePassword(attrs); err != nil || !ok || pw != "+rrCir/7+EYu50T4" {
		t.Fatalf("challengePassword %q %v %v", pw, ok, err)
	}
	resp, err := decodeBase64(readExample(t, "rfc7030-a3-simpleenroll-response.b64"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := cms.ParseCertsOnly(resp)
	if err != nil || len(certs) != 1 {
		t.Fatalf("%d certificates, %v", len(certs), err)
	}
	if certs[0].SerialNumber.Int64() != 21 || certs[0].Issuer.CommonName != "estExampleCA NwN" || !bytes.Equal(certs[0].RawSubjectPublicKeyInfo, csr.RawSubjectPublicKeyInfo) {
		t.Errorf("response certificate %v %v", certs[0].SerialNumber, certs[0].Issuer)
	}

	// Sent to qpki as the RFC's client sent it: the default endpoint's
	// name policy does not grant its CN, so it refuses with a reason and
	// issues nothing; a label that grants it issues its certificate.
	e := sharedEnv(t)
	dev := e.deviceCert("rfc-client")
	before := e.certCount()
	body := readExample(t, "rfc7030-a3-simpleenroll-request.b64")
	r := e.do(e.client(&dev), "POST", "simpleenroll", body, "", "")
	if r.code != http.StatusForbidden || !strings.Contains(r.text(), "subject CN=demostep4 1368141352 is not granted") {
		t.Errorf("RFC request: %d %s", r.code, r.text())
	}
	if e.certCount() != before {
		t.Error("the refused request issued a certificate")
	}
	got := certsResponse(t, e.do(e.client(&dev), "POST", "rsa/simpleenroll", body, "", ""))
	if got[0].Subject.CommonName != "demostep4 1368141352" || !bytes.Equal(got[0].RawSubjectPublicKeyInfo, csr.RawSubjectPublicKeyInfo) {
		t.Errorf("issued %v", got[0].Subject)
	}
}
