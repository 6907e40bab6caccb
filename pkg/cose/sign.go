package cose

import (
	"bytes"
	"crypto"
	cryptorand "crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// Signer signs a message: a file key or an HSM key, with the algorithm the
// profile chose.
type Signer = algo.Signer

// SignRequest describes a message to sign. It is JSON-serialisable so that
// the queue can carry it as a job; the keys and chains travel separately.
type SignRequest struct {
	// Type is sign1, sign or cwt. Empty means sign1 for one signer and sign
	// for several. A CWT with several signers is a COSE_Sign inside tag 61.
	Type Type `json:"type,omitempty"`
	// Payload is the content of a sign1 or sign message.
	Payload []byte `json:"payload,omitempty"`
	// Detached leaves the payload out of the message (it is still signed).
	Detached bool `json:"detached,omitempty"`
	// Claims is the content of a CWT.
	Claims *Claims `json:"claims,omitempty"`
	// ContentType is a media type ("application/json") or a CoAP content
	// format number ("50"), put in the protected header.
	ContentType string `json:"content_type,omitempty"`
	// KID is the key identifier of the only signer; KIDs gives one per
	// signer. They go in the unprotected header.
	KID  []byte   `json:"kid,omitempty"`
	KIDs [][]byte `json:"kids,omitempty"`
	// Algorithms overrides, per signer, the COSE algorithm chosen from the
	// key (e.g. "PS512" for an RSA key); empty entries keep the default.
	Algorithms []string `json:"algorithms,omitempty"`
	// FullySpecified selects the RFC 9864 identifiers (ESP256, Ed25519, ...).
	FullySpecified bool `json:"fully_specified,omitempty"`
	// OmitX5Chain leaves the certificate chains out. By default each
	// signer's chain goes in its protected header, so that a verifier
	// needs only the CA certificate.
	OmitX5Chain bool `json:"omit_x5chain,omitempty"`
	// ExternalAAD is authenticated but not carried (RFC 9052 §4.3).
	ExternalAAD []byte `json:"external_aad,omitempty"`
}

// Sign makes the message req describes, signed by every signer. chains[i],
// leaf first, is signers[i]'s certificate chain; chains may be shorter than
// signers or nil, for signers without certificates.
func Sign(rand io.Reader, req SignRequest, signers []Signer, chains [][]*x509.Certificate) ([]byte, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRequest}, args...)...)
	}
	if rand == nil {
		rand = cryptorand.Reader
	}
	if len(signers) == 0 {
		return nil, bad("no signer")
	}
	if len(signers) > MaxSigners {
		return nil, bad("%d signers exceed the limit of %d", len(signers), MaxSigners)
	}
	if len(chains) > len(signers) {
		return nil, bad("%d chains for %d signers", len(chains), len(signers))
	}
	if len(req.KIDs) > len(signers) || len(req.Algorithms) > len(signers) {
		return nil, bad("more kids or algorithms than signers")
	}
	if req.KID != nil && req.KIDs != nil {
		return nil, bad("set kid or kids, not both")
	}
	if req.KID != nil && len(signers) > 1 {
		return nil, bad("one kid for %d signers; use kids", len(signers))
	}

	structure := TypeSign1
	if len(signers) > 1 {
		structure = TypeSign
	}
	switch req.Type {
	case "", TypeCWT:
	case TypeSign1:
		if len(signers) > 1 {
			return nil, bad("a COSE_Sign1 message has one signer, not %d; use type sign", len(signers))
		}
	case TypeSign:
		structure = TypeSign
	default:
		return nil, bad("unknown message type %q", req.Type)
	}

	payload := req.Payload
	if req.Type == TypeCWT {
		if len(req.Payload) > 0 {
			return nil, bad("a CWT's payload is its claims; do not set a payload")
		}
		if req.Detached {
			return nil, bad("a CWT cannot be detached")
		}
		var err error
		if payload, err = cwtPayload(rand, req.Claims); err != nil {
			return nil, bad("%v", err)
		}
	} else if req.Claims != nil {
		return nil, bad("claims need type cwt")
	}
	if payload == nil {
		payload = []byte{}
	}

	var contentType any
	if req.ContentType != "" {
		if n, err := strconv.ParseUint(req.ContentType, 10, 16); err == nil {
			contentType = n // CoAP content formats are 16-bit.
		} else if err := checkMediaType(req.ContentType); err != nil {
			return nil, bad("content type: %v", err)
		} else {
			contentType = req.ContentType
		}
	}

	parts := make([]signerParts, len(signers))
	for i, s := range signers {
		var chain []*x509.Certificate
		if i < len(chains) {
			chain = chains[i]
		}
		var kid []byte
		if req.KID != nil {
			kid = req.KID
		} else if i < len(req.KIDs) {
			kid = req.KIDs[i]
		}
		var algName string
		if i < len(req.Algorithms) {
			algName = req.Algorithms[i]
		}
		p, err := prepareSigner(s, chain, kid, algName, req.FullySpecified, req.OmitX5Chain)
		if err != nil {
			return nil, fmt.Errorf("%w: signer %d: %w", ErrInvalidRequest, i+1, err)
		}
		parts[i] = p
	}

	aad := bstr(req.ExternalAAD)
	var carried any = payload
	if req.Detached {
		carried = nil
	}

	var msg any
	if structure == TypeSign1 {
		p := parts[0]
		if contentType != nil {
			p.protected[HeaderContentType] = contentType
		}
		prot, err := encodeHeader(p.protected)
		if err != nil {
			return nil, err
		}
		tbs, err := sigStructure1(prot, aad, payload)
		if err != nil {
			return nil, err
		}
		sig, err := p.info.sign(rand, signers[0], tbs)
		if err != nil {
			return nil, fmt.Errorf("cose: signer 1 (%s): %w", p.info.name, err)
		}
		msg = cbor.Tag{Number: TagSign1, Content: []any{prot, p.unprotected, carried, sig}}
	} else {
		body := map[int64]any{}
		if contentType != nil {
			body[HeaderContentType] = contentType
		}
		bodyProt := []byte{}
		if len(body) > 0 {
			var err error
			if bodyProt, err = encodeHeader(body); err != nil {
				return nil, err
			}
		}
		sigs := make([]any, len(parts))
		for i, p := range parts {
			prot, err := encodeHeader(p.protected)
			if err != nil {
				return nil, err
			}
			tbs, err := sigStructure(bodyProt, prot, aad, payload)
			if err != nil {
				return nil, err
			}
			sig, err := p.info.sign(rand, signers[i], tbs)
			if err != nil {
				return nil, fmt.Errorf("cose: signer %d (%s): %w", i+1, p.info.name, err)
			}
			sigs[i] = []any{prot, p.unprotected, sig}
		}
		msg = cbor.Tag{Number: TagSign, Content: []any{bodyProt, map[int64]any{}, carried, sigs}}
	}
	if req.Type == TypeCWT {
		msg = cbor.Tag{Number: TagCWT, Content: msg}
	}
	return encMode.Marshal(msg)
}

