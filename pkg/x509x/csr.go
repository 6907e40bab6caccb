package x509x

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/qpki/qpki/pkg/algo"
)

// MaxCSR bounds the size of a CSR qpki parses (an SLH-DSA-256f signature
// alone is about 50 KiB).
const MaxCSR = 256 << 10

// CertificateRequest is a parsed CSR whose proof of possession was
// checked.
type CertificateRequest struct {
	*x509.CertificateRequest
	// PublicKey is the subject key, decoded for every algorithm qpki knows.
	PublicKey crypto.PublicKey
	// Algorithm is the subject key's algorithm.
	Algorithm algo.Algorithm
	// AltPublicKey is the Catalyst alternative key, if the CSR carries one.
	AltPublicKey crypto.PublicKey
	// AltAlgorithm is AltPublicKey's algorithm.
	AltAlgorithm algo.Algorithm
}

// DecodeCSR accepts a CSR as DER or PEM.
func DecodeCSR(data []byte) ([]byte, error) {
	if len(data) > 2*MaxCSR {
		return nil, fmt.Errorf("CSR too large (%d bytes, limit %d)", len(data), MaxCSR)
	}
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("unexpected PEM block %q, want CERTIFICATE REQUEST", block.Type)
		}
		return block.Bytes, nil
	}
	if len(data) == 0 || data[0] != 0x30 {
		return nil, errors.New("not a CSR: neither PEM nor DER")
	}
	return data, nil
}

// ParseCertificateRequest parses a DER CSR and checks its signature.
func ParseCertificateRequest(der []byte) (*CertificateRequest, error) {
	if len(der) > MaxCSR {
		return nil, fmt.Errorf("CSR too large (%d bytes, limit %d)", len(der), MaxCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("malformed CSR: %v", err)
	}
	if csr.PublicKey == nil || csr.SignatureAlgorithm == x509.UnknownSignatureAlgorithm || isCatalystCSR(csr) {
		return parseCertificateRequest(csr)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR signature does not verify: %v", err)
	}
	a, err := algo.Of(csr.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("CSR key: %v", err)
	}
	return &CertificateRequest{CertificateRequest: csr, PublicKey: csr.PublicKey, Algorithm: a}, nil
}

// ParseCertificateRequestUnverified parses a CSR whose signature was
// already checked by whoever accepted it (enroll, before publishing a
// job). Post-quantum and hybrid CSRs are still fully verified: their
// parsing and checking are one step.
func ParseCertificateRequestUnverified(der []byte) (*CertificateRequest, error) {
	if len(der) > MaxCSR {
		return nil, fmt.Errorf("CSR too large (%d bytes, limit %d)", len(der), MaxCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("malformed CSR: %v", err)
	}
	if csr.PublicKey == nil || csr.SignatureAlgorithm == x509.UnknownSignatureAlgorithm || isCatalystCSR(csr) {
		return parseCertificateRequest(csr)
	}
	a, err := algo.Of(csr.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("CSR key: %v", err)
	}
	return &CertificateRequest{CertificateRequest: csr, PublicKey: csr.PublicKey, Algorithm: a}, nil
}
