package x509x

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
)

// errTBSCaptured stops crypto/x509 once it has built the certificate.
var errTBSCaptured = errors.New("x509x: to-be-signed certificate captured")

// tbsCapture is the signer crypto/x509 gets in createVerified: it takes
// the finished TBSCertificate (crypto.MessageSigner gets the message
// itself) and stops there.
type tbsCapture struct {
	pub  crypto.PublicKey
	tbs  []byte
	hash crypto.Hash // the digest crypto/x509 chose for the algorithm it wrote into the TBS
}

func (c *tbsCapture) Public() crypto.PublicKey { return c.pub }

func (c *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errTBSCaptured
}

func (c *tbsCapture) SignMessage(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.tbs, c.hash = append([]byte(nil), msg...), opts.HashFunc()
	return nil, errTBSCaptured
}

// createVerified is x509.CreateCertificate for an ECDSA signer, with the
// same check of the signature: crypto/x509 verifies every signature it
// has a signer make, to catch a faulty signer (an HSM, a fault) before a
// bad certificate goes out. Here crypto/x509 builds the certificate, the
// signer signs it, and algo.VerifyIssuerECDSA checks the signature with
// tables of the signer's key, for under a quarter of crypto/ecdsa's cost
// with P-384.
func createVerified(rand io.Reader, t, parent *x509.Certificate, pub crypto.PublicKey, s algo.Signer, spk *ecdsa.PublicKey) ([]byte, error) {
	capture := &tbsCapture{pub: spk}
	_, err := x509.CreateCertificate(rand, t, parent, pub, capture)
	if !errors.Is(err, errTBSCaptured) {
		if err == nil {
			err = errors.New("x509x: crypto/x509 signed without the signer")
		}
		return nil, err
	}
	h := capture.hash
	if capture.tbs == nil || h == 0 || !h.Available() {
		return nil, fmt.Errorf("x509x: crypto/x509 asked for a %s signature without a digest", s.Algorithm())
	}
	hh := h.New()
	hh.Write(capture.tbs)
	digest := hh.Sum(nil)
	sig, err := s.Sign(rand, digest, h)
	if err != nil {
		return nil, err
	}
	if !algo.VerifyIssuerECDSA(spk, digest, sig) {
		return nil, errors.New("x509: signature returned by signer is invalid: ECDSA verification failure")
	}
	alg, err := tbsSignatureAlgorithm(capture.tbs)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(capture.tbs)
		b.AddBytes(alg)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	if err == nil {
		selfChecked.add(der, spk)
	}
	return der, err
}

// tbsSignatureAlgorithm returns the signature AlgorithmIdentifier inside a
// TBSCertificate, which the certificate repeats outside it.
func tbsSignatureAlgorithm(tbs []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body, alg cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) ||
		!body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || // version
		!body.SkipASN1(cbasn1.INTEGER) || // serialNumber
		!body.ReadASN1Element(&alg, cbasn1.SEQUENCE) {
		return nil, errors.New("x509x: malformed TBSCertificate")
	}
	return alg, nil
}
