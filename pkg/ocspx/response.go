package ocspx

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// CertStatus is a SingleResponse's certStatus.
type CertStatus int

// Certificate statuses (RFC 6960 §2.2).
const (
	Good CertStatus = iota
	Revoked
	Unknown
)

func (s CertStatus) String() string {
	switch s {
	case Good:
		return "good"
	case Revoked:
		return "revoked"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("status-%d", int(s))
}

// NoReason leaves revocationReason out of a revoked answer.
const NoReason = -1

// ReasonCertificateHold is CRLReason certificateHold, the reason of the
// RFC 6960 §2.2 answer for a serial that was never issued.
const ReasonCertificateHold = 6

// NotIssuedTime is the revocationTime of that answer: 1970-01-01.
var NotIssuedTime = time.Unix(0, 0).UTC()

// Single is one SingleResponse.
type Single struct {
	ID        CertID
	Status    CertStatus
	RevokedAt time.Time
	Reason    int // NoReason, or a CRLReason
	// ThisUpdate and NextUpdate: the response is good from one to the
	// other (NextUpdate zero: left out).
	ThisUpdate, NextUpdate time.Time
}

// NotIssued is the answer for a serial the CA never issued, in the
// RFC 6960 §2.2 form: revoked, certificateHold, at 1970-01-01; the
// response must carry the extended revoked definition (Template's
// ExtendedRevoke).
func NotIssued(id CertID, thisUpdate, nextUpdate time.Time) Single {
	return Single{ID: id, Status: Revoked, RevokedAt: NotIssuedTime, Reason: ReasonCertificateHold,
		ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
}

// Template is what a response says, before it is signed.
type Template struct {
	// ResponderKeyHash is the ResponderID byKey: SHA-1 of the signing
	// certificate's public key (KeyHashSHA1).
	ResponderKeyHash []byte
	ProducedAt       time.Time
	Responses        []Single
	// Nonce is echoed as the request carried it (its extnValue).
	Nonce []byte
	// ExtendedRevoke adds id-pkix-ocsp-extended-revoke: revoked may mean
	// "never issued" (RFC 6960 §4.4.8).
	ExtendedRevoke bool
	// Certs are added to the response: the delegated responder's
	// certificate, so that clients can check it; empty when the CA signs.
	Certs []*x509.Certificate
}

// Marshal encodes the ResponseData to be signed.
func (t *Template) Marshal() ([]byte, error) {
	if len(t.ResponderKeyHash) != 20 {
		return nil, errors.New("ocspx: responder key hash must be a SHA-1")
	}
	if len(t.Responses) == 0 {
		return nil, errors.New("ocspx: a response needs at least one SingleResponse")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagExplicit2, func(b *cryptobyte.Builder) { b.AddASN1OctetString(t.ResponderKeyHash) })
		b.AddASN1GeneralizedTime(t.ProducedAt.UTC().Truncate(time.Second))
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, s := range t.Responses {
				addSingle(b, s)
			}
		})
		if t.Nonce != nil || t.ExtendedRevoke {
			b.AddASN1(tagExplicit1, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					if t.Nonce != nil {
						addExtension(b, OIDNonce, t.Nonce)
					}
					if t.ExtendedRevoke {
						addExtension(b, OIDExtendedRevoke, []byte{0x05, 0x00})
					}
				})
			})
		}
	})
	return b.Bytes()
}

var (
	tagGood    = cbasn1.Tag(0).ContextSpecific()
	tagRevoked = cbasn1.Tag(1).Constructed().ContextSpecific()
	tagUnknown = cbasn1.Tag(2).ContextSpecific()
)

func addSingle(b *cryptobyte.Builder, s Single) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addCertID(b, s.ID)
		switch s.Status {
		case Good:
			b.AddASN1(tagGood, func(*cryptobyte.Builder) {})
		case Revoked:
			b.AddASN1(tagRevoked, func(b *cryptobyte.Builder) {
				b.AddASN1GeneralizedTime(s.RevokedAt.UTC().Truncate(time.Second))
				if s.Reason != NoReason {
					b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
						b.AddASN1Enum(int64(s.Reason))
					})
				}
			})
		default:
			b.AddASN1(tagUnknown, func(*cryptobyte.Builder) {})
		}
		b.AddASN1GeneralizedTime(s.ThisUpdate.UTC().Truncate(time.Second))
		if !s.NextUpdate.IsZero() {
			b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
				b.AddASN1GeneralizedTime(s.NextUpdate.UTC().Truncate(time.Second))
			})
		}
	})
}

// Assemble builds the OCSPResponse (successful, id-pkix-ocsp-basic) from
// the signed ResponseData, its AlgorithmIdentifier and signature.
func Assemble(tbs, alg, sig []byte, certs []*x509.Certificate) []byte {
	var basic cryptobyte.Builder
	basic.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(alg)
		b.AddASN1BitString(sig)
		if len(certs) > 0 {
			b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, c := range certs {
						b.AddBytes(c.Raw)
					}
				})
			})
		}
	})
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(int64(Successful))
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(OIDBasic)
				b.AddASN1OctetString(basic.BytesOrPanic())
			})
		})
	})
	return b.BytesOrPanic()
}

// SignMany signs each template with s (in one batch on an HSM session
// that signs batches) and returns the OCSPResponses, in order. Every
// signature is checked before it is returned.
func SignMany(rand io.Reader, ts []*Template, s algo.Signer, pss bool) ([][]byte, error) {
	tbss := make([][]byte, len(ts))
	for i, t := range ts {
		var err error
		if tbss[i], err = t.Marshal(); err != nil {
			return nil, err
		}
	}
	alg, sigs, err := x509x.SignMany(rand, tbss, s, pss)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(ts))
	for i, t := range ts {
		out[i] = Assemble(tbss[i], alg, sigs[i], t.Certs)
	}
	return out, nil
}
