package est

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
)

// CMS object identifiers (RFC 5652).
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
)

// contentInfo is CMS ContentInfo, as parsed.
type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

// wrapContentInfo encodes a ContentInfo around DER content.
func wrapContentInfo(typ asn1.ObjectIdentifier, content []byte) ([]byte, error) {
	return asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}{typ, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: content}})
}

// certsOnly is the degenerate SignedData of a certs-only response (RFC
// 5652 §5, CMC Simple PKI Response): no digest algorithms, no content,
// no signers, only certificates.
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

// CertsOnly encodes certificates as a degenerate certs-only PKCS#7
// SignedData, as EST answers cacerts and (re)enroll (RFC 7030 §4.1.3,
// §4.2.3).
func CertsOnly(certs ...*x509.Certificate) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("est: no certificates to send")
	}
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	// DER orders the elements of a SET OF by their encodings.
	slices.SortFunc(raw, bytes.Compare)
	sd := certsOnly{Version: 1, DigestAlgorithms: emptySet, SignerInfos: emptySet,
		Certificates: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: bytes.Join(raw, nil)}}
	sd.EncapContentInfo.EContentType = oidData
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return wrapContentInfo(oidSignedData, inner)
}

// ParseCertsOnly returns the certificates of a certs-only PKCS#7 message.
func ParseCertsOnly(der []byte) ([]*x509.Certificate, error) {
	var ci contentInfo
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil {
		return nil, fmt.Errorf("est: malformed PKCS#7: %v", err)
	}
	if len(rest) > 0 {
		return nil, errors.New("est: trailing data after PKCS#7")
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("est: PKCS#7 content type %v is not signedData", ci.ContentType)
	}
	var sd certsOnly
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("est: malformed SignedData: %v", err)
	}
	if len(sd.Certificates.Bytes) == 0 {
		return nil, errors.New("est: the PKCS#7 message holds no certificates")
	}
	return x509.ParseCertificates(sd.Certificates.Bytes)
}
