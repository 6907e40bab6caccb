// Package x509x builds and checks certificates, CSRs and CRLs beyond what
// crypto/x509 can: post-quantum keys, Catalyst and composite hybrids. For
// classical keys it hands the work to crypto/x509, so that path stays the
// standard library's.
package x509x

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"

	"github.com/qpki/qpki/pkg/algo"
)

// Issuer is what signs a certificate or CRL.
type Issuer struct {
	// Cert is the issuing certificate; nil when the certificate being made
	// is self-signed.
	Cert *x509.Certificate
	// Signer makes the (primary) signature.
	Signer algo.Signer
	// AltSigner makes the Catalyst alternative signature; nil otherwise.
	AltSigner algo.Signer
	// PSS selects RSASSA-PSS for RSA signers.
	PSS bool
}

// SignatureAlgorithm returns the crypto/x509 constant for a classical
// signer, or UnknownSignatureAlgorithm for the others.
func SignatureAlgorithm(a algo.Algorithm, pss bool) x509.SignatureAlgorithm {
	switch a {
	case algo.ECDSAP256:
		return x509.ECDSAWithSHA256
	case algo.ECDSAP384:
		return x509.ECDSAWithSHA384
	case algo.ECDSAP521:
		return x509.ECDSAWithSHA512
	case algo.Ed25519:
		return x509.PureEd25519
	case algo.RSA2048, algo.RSA3072:
		if pss {
			return x509.SHA256WithRSAPSS
		}
		return x509.SHA256WithRSA
	case algo.RSA4096:
		if pss {
			return x509.SHA384WithRSAPSS
		}
		return x509.SHA384WithRSA
	}
	return x509.UnknownSignatureAlgorithm
}

func classical(iss Issuer) bool {
	return iss.AltSigner == nil && iss.Signer.Algorithm().IsClassical()
}

// CreateCertificate signs tmpl for the subject key pub. altPub, when not
// nil, is the subject's alternative (Catalyst) public key.
func CreateCertificate(rand io.Reader, tmpl *x509.Certificate, pub, altPub crypto.PublicKey, iss Issuer) ([]byte, error) {
	if iss.Signer == nil {
		return nil, errors.New("x509x: no signer")
	}
	if altPub == nil && classical(iss) && isClassicalKey(pub) {
		t := *tmpl
		t.SignatureAlgorithm = SignatureAlgorithm(iss.Signer.Algorithm(), iss.PSS)
		parent := iss.Cert
		if parent == nil {
			parent = &t
		}
		if spk, ok := iss.Signer.Public().(*ecdsa.PublicKey); ok {
			return createVerified(rand, &t, parent, pub, iss.Signer, spk)
		}
		return x509.CreateCertificate(rand, &t, parent, pub, iss.Signer)
	}
	return createCertificate(rand, tmpl, pub, altPub, iss)
}

// CreateRevocationList signs a CRL.
func CreateRevocationList(rand io.Reader, tmpl *x509.RevocationList, iss Issuer) ([]byte, error) {
	if iss.Signer == nil || iss.Cert == nil {
		return nil, errors.New("x509x: a CRL needs an issuer certificate and signer")
	}
	if classical(iss) {
		t := *tmpl
		t.SignatureAlgorithm = SignatureAlgorithm(iss.Signer.Algorithm(), iss.PSS)
		return x509.CreateRevocationList(rand, &t, iss.Cert, iss.Signer)
	}
	return createRevocationList(rand, tmpl, iss)
}

// CreateCertificateRequest signs a CSR. alt, when not nil, adds Catalyst
// alternative key and signature attributes.
func CreateCertificateRequest(rand io.Reader, tmpl *x509.CertificateRequest, s, alt algo.Signer, pss bool) ([]byte, error) {
	if alt == nil && s.Algorithm().IsClassical() {
		t := *tmpl
		t.SignatureAlgorithm = SignatureAlgorithm(s.Algorithm(), pss)
		return x509.CreateCertificateRequest(rand, &t, s)
	}
	return createCertificateRequest(rand, tmpl, s, alt, pss)
}

func isClassicalKey(pub crypto.PublicKey) bool {
	a, err := algo.Of(pub)
	return err == nil && a.IsClassical()
}

// PublicKey returns a certificate's subject public key, decoding the
// algorithms crypto/x509 leaves nil.
func PublicKey(c *x509.Certificate) (crypto.PublicKey, error) {
	if c.PublicKey != nil {
		return c.PublicKey, nil
	}
	return algo.ParsePKIX(c.RawSubjectPublicKeyInfo)
}

// KeyAlgorithm names the algorithm of a certificate's subject key.
func KeyAlgorithm(c *x509.Certificate) (algo.Algorithm, error) {
	pub, err := PublicKey(c)
	if err != nil {
		return "", err
	}
	return algo.Of(pub)
}

// CheckSignatureFrom verifies that parent signed child, for every algorithm
// qpki knows.
func CheckSignatureFrom(child, parent *x509.Certificate) error {
	if child.SignatureAlgorithm != x509.UnknownSignatureAlgorithm && parent.PublicKey != nil && !IsCatalyst(child) {
		// crypto/x509 refuses SHA-1 and checks key usage / basic constraints
		// in CheckSignatureFrom; that is what we want for classical chains.
		return child.CheckSignatureFrom(parent)
	}
	return checkSignatureFrom(child, parent)
}

// pssFor reports whether a classical signature algorithm uses PSS.
func pssFor(sa x509.SignatureAlgorithm) bool {
	switch sa {
	case x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS:
		return true
	}
	return false
}

var _ = rsa.PSSSaltLengthEqualsHash
var _ = pssFor

// CheckCRLSignature verifies a CRL's signature with the issuer's key, for
// every algorithm qpki knows.
func CheckCRLSignature(crl *x509.RevocationList, issuer *x509.Certificate) error {
	if crl.SignatureAlgorithm != x509.UnknownSignatureAlgorithm && issuer.PublicKey != nil && !crlIsCatalyst(crl) {
		return crl.CheckSignatureFrom(issuer)
	}
	return checkCRLSignature(crl, issuer)
}
