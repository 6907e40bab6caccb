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
	if err != nil {
		// zcrypto cannot parse post-quantum keys; those are checked by
		// x509x's own verifier instead.
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
