package ca

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// LintPolicy says which zlint sources a profile asks for.
type LintPolicy struct {
	Enabled bool
	// CABF adds the CA/Browser Forum baseline requirement lints, for
	// profiles that issue publicly trusted TLS certificates.
	CABF bool
}

// LintError refuses an issuance; it names every error-level lint.
type LintError struct{ Lints []string }

func (e *LintError) Error() string {
	return "issuance refused by pre-issuance linting: " + strings.Join(e.Lints, ", ")
}

var (
	registryOnce sync.Once
	rfcRegistry  lint.Registry
	cabfRegistry lint.Registry
	registryErr  error
)

func registries() (lint.Registry, lint.Registry, error) {
	registryOnce.Do(func() {
		rfcRegistry, registryErr = lint.GlobalRegistry().Filter(lint.FilterOptions{
			IncludeSources: lint.SourceList{lint.RFC5280},
		})
		if registryErr != nil {
			return
		}
		cabfRegistry, registryErr = lint.GlobalRegistry().Filter(lint.FilterOptions{
			IncludeSources: lint.SourceList{lint.RFC5280, lint.CABFBaselineRequirements},
		})
	})
	return rfcRegistry, cabfRegistry, registryErr
}

// lint runs zlint over a signed certificate and fails on any error- or
// fatal-level finding.
func lintCert(der []byte, p LintPolicy) error {
	if !p.Enabled {
		return nil
	}
	rfc, cabf, err := registries()
	if err != nil {
		return fmt.Errorf("lint registry: %v", err)
	}
	reg := rfc
	if p.CABF {
		reg = cabf
	}
	cert, err := zx509.ParseCertificate(der)
	if err != nil || !zlintUnderstands(cert) {
		return nil
	}
	rs := zlint.LintCertificateEx(cert, reg)
	var bad []string
	for name, r := range rs.Results {
		if r.Status == lint.Error || r.Status == lint.Fatal {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return &LintError{Lints: bad}
	}
	return nil
}

// zlintUnderstands reports whether zcrypto knows both the certificate's
// signature and key algorithms. It parses ML-DSA, SLH-DSA, ML-KEM and
// composite certificates but cannot check their signatures, so lints that
// depend on them fail falsely (a self-signed ML-DSA root reads as issued by
// another CA and is refused for its missing authority key identifier).
// Such certificates are not linted; x509x builds them from the same
// crypto/x509 template code as classical ones. A Catalyst certificate's
// own key and signature are classical and it is linted as usual: its
// alternative key and signature are non-critical extensions zlint skips.
func zlintUnderstands(c *zx509.Certificate) bool {
	return c.SignatureAlgorithm != zx509.UnknownSignatureAlgorithm && c.PublicKeyAlgorithm != zx509.UnknownPublicKeyAlgorithm
}
