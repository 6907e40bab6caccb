package scep

import (
	"encoding/asn1"
	"fmt"
	"net/url"

	"crypto/x509/pkix"

	"github.com/qpki/qpki/enroll"
)

// attribute names of the subject entries a name policy lists.
var subjectKeys = map[string]string{
	"2.5.4.3": "CN", "2.5.4.5": "serialNumber", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
	"2.5.4.10": "O", "2.5.4.11": "OU",
}

// subjectNames grants a subject's attribute values, e-mail addresses
// and URIs exactly.
func subjectNames(attrs []pkix.AttributeTypeAndValue, emails []string, uris []*url.URL) *enroll.NamePolicy {
	p := &enroll.NamePolicy{Email: emails}
	for _, u := range uris {
		p.URI = append(p.URI, u.String())
	}
	for _, a := range attrs {
		k, ok := subjectKeys[a.Type.String()]
		if !ok {
			k = asn1.ObjectIdentifier(a.Type).String()
		}
		if p.Subject == nil {
			p.Subject = map[string][]string{}
		}
		p.Subject[k] = append(p.Subject[k], fmt.Sprint(a.Value))
	}
	return p
}
