package cms

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
)

// certsOnly is the degenerate SignedData of a certs-only message (RFC
// 5652 §5, CMC Simple PKI Response): no digest algorithms, no content, no
// signers, only certificates.
type certsOnly struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	EncapContentInfo struct {
		EContentType asn1.ObjectIdentifier
	}
	Certificates asn1.RawValue `asn1:"optional,tag:0"`
	CRLs         asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos  asn1.RawValue
}

var emptySet = asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: []byte{}}

// CertsOnly encodes certificates as a degenerate certs-only SignedData, as
// EST answers cacerts and (re)enroll (RFC 7030 §4.1.3, §4.2.3).
func CertsOnly(certs ...*x509.Certificate) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("cms: no certificates to send")
	}
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	// DER orders the elements of a SET OF by their encodings.
	slices.SortFunc(raw, bytes.Compare)
	sd := certsOnly{Version: 1, DigestAlgorithms: emptySet, SignerInfos: emptySet,
		Certificates: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: bytes.Join(raw, nil)}}
	sd.EncapContentInfo.EContentType = OIDData
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return wrapContentInfo(OIDSignedData, inner)
}

// ParseCertsOnly returns the certificates of a certs-only message (BER or
// DER).
func ParseCertsOnly(ber []byte) ([]*x509.Certificate, error) {
	typ, content, err := parseContentInfo(ber)
	if err != nil {
		return nil, err
	}
	if !typ.Equal(OIDSignedData) {
		return nil, fmt.Errorf("cms: content type %s is not signedData", OIDName(typ))
	}
	var sd certsOnly
	if _, err := asn1.Unmarshal(innerOf(content), &sd); err != nil {
		return nil, fmt.Errorf("cms: malformed SignedData: %v", err)
	}
	if len(sd.Certificates.Bytes) == 0 {
		return nil, errors.New("cms: the message holds no certificates")
	}
	return x509.ParseCertificates(sd.Certificates.Bytes)
}

// Unwrap splits a ContentInfo (BER or DER) into its content type and the
// DER of its content, e.g. a bare SignedData to enclose in an envelope.
func Unwrap(ber []byte) (asn1.ObjectIdentifier, []byte, error) {
	typ, content, err := parseContentInfo(ber)
	if err != nil {
		return nil, nil, err
	}
	return typ, innerOf(content), nil
}

// Wrap encodes a ContentInfo around the DER of a content.
func Wrap(typ asn1.ObjectIdentifier, content []byte) ([]byte, error) {
	return wrapContentInfo(typ, content)
}

// CRLsOnly encodes CRLs (DER) as a degenerate SignedData with no
// certificates, as SCEP answers GetCRL (RFC 8894 §3.3.4).
func CRLsOnly(crls ...[]byte) ([]byte, error) {
	if len(crls) == 0 {
		return nil, errors.New("cms: no CRLs to send")
	}
	raw := slices.Clone(crls)
	slices.SortFunc(raw, bytes.Compare)
	sd := certsOnly{Version: 1, DigestAlgorithms: emptySet, SignerInfos: emptySet,
		CRLs: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: bytes.Join(raw, nil)}}
	sd.EncapContentInfo.EContentType = OIDData
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return wrapContentInfo(OIDSignedData, inner)
}
