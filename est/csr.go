package est

import (
	"crypto/subtle"
	"crypto/tls"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
)

// Attributes of a CSR EST reads.
var (
	// RFC 4108 §2.2.5, used by RFC 7030 §4.4.1.1.
	oidDecryptKeyID = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 37}
	// RFC 7030 §4.4.1.2.
	oidAsymmDecryptKeyID = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 54}
)

// csrAttributes are a CSR's attributes by type, read from the
// CertificationRequestInfo (crypto/x509 keeps only the extension request).
func csrAttributes(rawTBS []byte) (map[string][]asn1.RawValue, error) {
	var info struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes asn1.RawValue `asn1:"optional,tag:0"`
	}
	if _, err := asn1.Unmarshal(rawTBS, &info); err != nil {
		return nil, fmt.Errorf("malformed CSR: %v", err)
	}
	out := map[string][]asn1.RawValue{}
	rest := info.Attributes.Bytes
	for len(rest) > 0 {
		var a attribute
		var err error
		if rest, err = asn1.Unmarshal(rest, &a); err != nil {
			return nil, fmt.Errorf("malformed CSR attribute: %v", err)
		}
		key := a.Type.String()
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("CSR attribute %s appears twice", key)
		}
		out[key] = a.Values
	}
	return out, nil
}

// oneValue returns the single value of an attribute, if present.
func oneValue(attrs map[string][]asn1.RawValue, oid asn1.ObjectIdentifier) (asn1.RawValue, bool, error) {
	vs, ok := attrs[oid.String()]
	if !ok {
		return asn1.RawValue{}, false, nil
	}
	if len(vs) != 1 {
		return asn1.RawValue{}, false, fmt.Errorf("CSR attribute %v must have one value", oid)
	}
	return vs[0], true, nil
}

// challengePassword returns the CSR's challengePassword (a
// DirectoryString, RFC 2985 §5.4.1).
func challengePassword(attrs map[string][]asn1.RawValue) (string, bool, error) {
	v, ok, err := oneValue(attrs, oidChallengePassword)
	if !ok || err != nil {
		return "", ok, err
	}
	switch v.Tag {
	case asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagIA5String, asn1.TagT61String:
		return string(v.Bytes), true, nil
	}
	return "", true, errors.New("the challengePassword is not a string")
}

// octetAttribute returns an OCTET STRING attribute's value.
func octetAttribute(attrs map[string][]asn1.RawValue, oid asn1.ObjectIdentifier) ([]byte, bool, error) {
	v, ok, err := oneValue(attrs, oid)
	if !ok || err != nil {
		return nil, ok, err
	}
	var b []byte
	if rest, err := asn1.Unmarshal(v.FullBytes, &b); err != nil || len(rest) > 0 || len(b) == 0 {
		return nil, true, fmt.Errorf("CSR attribute %v is not a non-empty OCTET STRING", oid)
	}
	return b, true, nil
}

// tlsExporterLabel is RFC 9266's exporter label for tls-exporter.
const tlsExporterLabel = "EXPORTER-Channel-Binding"

// channelBinding is the connection's binding value as EST clients put it
// in challengePassword (RFC 7030 §3.5): base64 of tls-unique for TLS 1.2,
// of the RFC 9266 tls-exporter value for TLS 1.3.
func channelBinding(cs *tls.ConnectionState) (string, error) {
	if cs == nil {
		return "", errors.New("no TLS connection")
	}
	var cb []byte
	switch {
	case cs.Version >= tls.VersionTLS13:
		var err error
		if cb, err = cs.ExportKeyingMaterial(tlsExporterLabel, nil, 32); err != nil {
			return "", err
		}
	case len(cs.TLSUnique) > 0:
		cb = cs.TLSUnique
	default:
		return "", errors.New("this TLS connection has no tls-unique value (a resumed session without extended master secret)")
	}
	return base64.StdEncoding.EncodeToString(cb), nil
}

// checkChannelBinding compares the CSR's challengePassword with the
// connection's binding.
func checkChannelBinding(cs *tls.ConnectionState, attrs map[string][]asn1.RawValue) error {
	pw, ok, err := challengePassword(attrs)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("channel binding is required: put the TLS channel binding (base64 tls-unique for TLS 1.2, tls-exporter for TLS 1.3) in the CSR's challengePassword")
	}
	want, err := channelBinding(cs)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(pw), []byte(want)) != 1 {
		return errors.New("the CSR's challengePassword does not match this TLS connection's channel binding")
	}
	return nil
}
