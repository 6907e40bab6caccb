package x509x

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// maxChainLength bounds path building.
const maxChainLength = 10

// Verify builds and checks a chain from leaf to one of roots, for every
// algorithm qpki knows, Catalyst certificates included (both signatures
// must verify). It checks, at time now: validity periods, issuer/subject
// name chaining, that each issuer is a CA allowed to sign certificates
// (basic constraints, keyCertSign, path length), signatures, and that no
// certificate has a critical extension it does not understand. Roots are
// trust anchors: their own signatures are not checked. It returns the
// chain, leaf first.
//
// Extended key usage, name constraints and policies are not checked.
func Verify(leaf *x509.Certificate, intermediates, roots []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	if len(roots) == 0 {
		return nil, errors.New("x509x: no trust anchors")
	}
	if err := checkValidity(leaf, now); err != nil {
		return nil, err
	}
	if isIn(leaf, roots) {
		return []*x509.Certificate{leaf}, nil
	}
	return extendChain([]*x509.Certificate{leaf}, intermediates, roots, now)
}

func isIn(c *x509.Certificate, pool []*x509.Certificate) bool {
	for _, p := range pool {
		if bytes.Equal(p.Raw, c.Raw) {
			return true
		}
	}
	return false
}

func checkValidity(c *x509.Certificate, now time.Time) error {
	for _, oid := range c.UnhandledCriticalExtensions {
		// The Catalyst extensions are handled here (Bouncy Castle marks
		// subjectAltPublicKeyInfo critical).
		if !isCatalystOID(oid) {
			return fmt.Errorf("x509x: certificate %q has an unhandled critical extension %s", name(c), oid)
		}
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("x509x: certificate %q is not valid before %s", name(c), c.NotBefore.Format(time.RFC3339))
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("x509x: certificate %q expired at %s", name(c), c.NotAfter.Format(time.RFC3339))
	}
	return nil
}

func name(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

// extendChain tries every candidate issuer of the chain's last certificate,
// depth first, and returns the first complete chain.
func extendChain(chain, intermediates, roots []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	if len(chain) > maxChainLength {
		return nil, errors.New("x509x: chain too long")
	}
	child := chain[len(chain)-1]
	var firstErr error
	try := func(parent *x509.Certificate, isRoot bool) ([]*x509.Certificate, error) {
		if !bytes.Equal(parent.RawSubject, child.RawIssuer) || isIn(parent, chain) {
			return nil, nil
		}
		if len(child.AuthorityKeyId) > 0 && len(parent.SubjectKeyId) > 0 && !bytes.Equal(child.AuthorityKeyId, parent.SubjectKeyId) {
			return nil, nil
		}
		if err := CheckSignatureFrom(child, parent); err != nil {
			return nil, fmt.Errorf("x509x: certificate %q not signed by %q: %w", name(child), name(parent), err)
		}
		if err := checkValidity(parent, now); err != nil {
			return nil, err
		}
		if err := checkPathLen(parent, chain); err != nil {
			return nil, err
		}
		next := append(append([]*x509.Certificate(nil), chain...), parent)
		if isRoot {
			return next, nil
		}
		return extendChain(next, intermediates, roots, now)
	}
	for _, pool := range []struct {
		certs []*x509.Certificate
		root  bool
	}{{roots, true}, {intermediates, false}} {
		for _, p := range pool.certs {
			out, err := try(p, pool.root)
			if out != nil {
				return out, nil
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, fmt.Errorf("x509x: no issuer found for %q (issuer %q)", name(child), child.Issuer.String())
}

// checkPathLen enforces the parent's pathLenConstraint on the CA
// certificates below it (self-issued ones do not count; RFC 5280 6.1.4).
func checkPathLen(parent *x509.Certificate, chain []*x509.Certificate) error {
	if !parent.BasicConstraintsValid || (parent.MaxPathLen < 0) || (parent.MaxPathLen == 0 && !parent.MaxPathLenZero) {
		return nil
	}
	cas := 0
	for _, c := range chain[1:] {
		if !bytes.Equal(c.RawIssuer, c.RawSubject) {
			cas++
		}
	}
	if cas > parent.MaxPathLen {
		return fmt.Errorf("x509x: %q allows %d intermediate CA(s) below it, the chain has %d", name(parent), parent.MaxPathLen, cas)
	}
	return nil
}
