package ca

import (
	"crypto"
	"crypto/x509"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/profile"
)

// policy is what the CA needs to know of a profile.
type policy struct {
	name  string
	isCA  bool
	algos []algo.Algorithm // the CA's key algorithms (two for hybrids)
	mode  string
	pss   bool
	lint  LintPolicy
	p     *profile.Profile
}

func loadPolicy(name, caDir string) (*policy, error) {
	p, err := profile.Load(name, caDir)
	if err != nil {
		return nil, err
	}
	pol := &policy{name: p.Name, isCA: p.IsCA(), mode: string(p.Mode), pss: p.PSS(), p: p,
		lint: LintPolicy{Enabled: p.Lint.Enabled, CABF: p.Lint.CABF}}
	pol.algos = p.Algorithms
	if len(pol.algos) == 0 {
		pol.algos = []algo.Algorithm{p.Algorithm}
	}
	return pol, nil
}

func (c *CA) policy(name string) (*policy, error) { return loadPolicy(name, c.Dir) }

func (pol *policy) apply(vars map[string]any, csr *x509.CertificateRequest, pub crypto.PublicKey, a algo.Algorithm, t time.Time) (*x509.Certificate, error) {
	vals, err := pol.p.ResolveJSON(vars)
	if err != nil {
		return nil, err
	}
	in := profile.Input{Values: vals, CSR: csr, PublicKeyAlgorithm: a, Now: t}
	if csr == nil {
		in.PublicKey = pub
	}
	return pol.p.Apply(in)
}
