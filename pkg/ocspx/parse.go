package ocspx

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/x509x"
)

// MaxResponse bounds a response this package parses (an SLH-DSA
// signature is up to 50 KB; a responder certificate adds as much).
const MaxResponse = 256 << 10

// Response is a parsed OCSPResponse.
type Response struct {
	Status           ResponseStatus
	TBS              []byte // ResponseData, as signed
	SignatureAlg     []byte // AlgorithmIdentifier DER
	Signature        []byte
	Certs            []*x509.Certificate
	ResponderKeyHash []byte // byKey; nil for byName
	ResponderName    []byte // byName (DER), nil for byKey
	ProducedAt       time.Time
	Responses        []Single
	Nonce            []byte
	ExtendedRevoke   bool
}

// ErrMalformedResponse is a response that does not parse.
var ErrMalformedResponse = errors.New("ocspx: malformed OCSP response")

func badResponse(what string) error { return fmt.Errorf("%w: %s", ErrMalformedResponse, what) }

// ParseResponse parses an OCSPResponse; for a status other than
// successful only Status is set. The signature is not checked (Verify).
func ParseResponse(der []byte) (*Response, error) {
	if len(der) > MaxResponse {
		return nil, badResponse("too large")
	}
	in := cryptobyte.String(der)
	var resp cryptobyte.String
	var status int
	if !in.ReadASN1(&resp, cbasn1.SEQUENCE) || !in.Empty() || !resp.ReadASN1Enum(&status) {
		return nil, badResponse("OCSPResponse")
	}
	r := &Response{Status: ResponseStatus(status)}
	if r.Status != Successful {
		return r, nil
	}
	var rb, bytesSeq, basic cryptobyte.String
	var typ asn1.ObjectIdentifier
	if !resp.ReadASN1(&rb, tagExplicit0) || !resp.Empty() || !rb.ReadASN1(&bytesSeq, cbasn1.SEQUENCE) ||
		!bytesSeq.ReadASN1ObjectIdentifier(&typ) || !bytesSeq.ReadASN1((*cryptobyte.String)(&basic), cbasn1.OCTET_STRING) {
		return nil, badResponse("responseBytes")
	}
	if !typ.Equal(OIDBasic) {
		return nil, badResponse("not a basic response")
	}
	var b, tbs, alg cryptobyte.String
	var sig asn1.BitString
	if !basic.ReadASN1(&b, cbasn1.SEQUENCE) || !b.ReadASN1Element(&tbs, cbasn1.SEQUENCE) ||
		!b.ReadASN1Element(&alg, cbasn1.SEQUENCE) || !b.ReadASN1BitString(&sig) || sig.BitLength%8 != 0 {
		return nil, badResponse("BasicOCSPResponse")
	}
	r.TBS, r.SignatureAlg, r.Signature = tbs, alg, sig.Bytes
	var certs cryptobyte.String
	var hasCerts bool
	if !b.ReadOptionalASN1(&certs, &hasCerts, tagExplicit0) || !b.Empty() {
		return nil, badResponse("certs")
	}
	if hasCerts {
		var seq cryptobyte.String
		if !certs.ReadASN1(&seq, cbasn1.SEQUENCE) {
			return nil, badResponse("certs")
		}
		for !seq.Empty() {
			var c cryptobyte.String
			if !seq.ReadASN1Element(&c, cbasn1.SEQUENCE) {
				return nil, badResponse("certificate")
			}
			cert, err := x509.ParseCertificate(c)
			if err != nil {
				return nil, badResponse("certificate: " + err.Error())
			}
			r.Certs = append(r.Certs, cert)
		}
	}
	if err := r.parseData(tbs); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Response) parseData(der cryptobyte.String) error {
	var d cryptobyte.String
	if !der.ReadASN1(&d, cbasn1.SEQUENCE) {
		return badResponse("ResponseData")
	}
	if !d.SkipOptionalASN1(tagExplicit0) {
		return badResponse("version")
	}
	var rid cryptobyte.String
	var tag cbasn1.Tag
	if !d.ReadAnyASN1(&rid, &tag) {
		return badResponse("responderID")
	}
	switch tag {
	case tagExplicit1:
		r.ResponderName = rid
	case tagExplicit2:
		var kh []byte
		if !rid.ReadASN1Bytes(&kh, cbasn1.OCTET_STRING) {
			return badResponse("responderID byKey")
		}
		r.ResponderKeyHash = kh
	default:
		return badResponse("responderID")
	}
	var list cryptobyte.String
	if !d.ReadASN1GeneralizedTime(&r.ProducedAt) || !d.ReadASN1(&list, cbasn1.SEQUENCE) {
		return badResponse("producedAt or responses")
	}
	for !list.Empty() {
		var one cryptobyte.String
		if !list.ReadASN1(&one, cbasn1.SEQUENCE) {
			return badResponse("SingleResponse")
		}
		s, err := parseSingle(one)
		if err != nil {
			return err
		}
		r.Responses = append(r.Responses, s)
	}
	var exts cryptobyte.String
	var hasExts bool
	if !d.ReadOptionalASN1(&exts, &hasExts, tagExplicit1) || !d.Empty() {
		return badResponse("responseExtensions")
	}
	if hasExts {
		nonce, err := findExtension(exts[:len(exts):len(exts)], OIDNonce)
		if err != nil {
			return err
		}
		ext, err := findExtension(exts, OIDExtendedRevoke)
		if err != nil {
			return err
		}
		r.Nonce, r.ExtendedRevoke = nonce, ext != nil
	}
	return nil
}

