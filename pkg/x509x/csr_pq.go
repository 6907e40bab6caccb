package x509x

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
)

// Catalyst CSRs carry the alternative key and signature as three
// CertificationRequestInfo attributes, with the extension OIDs as
// attribute types and the extension syntaxes as single values, as Bouncy
// Castle's PKCS10CertificationRequestBuilder writes them:
//
//	{ 2.5.29.72, { SubjectPublicKeyInfo } }   subjectAltPublicKeyInfo
//	{ 2.5.29.73, { AlgorithmIdentifier } }    altSignatureAlgorithm
//	{ 2.5.29.74, { BIT STRING } }             altSignatureValue
//
// The alternative signature covers the CertificationRequestInfo without
// the altSignatureValue attribute; the primary signature covers all of it.

// attribute encodes Attribute ::= SEQUENCE { type, SET { value } }.
func attribute(oid asn1.ObjectIdentifier, value []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(value) })
	})
	return b.BytesOrPanic()
}

// parseAttribute returns an Attribute's type and first value.
func parseAttribute(attr []byte) (asn1.ObjectIdentifier, []byte, error) {
	s := cryptobyte.String(attr)
	var body, set, value cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1ObjectIdentifier(&oid) ||
		!body.ReadASN1(&set, cbasn1.SET) || !set.ReadAnyASN1Element(&value, new(cbasn1.Tag)) {
		return nil, nil, errors.New("malformed CSR attribute")
	}
	return oid, value, nil
}

func isCatalystOID(oid asn1.ObjectIdentifier) bool {
	return oid.Equal(OIDSubjectAltPublicKeyInfo) || oid.Equal(OIDAltSignatureAlgorithm) || oid.Equal(OIDAltSignatureValue)
}

// csrAttributes splits a CertificationRequestInfo into its fields and the
// attributes.
func csrAttributes(cri []byte) (fields, attrs [][]byte, err error) {
	fields, err = splitSequence(cri, cbasn1.SEQUENCE)
	if err != nil || len(fields) != 4 || tagOf(fields[3]) != tagCSRAttributes {
		return nil, nil, errors.New("malformed CertificationRequestInfo")
	}
	attrs, err = splitSequence(fields[3], tagCSRAttributes)
	return fields, attrs, err
}

// isCatalystCSR reports whether a CSR carries Catalyst attributes.
func isCatalystCSR(csr *x509.CertificateRequest) bool {
	_, attrs, err := csrAttributes(csr.RawTBSCertificateRequest)
	if err != nil {
		return false
	}
	for _, a := range attrs {
		if oid, _, err := parseAttribute(a); err == nil && isCatalystOID(oid) {
			return true
		}
	}
	return false
}

