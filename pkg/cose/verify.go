package cose

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qpki/qpki/pkg/x509x"
)

// VerifyOptions says what to trust and how strictly to check.
type VerifyOptions struct {
	// Roots are the trusted CA certificates. Each signer's x5chain must
	// lead to one of them.
	Roots []*x509.Certificate
	// Intermediates are extra CA certificates for building paths, for
	// messages whose x5chain holds only the leaf.
	Intermediates []*x509.Certificate
	// PublicKeys are keys trusted as they are, for signers that send no
	// x5chain (or when no Roots are given).
	PublicKeys []crypto.PublicKey

	// Detached is the payload of a message that does not carry it.
	Detached []byte
	// ExternalAAD is the external data the signer authenticated.
	ExternalAAD []byte

	// Now is the verification time; zero means time.Now().
	Now time.Time
	// ClockSkew is the tolerance on exp and nbf; zero means
	// DefaultClockSkew, a negative value means none.
	ClockSkew time.Duration

	// Type, when set, is the message type required (cwt, sign1, sign).
	// TypeCWT also reads an untagged COSE structure as a token.
	Type Type
	// Audience, when set, must be among the token's aud values.
	Audience string
	// MinSignatures is the number of signatures a message must carry. Set
	// it to 2 for hybrid tokens, so that a token stripped of its ML-DSA
	// signature is refused.
	MinSignatures int
	// KnownCritical lists header labels (int64 or string) the application
	// handles itself, on top of those qpki understands.
	KnownCritical []any
	// MaxSize bounds the encoded message; zero means DefaultMaxSize.
	MaxSize int
}

// Verify parses a message and checks, for every signature, the signer's
// certificate chain up to opts.Roots and then the signature with the leaf
// key; for a CWT it then checks exp, nbf and aud. Every signature must hold.
// The error names the part that failed and wraps one of the Err* classes.
func Verify(data []byte, opts VerifyOptions) (*Message, error) {
	m, err := parse(data, opts.MaxSize, opts.Type == TypeCWT)
	if err != nil {
		return nil, err
	}
	if opts.Type != "" && m.Type != opts.Type {
		return nil, malformed("message is a %s, want a %s", m.Type, opts.Type)
	}
	if len(opts.Roots) == 0 && len(opts.PublicKeys) == 0 {
		return nil, fmt.Errorf("%w: no trust anchor given (a CA certificate or a public key)", ErrUntrusted)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}

	payload := m.Payload
	if m.Detached {
		if opts.Detached == nil {
			return nil, malformed("the payload is detached; supply it to verify")
		}
		payload = opts.Detached
	} else if opts.Detached != nil {
		return nil, malformed("the message carries its own payload; a detached payload was also given")
	}

	if err := checkCrit(&m.Protected, opts.KnownCritical); err != nil {
		return nil, err
	}
	if len(m.Signatures) < opts.MinSignatures {
		return nil, fmt.Errorf("%w: %d signature(s), at least %d required", ErrSignature, len(m.Signatures), opts.MinSignatures)
	}

	for i := range m.Signatures {
		s := &m.Signatures[i]
		who := fmt.Sprintf("signer %d", i+1)
		if m.Structure == TypeSign {
			if err := checkCrit(&s.Protected, opts.KnownCritical); err != nil {
				return nil, fmt.Errorf("%s: %w", who, err)
			}
		}
		info, err := signatureAlg(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", who, err)
		}
		var tbs []byte
		if m.Structure == TypeSign1 {
			tbs, err = sigStructure1(s.rawProtected, opts.ExternalAAD, payload)
		} else {
			tbs, err = sigStructure(m.rawProtected, s.rawProtected, opts.ExternalAAD, payload)
		}
		if err != nil {
			return nil, err
		}
		if chain := s.X5Chain(); len(chain) > 0 && len(opts.Roots) > 0 {
			path, err := verifyChain(chain, opts, now)
			if err != nil {
				return nil, fmt.Errorf("%w: %s (%s): %v", ErrUntrusted, who, chain[0].Subject, err)
			}
			pub, err := x509x.PublicKey(path[0])
			if err != nil {
				return nil, fmt.Errorf("%w: %s: certificate key: %v", ErrUnsupported, who, err)
			}
			if err := info.verify(pub, tbs, s.Value); err != nil {
				return nil, fmt.Errorf("%w: %s (%s, %s): %v", ErrSignature, who, info.name, path[0].Subject, err)
			}
			s.Chain = path
			continue
		}
		if err := verifyWithKeys(info, opts.PublicKeys, tbs, s.Value); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", who, info.name, err)
		}
	}

	if m.Type == TypeCWT {
		if m.claimsErr != nil {
			return nil, m.claimsErr
		}
		if err := checkClaims(m.Claims, now, opts.ClockSkew, opts.Audience); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func signatureAlg(s *Signature) (*algInfo, error) {
	if s.Protected.Alg == 0 {
		if s.Unprotected.Alg != 0 {
			return nil, fmt.Errorf("%w: alg %s is in the unprotected header; qpki requires it protected", ErrUnsupported, s.Unprotected.Alg)
		}
		if _, ok := s.Protected.Other[HeaderAlg]; ok {
			return nil, fmt.Errorf("%w: text algorithm name %v", ErrUnsupported, s.Protected.Other[HeaderAlg])
		}
		return nil, malformed("no alg in the protected header")
	}
	info, ok := lookupAlg(s.Protected.Alg)
	if !ok {
		return nil, fmt.Errorf("%w: unknown algorithm %d", ErrUnsupported, s.Protected.Alg)
	}
	return info, nil
}

// verifyWithKeys checks a signature against directly trusted keys: any key
// that fits the algorithm and verifies is enough.
func verifyWithKeys(info *algInfo, keys []crypto.PublicKey, tbs, sig []byte) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: the signer sent no x5chain and no public key was given", ErrUntrusted)
	}
	var fit bool
	var last error
	for _, k := range keys {
		if info.checkKey(k) != nil {
			continue
		}
		fit = true
		if last = info.verify(k, tbs, sig); last == nil {
			return nil
		}
	}
	if !fit {
		return fmt.Errorf("%w: none of the given public keys fits %s", ErrUntrusted, info.name)
	}
	return fmt.Errorf("%w: %v", ErrSignature, last)
}

