package x509x

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
)

// RFC 9883: a key that cannot sign (ML-KEM) is requested with a CSR signed
// by another key of the same subject, one that already has a signature
// certificate, named in a privateKeyPossessionStatement attribute:
//
//	id-at-statementOfPossession OBJECT IDENTIFIER ::= { 1 3 6 1 4 1 22112 2 1 }
//	PrivateKeyPossessionStatement ::= SEQUENCE {
//	  signer  IssuerAndSerialNumber,
//	  cert    Certificate OPTIONAL }
var OIDStatementOfPossession = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 22112, 2, 1}

// CreateCertificateRequestWithStatement makes an RFC 9883 request for pub,
// a key that cannot sign, signed by signer whose certificate is signerCert.
// includeCert puts signerCert in the statement.
func CreateCertificateRequestWithStatement(rand io.Reader, tmpl *x509.CertificateRequest, pub crypto.PublicKey, signer algo.Signer, signerCert *x509.Certificate, includeCert, pss bool) ([]byte, error) {
	if signer == nil || signerCert == nil {
		return nil, errors.New("x509x: a statement of possession needs the signer and its certificate")
	}
	a, err := algo.Of(pub)
	if err != nil {
		return nil, fmt.Errorf("x509x: subject key: %w", err)
	}
	if a.CanSign() {
		return nil, fmt.Errorf("x509x: %s keys sign their own requests; RFC 9883 is for keys that cannot", a)
	}
	certPub, err := PublicKey(signerCert)
	if err != nil || !equalKeys(signer.Public(), certPub) {
		return nil, errors.New("x509x: signer key does not match the signer certificate")
	}
	spki, err := algo.MarshalPKIX(pub)
	if err != nil {
		return nil, fmt.Errorf("x509x: subject key: %w", err)
	}
	sigAlg, err := signatureAlgorithmFor(signer.Algorithm(), pss)
	if err != nil {
		return nil, fmt.Errorf("x509x: signer: %w", err)
	}
	t := *tmpl
	t.SignatureAlgorithm = x509.PureEd25519
	draft, err := x509.CreateCertificateRequest(rand, &t, placeholderKey())
	if err != nil {
		return nil, err
	}
	cri, _, _, err := signedParts(draft)
	if err != nil {
		return nil, err
	}
	fields, attrs, err := csrAttributes(cri)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(signerCert.RawIssuer)
			b.AddASN1BigInt(signerCert.SerialNumber)
		})
		if includeCert {
			b.AddBytes(signerCert.Raw)
		}
	})
	stmt, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	attrs = append(attrs, attribute(OIDStatementOfPossession, stmt))
	sortSetOf(attrs)
	fields[2] = spki
	fields[3] = wrap(tagCSRAttributes, attrs...)
	return signTBS(rand, wrap(cbasn1.SEQUENCE, fields...), sigAlg, Issuer{Signer: signer, PSS: pss})
}