type signerParts struct {
	info        *algInfo
	protected   map[int64]any
	unprotected map[int64]any
}

func prepareSigner(s Signer, chain []*x509.Certificate, kid []byte, algName string, fully, omitChain bool) (signerParts, error) {
	var p signerParts
	if s == nil {
		return p, fmt.Errorf("nil signer")
	}
	var id Algorithm
	var err error
	if algName != "" {
		id, err = ParseAlgorithm(algName)
	} else {
		id, err = AlgorithmFor(s.Algorithm(), fully)
	}
	if err != nil {
		return p, err
	}
	p.info, _ = lookupAlg(id)
	pub := s.Public()
	if err := p.info.checkKey(pub); err != nil {
		return p, err
	}
	if len(chain) > MaxChain {
		return p, fmt.Errorf("chain of %d certificates exceeds the limit of %d", len(chain), MaxChain)
	}
	if len(chain) > 0 {
		if err := sameKey(chain[0], pub); err != nil {
			return p, err
		}
	}
	p.protected = map[int64]any{HeaderAlg: int64(id)}
	if len(chain) > 0 && !omitChain {
		p.protected[HeaderX5Chain] = x5chainValue(chain)
	}
	p.unprotected = map[int64]any{}
	if len(kid) > 0 {
		p.unprotected[HeaderKID] = kid
	}
	return p, nil
}

// sameKey checks that the certificate is the signer's, so that a
// misconfigured key/certificate pair fails at signing rather than at every
// verifier.
func sameKey(leaf *x509.Certificate, pub crypto.PublicKey) error {
	certPub, err := x509x.PublicKey(leaf)
	if err == nil {
		if k, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); ok {
			if k.Equal(certPub) {
				return nil
			}
			return fmt.Errorf("the certificate %q is not for the signing key", leaf.Subject)
		}
	}
	spki, err := algo.MarshalPKIX(pub)
	if err != nil {
		return fmt.Errorf("signing key: %v", err)
	}
	if !bytes.Equal(spki, leaf.RawSubjectPublicKeyInfo) {
		return fmt.Errorf("the certificate %q is not for the signing key", leaf.Subject)
	}
	return nil
}

// cwtPayload encodes the claims, setting iat and cti when the caller did
// not.
func cwtPayload(rand io.Reader, claims *Claims) ([]byte, error) {
	var c Claims
	if claims != nil {
		c = *claims
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if len(c.CTI) == 0 {
		c.CTI = make([]byte, 16)
		if _, err := io.ReadFull(rand, c.CTI); err != nil {
			return nil, fmt.Errorf("cti: %v", err)
		}
	}
	return c.encode()
}

func bstr(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// sigStructure1 is the COSE_Sign1 Sig_structure (RFC 9052 §4.4).
func sigStructure1(protected, aad, payload []byte) ([]byte, error) {
	return encMode.Marshal([]any{"Signature1", bstr(protected), bstr(aad), bstr(payload)})
}

// sigStructure is the COSE_Signature Sig_structure (RFC 9052 §4.4).
func sigStructure(bodyProtected, signProtected, aad, payload []byte) ([]byte, error) {
	return encMode.Marshal([]any{"Signature", bstr(bodyProtected), bstr(signProtected), bstr(aad), bstr(payload)})
}