// checkCrit enforces RFC 9052 §3.1: every critical label must be present in
// the protected header and understood.
func checkCrit(h *Header, known []any) error {
	for _, l := range h.Crit {
		if !h.has(l) {
			return malformed("crit lists label %v, which the protected header lacks", l)
		}
		if understood[l] || slices.ContainsFunc(known, func(k any) bool { return normLabel(k) == l }) {
			continue
		}
		return fmt.Errorf("%w: label %v", ErrCritical, l)
	}
	return nil
}

func normLabel(l any) any {
	switch v := l.(type) {
	case int:
		return int64(v)
	case int32:
		return int64(v)
	case uint64:
		return int64(v)
	}
	return l
}

func checkClaims(c *Claims, now time.Time, skew time.Duration, aud string) error {
	if skew == 0 {
		skew = DefaultClockSkew
	} else if skew < 0 {
		skew = 0
	}
	if !c.Expiry.IsZero() && !now.Before(c.Expiry.Add(skew)) {
		return fmt.Errorf("%w at %s (now %s, clock skew %s)", ErrExpired, c.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	if !c.NotBefore.IsZero() && now.Before(c.NotBefore.Add(-skew)) {
		return fmt.Errorf("%w before %s (now %s, clock skew %s)", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	if aud != "" && !slices.Contains(c.Audience, aud) {
		return fmt.Errorf("%w: audience %q not among %q", ErrClaims, aud, c.Audience)
	}
	return nil
}

// verifyChain returns the path from the leaf to a trusted root. Classical
// chains go through crypto/x509; chains with post-quantum or hybrid
// signatures are built link by link with x509x.CheckSignatureFrom.
func verifyChain(chain []*x509.Certificate, opts VerifyOptions, now time.Time) ([]*x509.Certificate, error) {
	leaf := chain[0]
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, errors.New("the signer's certificate does not allow digitalSignature")
	}
	if allClassical(chain) {
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		for _, c := range opts.Roots {
			roots.AddCert(c)
		}
		for _, c := range append(slices.Clone(chain[1:]), opts.Intermediates...) {
			inter.AddCert(c)
		}
		paths, err := leaf.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return nil, err
		}
		return paths[0], nil
	}
	pool := append(slices.Clone(chain[1:]), opts.Intermediates...)
	return buildPath([]*x509.Certificate{leaf}, pool, opts.Roots, now)
}

func allClassical(certs []*x509.Certificate) bool {
	for _, c := range certs {
		if c.PublicKey == nil || c.SignatureAlgorithm == x509.UnknownSignatureAlgorithm {
			return false
		}
	}
	return true
}

// maxPathDepth bounds the certificates in a built path.
const maxPathDepth = 8

// buildPath extends path (leaf first) until a trusted root, depth first.
func buildPath(path []*x509.Certificate, pool, roots []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	cert := path[len(path)-1]
	if err := checkValidity(cert, now); err != nil {
		return nil, err
	}
	for _, r := range roots {
		if bytes.Equal(cert.Raw, r.Raw) {
			return path, nil
		}
	}
	if len(path) >= maxPathDepth {
		return nil, fmt.Errorf("no path to a trusted root within %d certificates", maxPathDepth)
	}
	var lastErr error
	try := func(issuer *x509.Certificate, isRoot bool) ([]*x509.Certificate, bool) {
		if !bytes.Equal(cert.RawIssuer, issuer.RawSubject) || slices.ContainsFunc(path, func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, issuer.Raw) }) {
			return nil, false
		}
		if err := checkIssuer(issuer, len(path)-1); err != nil {
			lastErr = err
			return nil, false
		}
		if err := x509x.CheckSignatureFrom(cert, issuer); err != nil {
			lastErr = fmt.Errorf("%s: %v", cert.Subject, err)
			return nil, false
		}
		next := append(slices.Clone(path), issuer)
		if isRoot {
			if err := checkValidity(issuer, now); err != nil {
				lastErr = err
				return nil, false
			}
			return next, true
		}
		full, err := buildPath(next, pool, roots, now)
		if err != nil {
			lastErr = err
			return nil, false
		}
		return full, true
	}
	for _, r := range roots {
		if p, ok := try(r, true); ok {
			return p, nil
		}
	}
	for _, c := range pool {
		if p, ok := try(c, false); ok {
			return p, nil
		}
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, fmt.Errorf("no trusted issuer found for %q (issuer %q)", cert.Subject, cert.Issuer)
}

func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return fmt.Errorf("certificate %q is valid from %s to %s, not at %s", c.Subject,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkIssuer checks that c may issue certificates, with below CA
// certificates under it in the path.
func checkIssuer(c *x509.Certificate, below int) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("certificate %q is not a CA", c.Subject)
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("CA certificate %q does not allow keyCertSign", c.Subject)
	}
	if (c.MaxPathLen > 0 || c.MaxPathLenZero) && below > c.MaxPathLen {
		return fmt.Errorf("CA certificate %q allows a path length of %d", c.Subject, c.MaxPathLen)
	}
	return nil
}
