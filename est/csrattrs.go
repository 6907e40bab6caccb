package est

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"regexp"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/profile"
)

// Object identifiers of the CSR attributes response.
var (
	oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oidExtensionRequest  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
	oidECPublicKey       = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidRSAEncryption     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidEd25519           = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidSHA256WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSubjectAltName    = asn1.ObjectIdentifier{2, 5, 29, 17}

	curveOIDs = map[algo.Algorithm]asn1.ObjectIdentifier{
		algo.ECDSAP256: {1, 2, 840, 10045, 3, 1, 7},
		algo.ECDSAP384: {1, 3, 132, 0, 34},
		algo.ECDSAP521: {1, 3, 132, 0, 35},
	}
	ecdsaSigOIDs = map[algo.Algorithm]asn1.ObjectIdentifier{
		algo.ECDSAP256: {1, 2, 840, 10045, 4, 3, 2},
		algo.ECDSAP384: {1, 2, 840, 10045, 4, 3, 3},
		algo.ECDSAP521: {1, 2, 840, 10045, 4, 3, 4},
	}
	subjectOIDs = map[string]asn1.ObjectIdentifier{
		"cn": {2, 5, 4, 3}, "serialNumber": {2, 5, 4, 5}, "c": {2, 5, 4, 6}, "l": {2, 5, 4, 7},
		"st": {2, 5, 4, 8}, "street": {2, 5, 4, 9}, "o": {2, 5, 4, 10}, "ou": {2, 5, 4, 11},
		"postalCode": {2, 5, 4, 17},
	}
)

// CSRAttr is one element of a CSR attributes response (RFC 7030 §4.5.2,
// RFC 8951 §4): a bare OID, or an attribute with values.
type CSRAttr struct {
	OID    asn1.ObjectIdentifier
	Values []asn1.RawValue // nil for a bare OID
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

// MarshalCSRAttrs encodes CsrAttrs ::= SEQUENCE OF AttrOrOID.
func MarshalCSRAttrs(attrs []CSRAttr) ([]byte, error) {
	items := make([]asn1.RawValue, len(attrs))
	for i, a := range attrs {
		var der []byte
		var err error
		if a.Values == nil {
			der, err = asn1.Marshal(a.OID)
		} else {
			der, err = asn1.Marshal(attribute{a.OID, a.Values})
		}
		if err != nil {
			return nil, err
		}
		items[i] = asn1.RawValue{FullBytes: der}
	}
	return asn1.Marshal(items)
}

// ParseCSRAttrs decodes a CSR attributes response.
func ParseCSRAttrs(der []byte) ([]CSRAttr, error) {
	var items []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &items)
	if err != nil || len(rest) > 0 {
		return nil, errors.New("est: malformed CSR attributes")
	}
	out := make([]CSRAttr, 0, len(items))
	for _, it := range items {
		switch {
		case it.Class == asn1.ClassUniversal && it.Tag == asn1.TagOID:
			var oid asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(it.FullBytes, &oid); err != nil {
				return nil, fmt.Errorf("est: CSR attributes: %v", err)
			}
			out = append(out, CSRAttr{OID: oid})
		case it.Class == asn1.ClassUniversal && it.Tag == asn1.TagSequence:
			var a attribute
			if rest, err := asn1.Unmarshal(it.FullBytes, &a); err != nil || len(rest) > 0 {
				return nil, errors.New("est: CSR attributes: malformed attribute")
			}
			if len(a.Values) == 0 {
				return nil, fmt.Errorf("est: CSR attribute %v has no value", a.Type)
			}
			out = append(out, CSRAttr{OID: a.Type, Values: a.Values})
		default:
			return nil, errors.New("est: CSR attributes: element is neither an OID nor an attribute")
		}
	}
	return out, nil
}

func mustRaw(v any) asn1.RawValue {
	der, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return asn1.RawValue{FullBytes: der}
}

var varRef = regexp.MustCompile(`\{\{\s*([a-z][a-z0-9_]*)\s*\}\}`)

// profileCSRAttrs derives what a client should put in its CSR from a
// profile: the challengePassword when channel binding is required, the
// key algorithm (an EC curve, an RSA size, or the algorithm's OID), the
// signature algorithm, the subject attributes the profile requires and,
// when the profile takes names from the CSR, a subjectAltName request.
func profileCSRAttrs(p *profile.Profile, channelBinding bool) []CSRAttr {
	var out []CSRAttr
	if channelBinding {
		out = append(out, CSRAttr{OID: oidChallengePassword})
	}
	a := p.Algorithm
	switch {
	case curveOIDs[a] != nil:
		out = append(out, CSRAttr{OID: oidECPublicKey, Values: []asn1.RawValue{mustRaw(curveOIDs[a])}})
	case a.Valid() && a.Family() == algo.FamilyRSA:
		out = append(out, CSRAttr{OID: oidRSAEncryption, Values: []asn1.RawValue{mustRaw(a.Info().Bits)}})
	case a == algo.Ed25519:
		out = append(out, CSRAttr{OID: oidEd25519})
	case a.Valid() && a.Info().OID != nil:
		out = append(out, CSRAttr{OID: a.Info().OID})
	}
	switch {
	case ecdsaSigOIDs[a] != nil:
		out = append(out, CSRAttr{OID: ecdsaSigOIDs[a]})
	case a.Valid() && a.Family() == algo.FamilyRSA:
		out = append(out, CSRAttr{OID: oidSHA256WithRSA})
	}
	required := map[string]bool{}
	for _, v := range p.Variables {
		if v.Required {
			required[v.Name] = true
		}
	}
	for _, s := range p.Subject {
		oid := subjectOIDs[s.Key]
		for _, m := range varRef.FindAllStringSubmatch(s.Value.Text, -1) {
			if oid != nil && required[m[1]] {
				out = append(out, CSRAttr{OID: oid})
				break
			}
		}
	}
	if san := p.Extensions.SubjectAltName; san != nil && len(san.DNS)+len(san.IP)+len(san.Email)+len(san.URI) > 0 {
		out = append(out, CSRAttr{OID: oidExtensionRequest, Values: []asn1.RawValue{mustRaw(oidSubjectAltName)}})
	}
	return out
}
