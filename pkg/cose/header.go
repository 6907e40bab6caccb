package cose

import (
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/fxamacker/cbor/v2"
)

// Header is one header bucket (protected or unprotected), with the
// parameters qpki understands decoded and the rest kept as generic values.
type Header struct {
	// Alg is the algorithm; 0 when absent.
	Alg Algorithm
	// Crit lists the labels (int64 or string) the recipient must understand.
	Crit []any
	// ContentType is a media type (string) or a CoAP content format (int64);
	// nil when absent.
	ContentType any
	// KID is the key identifier.
	KID []byte
	// X5Chain is the certificate chain, leaf first (RFC 9360).
	X5Chain []*x509.Certificate
	// Other holds every other parameter, keyed by label (int64 or string).
	Other map[any]any

	labels []any // every label present, in decoding order
}

func (h *Header) has(label any) bool {
	for _, l := range h.labels {
		if l == label {
			return true
		}
	}
	return false
}

// Empty reports whether the bucket has no parameters.
func (h *Header) Empty() bool { return len(h.labels) == 0 }

// understood are the labels qpki acts on; a critical label outside this set
// (and outside VerifyOptions.KnownCritical) fails verification.
var understood = map[any]bool{HeaderAlg: true, HeaderCrit: true, HeaderContentType: true, HeaderKID: true, HeaderX5Chain: true}

// decodeHeader decodes a header map. protected is only used for messages.
func decodeHeader(raw []byte, protected bool) (Header, error) {
	var h Header
	if majorType(raw) != cborMap {
		return h, fmt.Errorf("header is a CBOR %s, not a map", typeName(raw))
	}
	var m map[any]cbor.RawMessage
	if err := decMode.Unmarshal(raw, &m); err != nil {
		return h, fmt.Errorf("header map: %v", err)
	}
	for label, val := range m {
		switch label.(type) {
		case int64, string:
		default:
			return h, fmt.Errorf("header label %v has type %T; labels are integers or text", label, label)
		}
		h.labels = append(h.labels, label)
		if err := h.set(label, val, protected); err != nil {
			return h, err
		}
	}
	return h, nil
}

func (h *Header) set(label any, val cbor.RawMessage, protected bool) error {
	switch label {
	case HeaderAlg:
		if majorType(val) == cborText {
			// Text algorithm names are legal COSE but name nothing qpki
			// signs with; keep the value for display.
			return h.setOther(label, val)
		}
		var id int64
		if err := decodeInt(val, &id); err != nil {
			return fmt.Errorf("header alg: %v", err)
		}
		if id == 0 {
			return fmt.Errorf("header alg: 0 is reserved")
		}
		h.Alg = Algorithm(id)
	case HeaderCrit:
		if !protected {
			return fmt.Errorf("header crit must be in the protected bucket")
		}
		if majorType(val) != cborArray {
			return fmt.Errorf("header crit must be an array of labels")
		}
		var labels []any
		if err := decMode.Unmarshal(val, &labels); err != nil {
			return fmt.Errorf("header crit: %v", err)
		}
		if len(labels) == 0 {
			return fmt.Errorf("header crit must not be empty")
		}
		for _, l := range labels {
			switch l.(type) {
			case int64, string:
			default:
				return fmt.Errorf("header crit: label %v is not an integer or text", l)
			}
		}
		h.Crit = labels
	case HeaderContentType:
		switch majorType(val) {
		case cborText:
			var s string
			if err := decMode.Unmarshal(val, &s); err != nil {
				return fmt.Errorf("header content type: %v", err)
			}
			if err := checkMediaType(s); err != nil {
				return fmt.Errorf("header content type: %v", err)
			}
			h.ContentType = s
		case cborUint:
			var n int64
			if err := decodeInt(val, &n); err != nil {
				return fmt.Errorf("header content type: %v", err)
			}
			h.ContentType = n
		default:
			return fmt.Errorf("header content type must be text or an unsigned integer")
		}
	case HeaderKID:
		if err := decodeBytes(val, &h.KID); err != nil {
			return fmt.Errorf("header kid: %v", err)
		}
	case HeaderX5Chain:
		chain, err := decodeX5Chain(val)
		if err != nil {
			return fmt.Errorf("header x5chain: %v", err)
		}
		h.X5Chain = chain
	default:
		return h.setOther(label, val)
	}
	return nil
}

func (h *Header) setOther(label any, val cbor.RawMessage) error {
	var v any
	if err := decMode.Unmarshal(val, &v); err != nil {
		return fmt.Errorf("header %v: %v", label, err)
	}
	if h.Other == nil {
		h.Other = map[any]any{}
	}
	h.Other[label] = v
	return nil
}

// decodeX5Chain reads a bstr (one certificate) or an array of bstr
// (RFC 9360 §2).
func decodeX5Chain(val cbor.RawMessage) ([]*x509.Certificate, error) {
	var ders [][]byte
	switch majorType(val) {
	case cborBytes:
		var der []byte
		if err := decodeBytes(val, &der); err != nil {
			return nil, err
		}
		ders = [][]byte{der}
	case cborArray:
		var items []cbor.RawMessage
		if err := decMode.Unmarshal(val, &items); err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return nil, fmt.Errorf("empty certificate array")
		}
		if len(items) > MaxChain {
			return nil, fmt.Errorf("%d certificates exceed the limit of %d", len(items), MaxChain)
		}
		for i, it := range items {
			var der []byte
			if err := decodeBytes(it, &der); err != nil {
				return nil, fmt.Errorf("certificate %d: %v", i+1, err)
			}
			ders = append(ders, der)
		}
	default:
		return nil, fmt.Errorf("must be a byte string or an array of byte strings, not a CBOR %s", typeName(val))
	}
	chain := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", i+1, err)
		}
		chain[i] = c
	}
	return chain, nil
}

// checkMediaType applies the rules RFC 9052 §3.1 implies for a text
// content type: a type/subtype media type without surrounding blanks.
func checkMediaType(s string) error {
	if s == "" || strings.TrimSpace(s) != s || strings.Count(strings.SplitN(s, ";", 2)[0], "/") != 1 {
		return fmt.Errorf("%q is not a media type of the form type/subtype", s)
	}
	return nil
}

// encodeHeader encodes a header bucket; the keys are integers, which Core
// Deterministic Encoding sorts.
func encodeHeader(m map[int64]any) ([]byte, error) {
	return encMode.Marshal(m)
}

// x5chainValue is the x5chain encoding RFC 9360 asks for: a bare bstr for
// one certificate, an array for several.
func x5chainValue(chain []*x509.Certificate) any {
	if len(chain) == 1 {
		return chain[0].Raw
	}
	ders := make([][]byte, len(chain))
	for i, c := range chain {
		ders[i] = c.Raw
	}
	return ders
}
