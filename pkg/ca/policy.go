package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/atomicfile"
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

// loadPolicy loads a profile by name (the CA dir's override or the
// built-in) or, for a name ending in .yaml, from that file.
func loadPolicy(name, caDir string) (*policy, error) {
	var p *profile.Profile
	var err error
	if isProfileFile(name) {
		p, err = profile.LoadFile(name)
	} else {
		p, err = profile.Load(name, caDir)
	}
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

// policy returns a profile's policy, parsed once and reused while the CA
// dir's override file (if any) is unchanged: parsing YAML costs more than
// signing a certificate. The file is looked at again at most every
// policyRecheck, so an edit takes effect within that time; a stat per
// certificate cost a pipeline 2% of its rate.
func (c *CA) policy(name string) (*policy, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.policies[name]
	c.mu.Unlock()
	if ok && now.Sub(e.checked) < policyRecheck {
		return e.pol, nil
	}
	stamp := ""
	if !isProfileFile(name) {
		if fi, err := os.Stat(filepath.Join(c.Dir, profile.ProfilesDir, filepath.FromSlash(name)+".yaml")); err == nil {
			stamp = fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
		}
	} else if fi, err := os.Stat(name); err == nil {
		stamp = fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
	}
	pol := e.pol
	if !ok || e.stamp != stamp {
		var err error
		if pol, err = loadPolicy(name, c.Dir); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	if c.policies == nil {
		c.policies = map[string]policyEntry{}
	}
	c.policies[name] = policyEntry{pol, stamp, now}
	c.mu.Unlock()
	return pol, nil
}

// Profile returns a profile by name (the CA dir's override or the
// built-in) or, for a name ending in .yaml, from that file: parsed once
// and reused as policy is (see policy), for front-ends that read one on
// every request.
func (c *CA) Profile(name string) (*profile.Profile, error) {
	pol, err := c.policy(name)
	if err != nil {
		return nil, err
	}
	return pol.p, nil
}

// policyRecheck is how long a profile's policy is used before its file
// is looked at again.
const policyRecheck = time.Second

type policyEntry struct {
	pol     *policy
	stamp   string
	checked time.Time
}

func isProfileFile(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// installProfile copies a CA profile given as a file into the CA dir's
// profiles/, so that later commands find it by name.
func installProfile(root string, pol *policy) error {
	if pol.p.Source == profile.SourceBuiltin {
		return nil
	}
	dst := filepath.Join(root, profile.ProfilesDir, filepath.FromSlash(pol.name)+".yaml")
	if old, err := os.ReadFile(dst); err == nil {
		if bytes.Equal(old, pol.p.Raw) {
			return nil
		}
		return fmt.Errorf("profile %s already exists in the CA dir with other content", pol.name)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(dst, pol.p.Raw, 0o644)
}

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

// checkAltKey checks a Catalyst subject's alternative key against the
// profile: only a catalyst profile certifies one, of an allowed algorithm.
func (pol *policy) checkAltKey(alt crypto.PublicKey) error {
	if alt == nil {
		return nil
	}
	a, err := algo.Of(alt)
	if err != nil {
		return fmt.Errorf("alternative key: %v", err)
	}
	if pol.p.Mode != profile.ModeCatalyst {
		return fmt.Errorf("profile %s: an alternative %s key needs a catalyst profile", pol.name, a)
	}
	for _, ok := range pol.p.AllowedAltAlgorithms {
		if ok == a {
			return nil
		}
	}
	return fmt.Errorf("profile %s: alternative key algorithm %s is not allowed", pol.name, a)
}
