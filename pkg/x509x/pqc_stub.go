package x509x

import (
	"crypto"
	"crypto/x509"
	"io"

	"github.com/qpki/qpki/pkg/algo"
)

// The post-quantum and hybrid paths. Placeholders until they land.

func createCertificate(rand io.Reader, tmpl *x509.Certificate, pub, altPub crypto.PublicKey, iss Issuer) ([]byte, error) {
	return nil, unsupported("certificate signing")
}

func createRevocationList(rand io.Reader, tmpl *x509.RevocationList, iss Issuer) ([]byte, error) {
	return nil, unsupported("CRL signing")
}

func createCertificateRequest(rand io.Reader, tmpl *x509.CertificateRequest, s, alt algo.Signer, pss bool) ([]byte, error) {
	return nil, unsupported("CSR signing")
}

func checkSignatureFrom(child, parent *x509.Certificate) error {
	return unsupported("signature verification")
}

func parseCertificateRequest(csr *x509.CertificateRequest) (*CertificateRequest, error) {
	return nil, unsupported("CSR parsing")
}

func checkCRLSignature(crl *x509.RevocationList, issuer *x509.Certificate) error {
	return unsupported("CRL verification")
}
