package cms

import (
	"errors"
	"fmt"
)

// MaxMessage bounds a CMS message qpki parses (a SignedData with a few
// SLH-DSA-256s certificates and signatures stays well under it).
const MaxMessage = 4 << 20

// maxDepth bounds the nesting of BER elements.
const maxDepth = 64

var errTruncated = errors.New("cms: truncated or malformed BER")

// toDER converts BER to DER: indefinite lengths become definite, and
// constructed OCTET STRINGs (and BIT STRINGs) are joined into primitive
// ones. Elements already in DER are copied unchanged, so the signed
// attributes and certificates inside keep their exact bytes.
func toDER(ber []byte) ([]byte, error) {
	if len(ber) > MaxMessage {
		return nil, fmt.Errorf("cms: message of %d bytes exceeds the %d-byte limit", len(ber), MaxMessage)
	}
	out, rest, err := convert(ber, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("cms: trailing data after the message")
	}
	return out, nil
}

// element is one parsed TLV.
type element struct {
	tag         []byte // identifier octets
	constructed bool
	indefinite  bool
	body        []byte // for definite lengths
}

func readHeader(b []byte) (e element, rest []byte, err error) {
	if len(b) < 2 {
		return e, nil, errTruncated
	}
	i := 1
	if b[0]&0x1f == 0x1f { // high tag number
		for {
			if i >= len(b) || i > 5 {
				return e, nil, errTruncated
			}
			if b[i]&0x80 == 0 {
				i++
				break
			}
			i++
		}
	}
	e.tag = b[:i]
	e.constructed = b[0]&0x20 != 0
	if i >= len(b) {
		return e, nil, errTruncated
	}
	l := b[i]
	i++
	switch {
	case l == 0x80:
		if !e.constructed {
			return e, nil, errors.New("cms: indefinite length on a primitive element")
		}
		e.indefinite = true
		return e, b[i:], nil
	case l < 0x80:
		n := int(l)
		if len(b)-i < n {
			return e, nil, errTruncated
		}
		e.body = b[i : i+n]
		return e, b[i+n:], nil
	default:
		k := int(l & 0x7f)
		if k > 4 || len(b)-i < k {
			return e, nil, errTruncated
		}
		n := 0
		for _, c := range b[i : i+k] {
			n = n<<8 | int(c)
		}
		i += k
		if n < 0 || len(b)-i < n {
			return e, nil, errTruncated
		}
		e.body = b[i : i+n]
		return e, b[i+n:], nil
	}
}

// convert reads one element from b and returns its DER and the rest.
func convert(b []byte, depth int) (der, rest []byte, err error) {
	if depth > maxDepth {
		return nil, nil, errors.New("cms: BER nesting too deep")
	}
	e, rest, err := readHeader(b)
	if err != nil {
		return nil, nil, err
	}
	if !e.constructed {
		return encodeTLV(e.tag, e.body), rest, nil
	}
	var children [][]byte
	if e.indefinite {
		for {
			if len(rest) >= 2 && rest[0] == 0 && rest[1] == 0 {
				rest = rest[2:]
				break
			}
			if len(rest) == 0 {
				return nil, nil, errTruncated
			}
			var c []byte
			if c, rest, err = convert(rest, depth+1); err != nil {
				return nil, nil, err
			}
			children = append(children, c)
		}
	} else {
		body := e.body
		for len(body) > 0 {
			var c []byte
			if c, body, err = convert(body, depth+1); err != nil {
				return nil, nil, err
			}
			children = append(children, c)
		}
	}
	// A constructed OCTET STRING (0x24) or BIT STRING (0x23) becomes
	// primitive: the concatenation of its segments.
	if len(e.tag) == 1 && (e.tag[0] == 0x24 || e.tag[0] == 0x23) {
		var joined []byte
		for i, c := range children {
			_, inner, err := splitTLV(c)
			if err != nil {
				return nil, nil, err
			}
			if e.tag[0] == 0x23 && i > 0 && len(inner) > 0 {
				inner = inner[1:] // only the first segment's unused-bits octet counts
			}
			joined = append(joined, inner...)
		}
		return encodeTLV([]byte{e.tag[0] &^ 0x20}, joined), rest, nil
	}
	var body []byte
	for _, c := range children {
		body = append(body, c...)
	}
	return encodeTLV(e.tag, body), rest, nil
}

// splitTLV returns the tag and contents of one DER element.
func splitTLV(der []byte) (tag, body []byte, err error) {
	e, rest, err := readHeader(der)
	if err != nil || e.indefinite || len(rest) != 0 {
		return nil, nil, errTruncated
	}
	return e.tag, e.body, nil
}

func encodeTLV(tag, body []byte) []byte {
	out := append([]byte(nil), tag...)
	n := len(body)
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		out = append(out, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, body...)
}
