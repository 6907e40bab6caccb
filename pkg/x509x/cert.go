package x509x

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
)

// How a certificate with a key or signature crypto/x509 does not know is
// made: crypto/x509 builds the whole TBSCertificate from the template
// (names, validity, every extension) signed by a throwaway Ed25519 key for
// a throwaway subject key; that signature is discarded, the signature
// AlgorithmIdentifier and SubjectPublicKeyInfo are replaced, the Catalyst
// extensions added, and the result signed by the real signer(s). The
// template is thus interpreted by crypto/x509 exactly as for classical
// certificates.
var placeholderKey = sync.OnceValue(func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// equalKeys compares public keys of any registered algorithm.
func equalKeys(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && k.Equal(b)
}

// checkIssuerKeys makes sure the signers are the keys of the issuing
// certificate (or, self-signed, of the subject). It compares encodings, so
// that no issuer key is decoded on every issuance.
func checkIssuerKeys(iss Issuer, pub, altPub crypto.PublicKey) error {
	if iss.Cert == nil {
		if pub != nil && !equalKeys(iss.Signer.Public(), pub) {
			return errors.New("x509x: self-signed certificate: signer key is not the subject key")
		}
		if iss.AltSigner != nil && (altPub == nil || !equalKeys(iss.AltSigner.Public(), altPub)) {
			return errors.New("x509x: self-signed Catalyst certificate: alternative signer key is not the subject's alternative key")
		}
		return nil
	}
	spki, err := algo.MarshalPKIX(iss.Signer.Public())
	if err != nil || !bytes.Equal(spki, iss.Cert.RawSubjectPublicKeyInfo) {
		return errors.New("x509x: signer key does not match the issuer certificate")
	}
	if iss.AltSigner != nil {
		alt, err := algo.MarshalPKIX(iss.AltSigner.Public())
		if ext := extensionValue(iss.Cert.Extensions, OIDSubjectAltPublicKeyInfo); err != nil || !bytes.Equal(alt, ext) {
			return errors.New("x509x: alternative signer key does not match the issuer's subjectAltPublicKeyInfo")
		}
	}
	return nil
}

// catalystExtensions returns tmpl's extra extensions plus the Catalyst
// ones this certificate or CRL needs.
func catalystExtensions(extra []pkix.Extension, altPub crypto.PublicKey, alt algo.Signer, pss bool) ([]pkix.Extension, error) {
	for _, e := range extra {
		if e.Id.Equal(OIDSubjectAltPublicKeyInfo) || e.Id.Equal(OIDAltSignatureAlgorithm) || e.Id.Equal(OIDAltSignatureValue) {
			return nil, fmt.Errorf("x509x: template must not carry Catalyst extension %s; pass the keys instead", e.Id)
		}
	}
	out := append([]pkix.Extension(nil), extra...)
	if altPub != nil {
		spki, err := algo.MarshalPKIX(altPub)
		if err != nil {
			return nil, fmt.Errorf("x509x: alternative public key: %w", err)
		}
		out = append(out, pkix.Extension{Id: OIDSubjectAltPublicKeyInfo, Value: spki})
	}
	if alt != nil {
		a, err := signatureAlgorithmFor(alt.Algorithm(), pss)
		if err != nil {
			return nil, fmt.Errorf("x509x: alternative signer: %w", err)
		}
		out = append(out, pkix.Extension{Id: OIDAltSignatureAlgorithm, Value: a.marshal()})
	}
	return out, nil
}

// subjectKeyID is crypto/x509's default (RFC 7093 method 1): the leftmost
// 160 bits of SHA-256 over the subjectPublicKey bits.
func subjectKeyID(spki []byte) ([]byte, error) {
	s := cryptobyte.String(spki)
	var body cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !body.SkipASN1(cbasn1.SEQUENCE) || !body.ReadASN1BitString(&bits) {
		return nil, errors.New("malformed SubjectPublicKeyInfo")
	}
	h := sha256.Sum256(bits.Bytes)
	return h[:20], nil
}

func createCertificate(rand io.Reader, tmpl *x509.Certificate, pub, altPub crypto.PublicKey, iss Issuer) ([]byte, error) {
	if pub == nil {
		return nil, errors.New("x509x: no subject public key")
	}
	if err := checkIssuerKeys(iss, pub, altPub); err != nil {
		return nil, err
	}
	spki, err := algo.MarshalPKIX(pub)
	if err != nil {
		return nil, fmt.Errorf("x509x: subject public key: %w", err)
	}
	sigAlg, err := signatureAlgorithmFor(iss.Signer.Algorithm(), iss.PSS)
	if err != nil {
		return nil, fmt.Errorf("x509x: signer: %w", err)
	}

	t := *tmpl
	t.PublicKey = nil
	t.SignatureAlgorithm = x509.PureEd25519
	if len(t.SubjectKeyId) == 0 && t.IsCA {
		if t.SubjectKeyId, err = subjectKeyID(spki); err != nil {
			return nil, err
		}
	}
	if t.ExtraExtensions, err = catalystExtensions(t.ExtraExtensions, altPub, iss.AltSigner, iss.PSS); err != nil {
		return nil, err
	}
	parent := &t
	if iss.Cert != nil {
		p := *iss.Cert
		p.PublicKey = nil // the placeholder signs; the real key was checked above
		parent = &p
	}
	k := placeholderKey()
	draft, err := x509.CreateCertificate(rand, &t, parent, k.Public(), k)
	if err != nil {
		return nil, err
	}
	tbs, _, _, err := signedParts(draft)
	if err != nil {
		return nil, err
	}
	p, err := parseCertTBS(tbs)
	if err != nil {
		return nil, err
	}
	p.fields[p.sigIdx] = sigAlg.marshal()
	p.fields[p.sigIdx+4] = spki
	if iss.AltSigner != nil {
		if err := p.addCatalystSignature(rand, iss.AltSigner, iss.PSS); err != nil {
			return nil, fmt.Errorf("x509x: %w", err)
		}
	}
	return signTBS(rand, p.encode(), sigAlg, iss)
}

// signTBS signs a finished to-be-signed structure with the primary signer,
// checks the signature as crypto/x509 does, and assembles the result.
func signTBS(rand io.Reader, tbs []byte, sigAlg algorithmID, iss Issuer) ([]byte, error) {
	sig, err := signMessage(rand, iss.Signer, tbs, iss.PSS)
	if err != nil {
		return nil, fmt.Errorf("x509x: signing: %w", err)
	}
	if err := verifySignature(iss.Signer.Public(), sigAlg, tbs, sig); err != nil {
		return nil, fmt.Errorf("x509x: signer returned an invalid signature: %w", err)
	}
	return assembleSigned(tbs, sigAlg, sig), nil
}

// checkCAConstraints mirrors crypto/x509: only a CA key may sign
// certificates (RFC 5280, 4.2.1.9 and 4.2.1.3).
func checkCAConstraints(parent *x509.Certificate, usage x509.KeyUsage) error {
	if parent.Version == 3 && !parent.BasicConstraintsValid || parent.BasicConstraintsValid && !parent.IsCA {
		return x509.ConstraintViolationError{}
	}
	if parent.KeyUsage != 0 && parent.KeyUsage&usage == 0 {
		return x509.ConstraintViolationError{}
	}
	return nil
}

func checkSignatureFrom(child, parent *x509.Certificate) error {
	if err := checkCAConstraints(parent, x509.KeyUsageCertSign); err != nil {
		return err
	}
	primary, alt := VerifyCatalyst(child, parent)
	if primary != nil {
		return fmt.Errorf("x509x: %w", primary)
	}
	if alt != nil && !errors.Is(alt, ErrNotCatalyst) {
		return fmt.Errorf("x509x: %w", alt)
	}
	return nil
}