// ParseCertificateRequestWithStatement parses an RFC 9883 request and
// checks its signature with the key of the signature certificate the
// statement names. That certificate is the one in the statement or, when
// absent, the one lookup finds (lookup may be nil). It returns the request
// and the signer's certificate: the caller must still check that this
// certificate chains to a CA it trusts, is valid, and belongs to the same
// subject (RFC 9883, section 4).
func ParseCertificateRequestWithStatement(der []byte, lookup func(rawIssuer []byte, serial *big.Int) (*x509.Certificate, error)) (*CertificateRequest, *x509.Certificate, error) {
	if len(der) > MaxCSR {
		return nil, nil, fmt.Errorf("CSR too large (%d bytes, limit %d)", len(der), MaxCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, fmt.Errorf("malformed CSR: %v", err)
	}
	pub, err := algo.ParsePKIX(csr.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, nil, fmt.Errorf("CSR key: %w", err)
	}
	a, err := algo.Of(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("CSR key: %w", err)
	}
	if a.CanSign() {
		return nil, nil, fmt.Errorf("CSR key is %s: a statement of possession must not be used for a signature key", a)
	}
	_, attrs, err := csrAttributes(csr.RawTBSCertificateRequest)
	if err != nil {
		return nil, nil, fmt.Errorf("malformed CSR: %v", err)
	}
	var stmt []byte
	for _, attr := range attrs {
		oid, value, err := parseAttribute(attr)
		if err != nil {
			return nil, nil, err
		}
		if oid.Equal(OIDStatementOfPossession) {
			if stmt != nil {
				return nil, nil, errors.New("CSR has two privateKeyPossessionStatement attributes")
			}
			stmt = value
		}
	}
	if stmt == nil {
		return nil, nil, fmt.Errorf("CSR for a %s key has no privateKeyPossessionStatement (RFC 9883)", a)
	}
	s := cryptobyte.String(stmt)
	var body, ias, rawIssuer cryptobyte.String
	serial := new(big.Int)
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !s.Empty() || !body.ReadASN1(&ias, cbasn1.SEQUENCE) ||
		!ias.ReadASN1Element(&rawIssuer, cbasn1.SEQUENCE) || !ias.ReadASN1Integer(serial) || !ias.Empty() {
		return nil, nil, errors.New("malformed privateKeyPossessionStatement")
	}
	var signerCert *x509.Certificate
	if !body.Empty() {
		var certDER cryptobyte.String
		if !body.ReadASN1Element(&certDER, cbasn1.SEQUENCE) || !body.Empty() {
			return nil, nil, errors.New("malformed privateKeyPossessionStatement certificate")
		}
		if signerCert, err = x509.ParseCertificate(certDER); err != nil {
			return nil, nil, fmt.Errorf("privateKeyPossessionStatement certificate: %v", err)
		}
		if !bytes.Equal(signerCert.RawIssuer, rawIssuer) || signerCert.SerialNumber.Cmp(serial) != 0 {
			return nil, nil, errors.New("privateKeyPossessionStatement: the included certificate is not the one named")
		}
	} else {
		if lookup == nil {
			return nil, nil, errors.New("privateKeyPossessionStatement names a certificate that is not included")
		}
		if signerCert, err = lookup(rawIssuer, serial); err != nil {
			return nil, nil, fmt.Errorf("privateKeyPossessionStatement signer certificate: %w", err)
		}
	}
	signerPub, err := PublicKey(signerCert)
	if err != nil {
		return nil, nil, fmt.Errorf("signer certificate: %w", err)
	}
	_, sigAlg, _, err := signedParts(csr.Raw)
	if err != nil {
		return nil, nil, fmt.Errorf("malformed CSR: %v", err)
	}
	if err := verifySignature(signerPub, sigAlg, csr.RawTBSCertificateRequest, csr.Signature); err != nil {
		return nil, nil, fmt.Errorf("CSR signature does not verify with the signer certificate: %w", err)
	}
	return &CertificateRequest{CertificateRequest: csr, PublicKey: pub, Algorithm: a}, signerCert, nil
}

// KeyCannotSign reports whether a CSR's subject key is of an algorithm
// that cannot sign (ML-KEM): such a request carries an RFC 9883 statement
// of possession instead of a self-signature.
func KeyCannotSign(der []byte) bool {
	if len(der) > MaxCSR {
		return false
	}
	// Only the key's algorithm identifier is read: every request passes
	// here, and a full parse would be repeated by the caller.
	in := cryptobyte.String(der)
	var req, info, spki, algID cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !in.ReadASN1(&req, cbasn1.SEQUENCE) ||
		!req.ReadASN1(&info, cbasn1.SEQUENCE) ||
		!info.SkipASN1(cbasn1.INTEGER) || // version
		!info.SkipASN1(cbasn1.SEQUENCE) || // subject
		!info.ReadASN1(&spki, cbasn1.SEQUENCE) ||
		!spki.ReadASN1(&algID, cbasn1.SEQUENCE) ||
		!algID.ReadASN1ObjectIdentifier(&oid) {
		return false
	}
	a, ok := algo.ByOID(oid)
	return ok && !a.CanSign
}
