package cose

import (
	"crypto/x509"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Message is a parsed COSE_Sign1, COSE_Sign or CWT.
type Message struct {
	// Type is TypeCWT for a token (CBOR tag 61), else the COSE structure.
	Type Type
	// Structure is TypeSign1 or TypeSign: the COSE structure, CWTs included.
	Structure Type
	// Tagged reports whether the COSE structure carried its CBOR tag.
	Tagged bool

	// Protected and Unprotected are the body headers. For COSE_Sign1 they
	// are also the signer's headers.
	Protected   Header
	Unprotected Header

	// Payload is the content; nil when Detached.
	Payload  []byte
	Detached bool

	// Claims is set for a CWT.
	Claims *Claims

	// Signatures has one entry for COSE_Sign1, one per signer for COSE_Sign.
	Signatures []Signature

	rawProtected []byte
	claimsErr    error
}

// Signature is one signer's part of a message.
type Signature struct {
	Protected   Header
	Unprotected Header
	Value       []byte

	// Chain is the certificate path from the signer to a trusted root,
	// set by Verify when the signature was checked against a chain.
	Chain []*x509.Certificate

	rawProtected []byte
	body         *Message
}

// Alg returns the signature algorithm from the protected header.
func (s *Signature) Alg() Algorithm { return s.Protected.Alg }

// KID returns the key identifier from either bucket.
func (s *Signature) KID() []byte {
	if s.Protected.KID != nil {
		return s.Protected.KID
	}
	return s.Unprotected.KID
}

// X5Chain returns the certificates the signer sent: from its own headers,
// or for COSE_Sign from the body headers when its own have none.
func (s *Signature) X5Chain() []*x509.Certificate {
	for _, h := range []*Header{&s.Protected, &s.Unprotected} {
		if len(h.X5Chain) > 0 {
			return h.X5Chain
		}
	}
	if s.body != nil && s.body.Structure == TypeSign {
		for _, h := range []*Header{&s.body.Protected, &s.body.Unprotected} {
			if len(h.X5Chain) > 0 {
				return h.X5Chain
			}
		}
	}
	return nil
}

// ContentType returns the body's content type, nil when absent.
func (m *Message) ContentType() any {
	if m.Protected.ContentType != nil {
		return m.Protected.ContentType
	}
	return m.Unprotected.ContentType
}

// Parse decodes a message without verifying it: for display, or to read the
// kid before choosing a key. Use Verify to trust its content.
func Parse(data []byte) (*Message, error) {
	m, err := parse(data, DefaultMaxSize, false)
	if err != nil {
		return nil, err
	}
	if m.claimsErr != nil {
		return nil, m.claimsErr
	}
	return m, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// parse decodes the message. Claims are decoded but a claims error is kept
// aside, so that Verify reports a bad signature before bad content.
func parse(data []byte, maxSize int, cwt bool) (*Message, error) {
	if len(data) == 0 {
		return nil, malformed("empty input")
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if len(data) > maxSize {
		return nil, malformed("%d bytes exceed the %d-byte limit", len(data), maxSize)
	}
	if err := decMode.Wellformed(data); err != nil {
		return nil, malformed("not well-formed CBOR: %v", err)
	}

	m := &Message{}
	sawCWT := false
	body := cbor.RawMessage(data)
	for majorType(body) == cborTag {
		var tag cbor.RawTag
		if err := decMode.Unmarshal(body, &tag); err != nil {
			return nil, malformed("CBOR tag: %v", err)
		}
		switch tag.Number {
		case tagSelfDescribe:
			if sawCWT || m.Structure != "" {
				return nil, malformed("self-described CBOR tag 55799 must come first")
			}
		case TagCWT:
			if sawCWT || m.Structure != "" {
				return nil, malformed("CWT tag 61 must be the outermost tag, once")
			}
			sawCWT = true
		case TagSign1, TagSign:
			if m.Structure != "" {
				return nil, malformed("nested COSE tag %d", tag.Number)
			}
			m.Structure = TypeSign1
			if tag.Number == TagSign {
				m.Structure = TypeSign
			}
			m.Tagged = true
		case tagEncrypt0, tagEncrypt:
			return nil, fmt.Errorf("%w: COSE encryption (tag %d); qpki handles signed messages only", ErrUnsupported, tag.Number)
		case tagMac0, tagMac:
			return nil, fmt.Errorf("%w: COSE MAC (tag %d); qpki handles signed messages only", ErrUnsupported, tag.Number)
		default:
			return nil, malformed("unexpected CBOR tag %d (want 18 COSE_Sign1, 98 COSE_Sign or 61 CWT)", tag.Number)
		}
		body = tag.Content
	}
	if majorType(body) != cborArray {
		return nil, malformed("COSE message is a CBOR %s, not an array", typeName(body))
	}
	var parts []cbor.RawMessage
	if err := decMode.Unmarshal(body, &parts); err != nil {
		return nil, malformed("COSE array: %v", err)
	}
	if len(parts) != 4 {
		return nil, malformed("COSE array has %d elements, want 4", len(parts))
	}
	if m.Structure == "" {
		// Untagged: the fourth element tells a signature (Sign1) from an
		// array of signatures (Sign).
		switch majorType(parts[3]) {
		case cborBytes:
			m.Structure = TypeSign1
		case cborArray:
			m.Structure = TypeSign
		default:
			return nil, malformed("untagged COSE array is neither COSE_Sign1 nor COSE_Sign")
		}
	}
	cwt = cwt || sawCWT
	m.Type = m.Structure
	if cwt {
		m.Type = TypeCWT
	}

	var err error
	if m.Protected, m.rawProtected, err = decodeProtected(parts[0]); err != nil {
		return nil, malformed("protected header: %v", err)
	}
	if m.Unprotected, err = decodeHeader(parts[1], false); err != nil {
		return nil, malformed("unprotected header: %v", err)
	}
	if err := checkDisjoint(&m.Protected, &m.Unprotected); err != nil {
		return nil, malformed("%v", err)
	}

	switch {
	case isNull(parts[2]):
		m.Detached = true
	case majorType(parts[2]) == cborBytes:
		if err := decodeBytes(parts[2], &m.Payload); err != nil {
			return nil, malformed("payload: %v", err)
		}
		if m.Payload == nil {
			m.Payload = []byte{}
		}
	default:
		return nil, malformed("payload is a CBOR %s, want a byte string or null", typeName(parts[2]))
	}

	if m.Structure == TypeSign1 {
		s := Signature{Protected: m.Protected, Unprotected: m.Unprotected, rawProtected: m.rawProtected, body: m}
		if err := decodeBytes(parts[3], &s.Value); err != nil {
			return nil, malformed("signature: %v", err)
		}
		m.Signatures = []Signature{s}
	} else if err := m.decodeSignatures(parts[3]); err != nil {
		return nil, err
	}

	if cwt {
		if m.Detached {
			m.claimsErr = malformed("a CWT cannot have a detached payload")
		} else if m.Claims, err = decodeClaims(m.Payload); err != nil {
			m.claimsErr = err
		}
	}
	return m, nil
}

func (m *Message) decodeSignatures(raw cbor.RawMessage) error {
	if majorType(raw) != cborArray {
		return malformed("COSE_Sign signatures are a CBOR %s, not an array", typeName(raw))
	}
	var items []cbor.RawMessage
	if err := decMode.Unmarshal(raw, &items); err != nil {
		return malformed("COSE_Sign signatures: %v", err)
	}
	if len(items) == 0 {
		return malformed("COSE_Sign has no signatures")
	}
	if len(items) > MaxSigners {
		return malformed("COSE_Sign has %d signatures, more than the limit of %d", len(items), MaxSigners)
	}
	for i, it := range items {
		if majorType(it) != cborArray {
			return malformed("COSE_Signature %d is a CBOR %s, not an array", i+1, typeName(it))
		}
		var parts []cbor.RawMessage
		if err := decMode.Unmarshal(it, &parts); err != nil {
			return malformed("COSE_Signature %d: %v", i+1, err)
		}
		if len(parts) != 3 {
			return malformed("COSE_Signature %d has %d elements, want 3", i+1, len(parts))
		}
		s := Signature{body: m}
		var err error
		if s.Protected, s.rawProtected, err = decodeProtected(parts[0]); err != nil {
			return malformed("signature %d protected header: %v", i+1, err)
		}
		if s.Unprotected, err = decodeHeader(parts[1], false); err != nil {
			return malformed("signature %d unprotected header: %v", i+1, err)
		}
		if err := checkDisjoint(&s.Protected, &s.Unprotected); err != nil {
			return malformed("signature %d: %v", i+1, err)
		}
		if err := decodeBytes(parts[2], &s.Value); err != nil {
			return malformed("signature %d: %v", i+1, err)
		}
		m.Signatures = append(m.Signatures, s)
	}
	return nil
}

// decodeProtected reads the bstr-wrapped protected header. A zero-length
// string means no parameters (RFC 9052 §3).
func decodeProtected(raw cbor.RawMessage) (Header, []byte, error) {
	var b []byte
	if err := decodeBytes(raw, &b); err != nil {
		return Header{}, nil, err
	}
	if b == nil {
		b = []byte{}
	}
	if len(b) == 0 {
		return Header{}, b, nil
	}
	if err := decMode.Wellformed(b); err != nil {
		return Header{}, nil, err
	}
	h, err := decodeHeader(b, true)
	return h, b, err
}

// checkDisjoint enforces RFC 9052 §3: a label must not be in both buckets.
func checkDisjoint(p, u *Header) error {
	for _, l := range p.labels {
		if u.has(l) {
			return fmt.Errorf("header label %v is in both the protected and unprotected buckets", l)
		}
	}
	return nil
}