func createCertificateRequest(rand io.Reader, tmpl *x509.CertificateRequest, s, alt algo.Signer, pss bool) ([]byte, error) {
	if s == nil {
		return nil, errors.New("x509x: no signer")
	}
	spki, err := algo.MarshalPKIX(s.Public())
	if err != nil {
		return nil, fmt.Errorf("x509x: CSR key: %w", err)
	}
	sigAlg, err := signatureAlgorithmFor(s.Algorithm(), pss)
	if err != nil {
		return nil, fmt.Errorf("x509x: CSR key: %w", err)
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
	fields[2] = spki
	if alt != nil {
		for _, a := range attrs {
			if oid, _, _ := parseAttribute(a); isCatalystOID(oid) {
				return nil, fmt.Errorf("x509x: template must not carry Catalyst attribute %s", oid)
			}
		}
		altSPKI, err := algo.MarshalPKIX(alt.Public())
		if err != nil {
			return nil, fmt.Errorf("x509x: alternative key: %w", err)
		}
		altAlg, err := signatureAlgorithmFor(alt.Algorithm(), pss)
		if err != nil {
			return nil, fmt.Errorf("x509x: alternative key: %w", err)
		}
		attrs = append(attrs, attribute(OIDSubjectAltPublicKeyInfo, altSPKI), attribute(OIDAltSignatureAlgorithm, altAlg.marshal()))
		sortSetOf(attrs)
		fields[3] = wrap(tagCSRAttributes, attrs...)
		pre := wrap(cbasn1.SEQUENCE, fields...)
		altSig, err := signMessage(rand, alt, pre, pss)
		if err != nil {
			return nil, fmt.Errorf("x509x: alternative signature: %w", err)
		}
		if err := verifySignature(alt.Public(), altAlg, pre, altSig); err != nil {
			return nil, fmt.Errorf("x509x: alternative signer returned an invalid signature: %w", err)
		}
		var b cryptobyte.Builder
		b.AddASN1BitString(altSig)
		attrs = append(attrs, attribute(OIDAltSignatureValue, b.BytesOrPanic()))
		sortSetOf(attrs)
		fields[3] = wrap(tagCSRAttributes, attrs...)
	}
	return signTBS(rand, wrap(cbasn1.SEQUENCE, fields...), sigAlg, Issuer{Signer: s, PSS: pss})
}

func parseCertificateRequest(csr *x509.CertificateRequest) (*CertificateRequest, error) {
	pub := csr.PublicKey
	if pub == nil {
		var err error
		if pub, err = algo.ParsePKIX(csr.RawSubjectPublicKeyInfo); err != nil {
			return nil, fmt.Errorf("CSR key: %w", err)
		}
	}
	a, err := algo.Of(pub)
	if err != nil {
		return nil, fmt.Errorf("CSR key: %w", err)
	}
	if !a.CanSign() {
		return nil, fmt.Errorf("CSR key is %s, which cannot sign its request: certify it from its public key, with a statement of possession (RFC 9883)", a)
	}
	_, sigAlg, _, err := signedParts(csr.Raw)
	if err != nil {
		return nil, fmt.Errorf("malformed CSR: %v", err)
	}
	if err := verifySignature(pub, sigAlg, csr.RawTBSCertificateRequest, csr.Signature); err != nil {
		return nil, fmt.Errorf("CSR signature does not verify: %w", err)
	}
	out := &CertificateRequest{CertificateRequest: csr, PublicKey: pub, Algorithm: a}

	fields, attrs, err := csrAttributes(csr.RawTBSCertificateRequest)
	if err != nil {
		return nil, fmt.Errorf("malformed CSR: %v", err)
	}
	var altSPKI, altAlgDER, altSigDER []byte
	var rest [][]byte
	for _, attr := range attrs {
		oid, value, err := parseAttribute(attr)
		if err != nil {
			return nil, err
		}
		var dst *[]byte
		switch {
		case oid.Equal(OIDSubjectAltPublicKeyInfo):
			dst = &altSPKI
		case oid.Equal(OIDAltSignatureAlgorithm):
			dst = &altAlgDER
		case oid.Equal(OIDAltSignatureValue):
			dst = &altSigDER
		}
		if dst != nil && *dst != nil {
			return nil, fmt.Errorf("CSR has two %s attributes", oid)
		}
		if dst != nil {
			*dst = value
		}
		if !oid.Equal(OIDAltSignatureValue) {
			rest = append(rest, attr)
		}
	}
	if altSPKI == nil && altAlgDER == nil && altSigDER == nil {
		return out, nil
	}
	if altSPKI == nil || altAlgDER == nil || altSigDER == nil {
		return nil, errors.New("CSR has incomplete Catalyst attributes (needs subjectAltPublicKeyInfo, altSignatureAlgorithm and altSignatureValue)")
	}
	altPub, err := algo.ParsePKIX(altSPKI)
	if err != nil {
		return nil, fmt.Errorf("CSR alternative key: %w", err)
	}
	altAlg, err := parseAlgorithmID(altAlgDER)
	if err != nil {
		return nil, fmt.Errorf("CSR altSignatureAlgorithm: %v", err)
	}
	var altSig asn1.BitString
	if r, err := asn1.Unmarshal(altSigDER, &altSig); err != nil || len(r) != 0 || altSig.BitLength%8 != 0 {
		return nil, errors.New("CSR altSignatureValue: malformed BIT STRING")
	}
	fields[3] = wrap(tagCSRAttributes, rest...)
	if err := verifySignature(altPub, altAlg, wrap(cbasn1.SEQUENCE, fields...), altSig.Bytes); err != nil {
		return nil, fmt.Errorf("CSR alternative signature does not verify: %w", err)
	}
	out.AltPublicKey = altPub
	out.AltAlgorithm, _ = algo.Of(altPub)
	return out, nil
}
