package x509x

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCertificate: whatever the bytes, parsing a certificate and checking
// its signatures (PQC, Catalyst, composite) returns, never panics.
func FuzzCertificate(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(interopDir, "*", "*.der"))
	for _, p := range paths {
		// SLH-DSA signatures make each run slow; the other anchors cover
		// the same code.
		if strings.HasSuffix(p, "_priv.der") || strings.Contains(p, "slh-dsa") {
			continue
		}
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return
		}
		PublicKey(c)
		AltPublicKey(c)
		SignatureAlgorithms(c)
		CheckSignatureFrom(c, c)
		VerifyCatalyst(c, c)
		Verify(c, nil, []*x509.Certificate{c}, fixedNow)
	})
}