func parseSingle(s cryptobyte.String) (Single, error) {
	var out Single
	var certID, status cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadASN1(&certID, cbasn1.SEQUENCE) || !s.ReadAnyASN1(&status, &tag) {
		return out, badResponse("SingleResponse")
	}
	id, err := parseCertID(certID)
	if err != nil {
		return out, err
	}
	out.ID, out.Reason = id, NoReason
	switch tag {
	case tagGood:
		out.Status = Good
	case tagUnknown:
		out.Status = Unknown
	case tagRevoked:
		out.Status = Revoked
		if !status.ReadASN1GeneralizedTime(&out.RevokedAt) {
			return out, badResponse("revocationTime")
		}
		var reason cryptobyte.String
		var has bool
		if !status.ReadOptionalASN1(&reason, &has, tagExplicit0) {
			return out, badResponse("revocationReason")
		}
		if has {
			var n int
			if !reason.ReadASN1Enum(&n) {
				return out, badResponse("revocationReason")
			}
			out.Reason = int(n)
		}
	default:
		return out, badResponse("certStatus")
	}
	if !s.ReadASN1GeneralizedTime(&out.ThisUpdate) {
		return out, badResponse("thisUpdate")
	}
	var next cryptobyte.String
	var hasNext bool
	if !s.ReadOptionalASN1(&next, &hasNext, tagExplicit0) {
		return out, badResponse("nextUpdate")
	}
	if hasNext && !next.ReadASN1GeneralizedTime(&out.NextUpdate) {
		return out, badResponse("nextUpdate")
	}
	if !s.SkipOptionalASN1(tagExplicit1) || !s.Empty() {
		return out, badResponse("singleExtensions")
	}
	return out, nil
}

// Verify checks the response's signature: by the issuer itself, or by a
// certificate in the response that the issuer signed for OCSP signing
// (a delegated responder). It returns the certificate whose key signed.
func (r *Response) Verify(issuer *x509.Certificate) (*x509.Certificate, error) {
	if r.Status != Successful {
		return nil, fmt.Errorf("ocspx: response status %s", r.Status)
	}
	signer := issuer
	if kh, err := KeyHashSHA1(issuer); err != nil || r.ResponderKeyHash == nil || string(kh) != string(r.ResponderKeyHash) {
		signer = nil
		for _, c := range r.Certs {
			if ckh, err := KeyHashSHA1(c); err == nil && string(ckh) == string(r.ResponderKeyHash) {
				signer = c
			}
		}
		if signer == nil {
			return nil, errors.New("ocspx: the responder is neither the issuer nor a certificate in the response")
		}
		if err := CheckDelegate(signer, issuer); err != nil {
			return nil, err
		}
	}
	pub, err := x509x.PublicKey(signer)
	if err != nil {
		return nil, err
	}
	if err := x509x.VerifySignedData(pub, r.SignatureAlg, r.TBS, r.Signature); err != nil {
		return nil, fmt.Errorf("ocspx: response signature: %w", err)
	}
	return signer, nil
}

// delegates remembers the responder certificates found signed by their
// issuer (a responder signs every response of a chunk; its certificate's
// signature needs one check).
var delegates sync.Map // sha256(issuer.Raw || responder.Raw) → true

// CheckDelegate checks that responder is a delegated OCSP responder of
// issuer: signed by it and with the id-kp-OCSPSigning extended key usage.
func CheckDelegate(responder, issuer *x509.Certificate) error {
	k := sha256.Sum256(append(append([]byte(nil), issuer.Raw...), responder.Raw...))
	if _, ok := delegates.Load(k); ok {
		return nil
	}
	if err := checkDelegate(responder, issuer); err != nil {
		return err
	}
	delegates.Store(k, true)
	return nil
}

func checkDelegate(responder, issuer *x509.Certificate) error {
	ok := false
	for _, u := range responder.ExtKeyUsage {
		ok = ok || u == x509.ExtKeyUsageOCSPSigning
	}
	if !ok {
		return errors.New("ocspx: the responder certificate lacks id-kp-OCSPSigning")
	}
	if err := x509x.CheckSignatureFrom(responder, issuer); err != nil {
		return fmt.Errorf("ocspx: the responder certificate is not signed by the issuer: %w", err)
	}
	return nil
}

// Find returns the SingleResponse for serial, nil when there is none.
func (r *Response) Find(serial *big.Int) *Single {
	for i := range r.Responses {
		if r.Responses[i].ID.Serial.Cmp(serial) == 0 {
			return &r.Responses[i]
		}
	}
	return nil
}
