package est

import (
	"os"
	"testing"

	"github.com/qpki/qpki/pkg/cms"
)

// The parsers of network input never panic.
func FuzzParsers(f *testing.F) {
	for _, name := range []string{"rfc7030-a1-cacerts.b64", "rfc7030-a2-csrattrs.b64", "rfc7030-a3-simpleenroll-request.b64", "rfc7030-a3-simpleenroll-response.b64"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if der, err := decodeBase64(b); err == nil {
			f.Add(der)
		}
	}
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		if der, err := decodeCSRBody(data); err == nil {
			csrAttributes(der)
		}
		csrAttributes(data)
		ParseCSRAttrs(data)
		cms.ParseCertsOnly(data)
		if attrs, err := csrAttributes(data); err == nil {
			challengePassword(attrs)
			octetAttribute(attrs, oidAsymmDecryptKeyID)
		}
	})
}
