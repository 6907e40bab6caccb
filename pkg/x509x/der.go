package x509x

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Small DER helpers for re-assembling the to-be-signed structures that
// crypto/x509 produced: a structure is split into its top-level elements
// (each a complete TLV), some are replaced, and it is wrapped again.

var (
	tagCertVersion    = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagCertExtensions = cbasn1.Tag(3).Constructed().ContextSpecific()
	tagCRLExtensions  = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagCSRAttributes  = cbasn1.Tag(0).Constructed().ContextSpecific()
)

// splitSequence returns the elements of a DER SEQUENCE (or of the element
// with tag).
func splitSequence(der []byte, tag cbasn1.Tag) ([][]byte, error) {
	s := cryptobyte.String(der)
	var body cryptobyte.String
	if !s.ReadASN1(&body, tag) || !s.Empty() {
		return nil, errors.New("malformed DER structure")
	}
	var out [][]byte
	for !body.Empty() {
		var el cryptobyte.String
		if !body.ReadAnyASN1Element(&el, new(cbasn1.Tag)) {
			return nil, errors.New("malformed DER element")
		}
		out = append(out, el)
	}
	return out, nil
}

// wrap encodes parts as the contents of one element with tag.
func wrap(tag cbasn1.Tag, parts ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		for _, p := range parts {
			b.AddBytes(p)
		}
	})
	return b.BytesOrPanic()
}

func tagOf(el []byte) cbasn1.Tag {
	if len(el) == 0 {
		return 0
	}
	return cbasn1.Tag(el[0])
}

// signedParts splits a signed structure (Certificate, CertificateList,
// CertificationRequest) into the to-be-signed bytes, the algorithm and the
// signature value.
func signedParts(der []byte) (tbs []byte, alg algorithmID, sig []byte, err error) {
	parts, err := splitSequence(der, cbasn1.SEQUENCE)
	if err != nil || len(parts) != 3 {
		return nil, alg, nil, errors.New("malformed signed structure")
	}
	if alg, err = parseAlgorithmID(parts[1]); err != nil {
		return nil, alg, nil, err
	}
	s := cryptobyte.String(parts[2])
	var bits asn1.BitString
	if !s.ReadASN1BitString(&bits) || bits.BitLength%8 != 0 {
		return nil, alg, nil, errors.New("malformed signature value")
	}
	return parts[0], alg, bits.Bytes, nil
}

// assembleSigned builds SEQUENCE { tbs, alg, BIT STRING sig }.
func assembleSigned(tbs []byte, alg algorithmID, sig []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(alg.marshal())
		b.AddASN1BitString(sig)
	})
	return b.BytesOrPanic()
}

// extension encodes an Extension with critical FALSE (omitted).
func extension(oid asn1.ObjectIdentifier, value []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1OctetString(value)
	})
	return b.BytesOrPanic()
}

// extensionOID reads the extnID of an Extension element.
func extensionOID(ext []byte) (asn1.ObjectIdentifier, error) {
	s := cryptobyte.String(ext)
	var body cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1ObjectIdentifier(&oid) {
		return nil, errors.New("malformed extension")
	}
	return oid, nil
}

// extensionsOf returns the Extension elements inside an [n] EXPLICIT
// Extensions wrapper.
func extensionsOf(wrapper []byte, tag cbasn1.Tag) ([][]byte, error) {
	s := cryptobyte.String(wrapper)
	var inner cryptobyte.String
	if !s.ReadASN1(&inner, tag) || !s.Empty() {
		return nil, errors.New("malformed extensions")
	}
	return splitSequence(inner, cbasn1.SEQUENCE)
}

// extensionsWrapper builds [n] EXPLICIT SEQUENCE OF Extension.
func extensionsWrapper(tag cbasn1.Tag, exts [][]byte) []byte {
	return wrap(tag, wrap(cbasn1.SEQUENCE, exts...))
}

// withoutExtension drops the extensions with oid and returns the removed
// one's value, or an error if there is more than one.
func withoutExtension(exts [][]byte, oid asn1.ObjectIdentifier) (rest [][]byte, found []byte, err error) {
	for _, e := range exts {
		id, err := extensionOID(e)
		if err != nil {
			return nil, nil, err
		}
		if !id.Equal(oid) {
			rest = append(rest, e)
			continue
		}
		if found != nil {
			return nil, nil, fmt.Errorf("duplicate extension %s", oid)
		}
		found = e
	}
	return rest, found, nil
}

// sortSetOf orders SET OF elements as DER requires (X.690 11.6).
func sortSetOf(els [][]byte) {
	sort.SliceStable(els, func(i, j int) bool {
		a, b := els[i], els[j]
		n := min(len(a), len(b))
		if c := bytes.Compare(a[:n], b[:n]); c != 0 {
			return c < 0
		}
		// The shorter is padded with zeros, so it never sorts after.
		return len(a) < len(b)
	})
}
