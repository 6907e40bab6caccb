package ocspx

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// CertID names one certificate: its issuer's hashes and its serial.
type CertID struct {
	IssuerHashes
	Serial *big.Int
}

// Request is a parsed OCSPRequest. A signature on the request, which
// RFC 6960 makes optional and this responder does not ask for, is skipped.
type Request struct {
	CertIDs []CertID
	// Nonce is the nonce extension's value (the DER of the Nonce OCTET
	// STRING, as RFC 8954 and OpenSSL write it), nil without one.
	Nonce []byte
}

// ErrMalformed is a request that does not parse; ErrTooLarge one over
// MaxRequest.
var (
	ErrMalformed = errors.New("ocspx: malformed OCSP request")
	ErrTooLarge  = errors.New("ocspx: OCSP request too large")
)

var (
	tagExplicit0 = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagExplicit1 = cbasn1.Tag(1).Constructed().ContextSpecific()
	tagExplicit2 = cbasn1.Tag(2).Constructed().ContextSpecific()
)

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// ParseRequest parses an OCSPRequest (DER). A CertID whose hash algorithm
// is unknown fails with ErrUnknownHash (a malformed request for the
// responder: nothing in it can be matched).
func ParseRequest(der []byte) (*Request, error) {
	if len(der) > MaxRequest {
		return nil, ErrTooLarge
	}
	in := cryptobyte.String(der)
	var req, tbs cryptobyte.String
	if !in.ReadASN1(&req, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, malformed("not one SEQUENCE")
	}
	if !req.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, malformed("no tbsRequest")
	}
	if !req.Empty() && !req.SkipOptionalASN1(tagExplicit0) || !req.Empty() {
		return nil, malformed("trailing data after tbsRequest")
	}
	var version cryptobyte.String
	var hasVersion bool
	if !tbs.ReadOptionalASN1(&version, &hasVersion, tagExplicit0) {
		return nil, malformed("version")
	}
	if hasVersion {
		var v int64
		if !version.ReadASN1Int64WithTag(&v, cbasn1.INTEGER) || !version.Empty() || v != 0 {
			return nil, malformed("version is not v1")
		}
	}
	if !tbs.SkipOptionalASN1(tagExplicit1) { // requestorName
		return nil, malformed("requestorName")
	}
	var list cryptobyte.String
	if !tbs.ReadASN1(&list, cbasn1.SEQUENCE) {
		return nil, malformed("requestList")
	}
	r := &Request{}
	for !list.Empty() {
		var one, certID cryptobyte.String
		if !list.ReadASN1(&one, cbasn1.SEQUENCE) || !one.ReadASN1(&certID, cbasn1.SEQUENCE) ||
			!one.SkipOptionalASN1(tagExplicit0) || !one.Empty() {
			return nil, malformed("request")
		}
		if len(r.CertIDs) == MaxCertIDs {
			return nil, malformed(fmt.Sprintf("more than %d CertIDs", MaxCertIDs))
		}
		id, err := parseCertID(certID)
		if err != nil {
			return nil, err
		}
		r.CertIDs = append(r.CertIDs, id)
	}
	if len(r.CertIDs) == 0 {
		return nil, malformed("no CertID")
	}
	var exts cryptobyte.String
	var hasExts bool
	if !tbs.ReadOptionalASN1(&exts, &hasExts, tagExplicit2) || !tbs.Empty() {
		return nil, malformed("requestExtensions")
	}
	if hasExts {
		nonce, err := findExtension(exts, OIDNonce)
		if err != nil {
			return nil, err
		}
		r.Nonce = nonce
	}
	return r, nil
}

func parseCertID(s cryptobyte.String) (CertID, error) {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	var id CertID
	var name, key []byte
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return id, malformed("CertID hash algorithm")
	}
	if !alg.Empty() {
		var params cryptobyte.String
		var tag cbasn1.Tag
		if !alg.ReadAnyASN1(&params, &tag) || tag != cbasn1.NULL || !params.Empty() || !alg.Empty() {
			return id, malformed("CertID hash parameters")
		}
	}
	if !s.ReadASN1Bytes(&name, cbasn1.OCTET_STRING) || !s.ReadASN1Bytes(&key, cbasn1.OCTET_STRING) {
		return id, malformed("CertID hashes")
	}
	serial := new(big.Int)
	if !s.ReadASN1Integer(serial) || !s.Empty() {
		return id, malformed("CertID serial")
	}
	h := hashByOID(oid)
	if h == "" {
		return id, fmt.Errorf("%w (%s)", ErrUnknownHash, oid)
	}
	if len(name) != h.Crypto().Size() || len(key) != h.Crypto().Size() {
		return id, malformed("CertID hash of the wrong length")
	}
	id.Hash, id.NameHash, id.KeyHash, id.Serial = h, name, key, serial
	return id, nil
}

// findExtension returns the value (the extnValue OCTET STRING's content)
// of the extension oid in a SEQUENCE OF Extension, nil when absent.
func findExtension(exts cryptobyte.String, oid asn1.ObjectIdentifier) ([]byte, error) {
	var seq cryptobyte.String
	if !exts.ReadASN1(&seq, cbasn1.SEQUENCE) || !exts.Empty() {
		return nil, malformed("extensions")
	}
	var found []byte
	for !seq.Empty() {
		var ext cryptobyte.String
		var id asn1.ObjectIdentifier
		var value []byte
		if !seq.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&id) ||
			!ext.SkipOptionalASN1(cbasn1.BOOLEAN) || !ext.ReadASN1Bytes(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
			return nil, malformed("extension")
		}
		if id.Equal(oid) {
			if found != nil {
				return nil, malformed("repeated extension")
			}
			found = value
			if found == nil {
				found = []byte{}
			}
		}
	}
	return found, nil
}

// NonceLen is the length of a nonce's octets: the content of the Nonce
// OCTET STRING, or of the extnValue itself when a client put the octets
// there bare.
func NonceLen(nonce []byte) int {
	s := cryptobyte.String(nonce)
	var inner []byte
	if s.ReadASN1Bytes(&inner, cbasn1.OCTET_STRING) && s.Empty() {
		return len(inner)
	}
	return len(nonce)
}

// CreateRequest encodes an unsigned request for the certificates of one
// issuer (tests and the CLI). nonce, when not nil, is the nonce's octets.
func CreateRequest(issuer *x509.Certificate, serials []*big.Int, h Hash, nonce []byte) ([]byte, error) {
	ih, err := HashIssuer(issuer, h)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, s := range serials {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						addCertID(b, CertID{IssuerHashes: ih, Serial: s})
					})
				}
			})
			if nonce != nil {
				b.AddASN1(tagExplicit2, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						var v cryptobyte.Builder
						v.AddASN1OctetString(nonce)
						addExtension(b, OIDNonce, v.BytesOrPanic())
					})
				})
			}
		})
	})
	return b.Bytes()
}

func addCertID(b *cryptobyte.Builder, id CertID) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(id.Hash.oid())
			b.AddASN1NULL()
		})
		b.AddASN1OctetString(id.NameHash)
		b.AddASN1OctetString(id.KeyHash)
		b.AddASN1BigInt(id.Serial)
	})
}

func addExtension(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, value []byte) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1OctetString(value)
	})
}
