package cms

import (
	"encoding/asn1"
	"errors"
	"fmt"
)

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

// parseContentInfo converts a BER or DER message to DER and splits its
// ContentInfo.
func parseContentInfo(ber []byte) (asn1.ObjectIdentifier, []byte, error) {
	der, err := toDER(ber)
	if err != nil {
		return nil, nil, err
	}
	var ci contentInfo
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil {
		return nil, nil, fmt.Errorf("cms: malformed ContentInfo: %v", err)
	}
	if len(rest) != 0 {
		return nil, nil, errors.New("cms: trailing data after ContentInfo")
	}
	return ci.ContentType, ci.Content.FullBytes, nil
}

// ContentType returns the content type of a CMS message: OIDSignedData,
// OIDEnvelopedData, OIDAuthEnvelopedData, ...
func ContentType(ber []byte) (asn1.ObjectIdentifier, error) {
	t, _, err := parseContentInfo(ber)
	return t, err
}

func wrapContentInfo(typ asn1.ObjectIdentifier, content []byte) ([]byte, error) {
	return asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}{typ, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: content}})
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial asn1.RawValue // INTEGER, kept raw: any length
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

func mustRaw(v any) asn1.RawValue {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return asn1.RawValue{FullBytes: b}
}

// OIDName names the content types and algorithms qpki knows, for `cms info`.
func OIDName(oid asn1.ObjectIdentifier) string {
	for _, n := range []struct {
		oid  asn1.ObjectIdentifier
		name string
	}{
		{OIDData, "data"}, {OIDSignedData, "signedData"}, {OIDEnvelopedData, "envelopedData"},
		{OIDAuthEnvelopedData, "authEnvelopedData"}, {oidAES128CBC, "aes128-CBC"}, {oidAES256CBC, "aes256-CBC"},
		{oidAES128GCM, "aes128-GCM"}, {oidAES256GCM, "aes256-GCM"}, {oidAES128Wrap, "aes128-wrap"}, {oidAES256Wrap, "aes256-wrap"},
		{oidRSAESOAEP, "rsaes-oaep"}, {oidRSAEncryption, "rsaEncryption"}, {oidStdDHSHA256KDF, "dhSinglePass-stdDH-sha256kdf"},
		{oidStdDHSHA384KDF, "dhSinglePass-stdDH-sha384kdf"}, {oidStdDHSHA512KDF, "dhSinglePass-stdDH-sha512kdf"},
		{oidHKDFSHA256, "hkdf-with-sha256"}, {oidHKDFSHA384, "hkdf-with-sha384"}, {oidHKDFSHA512, "hkdf-with-sha512"},
		{oidSHA1, "sha1"}, {oidSHA256, "sha256"}, {oidSHA384, "sha384"}, {oidSHA512, "sha512"}, {oidSHAKE128, "shake128"}, {oidSHAKE256, "shake256"},
		{oidECDSAWithSHA256, "ecdsa-with-SHA256"}, {oidECDSAWithSHA384, "ecdsa-with-SHA384"}, {oidECDSAWithSHA512, "ecdsa-with-SHA512"},
		{oidSHA256WithRSA, "sha256WithRSAEncryption"}, {oidSHA384WithRSA, "sha384WithRSAEncryption"}, {oidSHA512WithRSA, "sha512WithRSAEncryption"},
		{oidEd25519, "ed25519"},
	} {
		if n.oid.Equal(oid) {
			return n.name
		}
	}
	if info, ok := lookupAlgOID(oid); ok {
		return string(info)
	}
	return oid.String()
}
