package profile

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
)

// keyUsages maps the RFC 5280 bit names to crypto/x509's constants.
var keyUsages = map[string]x509.KeyUsage{
	"digitalSignature":  x509.KeyUsageDigitalSignature,
	"contentCommitment": x509.KeyUsageContentCommitment,
	"nonRepudiation":    x509.KeyUsageContentCommitment, // the older name
	"keyEncipherment":   x509.KeyUsageKeyEncipherment,
	"dataEncipherment":  x509.KeyUsageDataEncipherment,
	"keyAgreement":      x509.KeyUsageKeyAgreement,
	"keyCertSign":       x509.KeyUsageCertSign,
	"cRLSign":           x509.KeyUsageCRLSign,
	"encipherOnly":      x509.KeyUsageEncipherOnly,
	"decipherOnly":      x509.KeyUsageDecipherOnly,
}

// extKeyUsages are the purposes of RFC 5280 §4.2.1.12 (id-kp, 1.3.6.1.5.5.7.3)
// and anyExtendedKeyUsage. Others are written as dotted OIDs.
var extKeyUsages = map[string]struct {
	usage x509.ExtKeyUsage
	oid   asn1.ObjectIdentifier
}{
	"any":             {x509.ExtKeyUsageAny, asn1.ObjectIdentifier{2, 5, 29, 37, 0}},
	"serverAuth":      {x509.ExtKeyUsageServerAuth, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}},
	"clientAuth":      {x509.ExtKeyUsageClientAuth, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}},
	"codeSigning":     {x509.ExtKeyUsageCodeSigning, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}},
	"emailProtection": {x509.ExtKeyUsageEmailProtection, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}},
	"ipsecEndSystem":  {x509.ExtKeyUsageIPSECEndSystem, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 5}},
	"ipsecTunnel":     {x509.ExtKeyUsageIPSECTunnel, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 6}},
	"ipsecUser":       {x509.ExtKeyUsageIPSECUser, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 7}},
	"timeStamping":    {x509.ExtKeyUsageTimeStamping, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}},
	"OCSPSigning":     {x509.ExtKeyUsageOCSPSigning, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 9}},
}

// Extension OIDs (RFC 5280 §4.2) that the profile schema writes itself.
var (
	oidSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidCRLDistribution  = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidCertPolicies     = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidAuthorityInfo    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidQualifierCPS     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 2, 1}
	schemaExtensionOIDs = []asn1.ObjectIdentifier{oidSubjectKeyID, oidKeyUsage, oidSubjectAltName, oidBasicConstraints, oidNameConstraints, oidCRLDistribution, oidCertPolicies, oidAuthorityKeyID, oidExtKeyUsage, oidAuthorityInfo}
)

// parseOID parses a dotted object identifier.
func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%q is not a dotted OID", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 31)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("%q is not a dotted OID", s)
		}
		oid[i] = int(n)
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] >= 40) {
		return nil, fmt.Errorf("%q is not a valid OID", s)
	}
	return oid, nil
}

// marshalKeyUsage encodes the KeyUsage BIT STRING in DER: bit 0 is the
// most significant bit of the first byte, trailing zero bits are dropped.
func marshalKeyUsage(ku x509.KeyUsage) ([]byte, error) {
	b := []byte{bits.Reverse8(byte(ku)), bits.Reverse8(byte(ku >> 8))}
	if b[1] == 0 {
		b = b[:1]
	}
	n := len(b) * 8
	for n > 0 && b[(n-1)/8]&(0x80>>uint((n-1)%8)) == 0 {
		n--
	}
	return asn1.Marshal(asn1.BitString{Bytes: b, BitLength: n})
}

func marshalExtKeyUsage(e *ExtKeyUsage) ([]byte, error) {
	oids := make([]asn1.ObjectIdentifier, 0, len(e.Usages)+len(e.Unknown))
	for _, u := range e.Usages {
		for _, k := range extKeyUsages {
			if k.usage == u {
				oids = append(oids, k.oid)
				break
			}
		}
	}
	oids = append(oids, e.Unknown...)
	return asn1.Marshal(oids)
}

func marshalBasicConstraints(ca bool, pathLen *int) ([]byte, error) {
	type basicConstraints struct {
		CA      bool `asn1:"optional"`
		PathLen int  `asn1:"optional,default:-1"`
	}
	bc := basicConstraints{CA: ca, PathLen: -1}
	if ca && pathLen != nil {
		bc.PathLen = *pathLen
	}
	return asn1.Marshal(bc)
}

// marshalPolicies encodes certificatePolicies (RFC 5280 §4.2.1.4) with an
// optional CPS pointer qualifier, which crypto/x509 cannot write.
func marshalPolicies(pols []policyValue) ([]byte, error) {
	type qualifier struct {
		ID    asn1.ObjectIdentifier
		Value string `asn1:"ia5"`
	}
	type policyInfo struct {
		ID         asn1.RawValue
		Qualifiers []qualifier `asn1:"optional,omitempty"`
	}
	out := make([]policyInfo, len(pols))
	for i, p := range pols {
		der, err := p.oid.MarshalBinary()
		if err != nil {
			return nil, err
		}
		out[i].ID = asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagOID, Bytes: der}
		if p.cps != "" {
			out[i].Qualifiers = []qualifier{{ID: oidQualifierCPS, Value: p.cps}}
		}
	}
	return asn1.Marshal(out)
}

type policyValue struct {
	oid x509.OID
	cps string
}

func extension(oid asn1.ObjectIdentifier, critical bool, value []byte) pkix.Extension {
	return pkix.Extension{Id: oid, Critical: critical, Value: value}
}

// parseHexDER decodes a custom extension value written in hex (colons and
// spaces allowed) and checks that it is one whole DER element.
func parseHexDER(s string) ([]byte, error) {
	clean := strings.NewReplacer(":", "", " ", "", "\n", "", "\t", "").Replace(s)
	der, err := hex.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("der: not hex: %v", err)
	}
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(der, &v)
	if err != nil {
		return nil, fmt.Errorf("der: not DER: %v", err)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("der: %d bytes after the DER value", len(rest))
	}
	return der, nil
}

// marshalUTF8 encodes a custom extension value as a UTF8String.
func marshalUTF8(s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("utf8: not valid UTF-8")
	}
	return asn1.MarshalWithParams(s, "utf8")
}
