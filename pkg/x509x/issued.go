package x509x

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"

	"github.com/qpki/qpki/pkg/algo"
)

// CheckIssued is CheckSignatureFrom for a certificate that parent's key
// is said to have just signed: a CA checking what its own workers return.
// A classical ECDSA signature is checked with algo.VerifyIssuerECDSA, whose
// tables of the CA key the signer built already when it checked its own
// signature, so that the check costs a fraction of crypto/ecdsa's; any
// other signature, and both of a Catalyst certificate, as
// CheckSignatureFrom checks them.
func CheckIssued(child, parent *x509.Certificate) error {
	if pub, ok := parent.PublicKey.(*ecdsa.PublicKey); ok && !IsCatalyst(child) {
		if h := ecdsaHash(child.SignatureAlgorithm); h != 0 {
			if err := checkCAConstraints(parent, x509.KeyUsageCertSign); err != nil {
				return err
			}
			d := h.New()
			d.Write(child.RawTBSCertificate)
			if !algo.VerifyIssuerECDSA(pub, d.Sum(nil), child.Signature) {
				return errors.New("x509x: ECDSA signature does not verify under the issuer's key")
			}
			return nil
		}
	}
	return CheckSignatureFrom(child, parent)
}

// ecdsaHash is the digest of an ECDSA signature algorithm crypto/x509
// parsed (it checks that the outer and inner algorithms agree), or 0.
func ecdsaHash(a x509.SignatureAlgorithm) crypto.Hash {
	switch a {
	case x509.ECDSAWithSHA256:
		return crypto.SHA256
	case x509.ECDSAWithSHA384:
		return crypto.SHA384
	case x509.ECDSAWithSHA512:
		return crypto.SHA512
	}
	return 0
}
