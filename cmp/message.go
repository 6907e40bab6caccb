package cmp

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// MaxBody bounds a request's body (and so a PKIMessage).
const MaxBody = 256 << 10

// Body types: the context tags of PKIBody (RFC 9810 §5.1.2).
const (
	BodyIR       = 0
	BodyIP       = 1
	BodyCR       = 2
	BodyCP       = 3
	BodyP10CR    = 4
	BodyKUR      = 7
	BodyKUP      = 8
	BodyRR       = 11
	BodyRP       = 12
	BodyPKIConf  = 19
	BodyGenM     = 21
	BodyGenP     = 22
	BodyError    = 23
	BodyCertConf = 24
	BodyPollReq  = 25
	BodyPollRep  = 26
)

// Protocol versions (pvno).
const (
	PVNO2000 = 2
	PVNO2021 = 3
)

// OIDs of RFC 9810, RFC 9483 and RFC 9045.
var (
	OIDPasswordBasedMAC = asn1.ObjectIdentifier{1, 2, 840, 113533, 7, 66, 13}
	OIDPBMAC1           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 14}
	OIDPBKDF2           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	OIDHMACSHA1         = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 8, 1, 2}
	OIDHMACWithSHA1     = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	OIDHMACWithSHA256   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	OIDHMACWithSHA384   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	OIDHMACWithSHA512   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	OIDSHA1             = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	OIDSHA256           = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	OIDSHA384           = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	OIDSHA512           = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	// id-it (1.3.6.1.5.5.7.4.x)
	OIDITSignKeyPairTypes = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 4, 3}
	OIDITImplicitConfirm  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 4, 13}
	OIDITConfirmWaitTime  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 4, 14}
	OIDITCertProfile      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 4, 21}
	OIDITCACerts          = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 4, 17}
	OIDITRootCAKeyUpdate  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 4, 20}
	OIDITCertReqTemplate  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 4, 19}
	OIDITCRLStatusList    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 4, 22}
	OIDITCRLs             = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 4, 23}
	OIDRegCtrlOldCertID   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 5, 1, 5}
	OIDKPCMKGA            = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 32}
)

// Status is a PKIStatus.
type Status int

// The PKIStatus values.
const (
	StatusAccepted         Status = 0
	StatusGrantedWithMods  Status = 1
	StatusRejection        Status = 2
	StatusWaiting          Status = 3
	StatusRevocationWarn   Status = 4
	StatusRevocationNotice Status = 5
	StatusKeyUpdateWarning Status = 6
)

// FailInfo is a PKIFailureInfo bit.
type FailInfo int

// The PKIFailureInfo bits (RFC 9810 §5.2.3).
const (
	FailBadAlg              FailInfo = 0
	FailBadMessageCheck     FailInfo = 1
	FailBadRequest          FailInfo = 2
	FailBadTime             FailInfo = 3
	FailBadCertID           FailInfo = 4
	FailBadDataFormat       FailInfo = 5
	FailWrongAuthority      FailInfo = 6
	FailIncorrectData       FailInfo = 7
	FailMissingTimeStamp    FailInfo = 8
	FailBadPOP              FailInfo = 9
	FailCertRevoked         FailInfo = 10
	FailCertConfirmed       FailInfo = 11
	FailWrongIntegrity      FailInfo = 12
	FailBadRecipientNonce   FailInfo = 13
	FailTimeNotAvailable    FailInfo = 14
	FailUnacceptedPolicy    FailInfo = 15
	FailUnacceptedExtension FailInfo = 16
	FailAddInfoNotAvailable FailInfo = 17
	FailBadSenderNonce      FailInfo = 18
	FailBadCertTemplate     FailInfo = 19
	FailSignerNotTrusted    FailInfo = 20
	FailTransactionIDInUse  FailInfo = 21
	FailUnsupportedVersion  FailInfo = 22
	FailNotAuthorized       FailInfo = 23
	FailSystemUnavail       FailInfo = 24
	FailSystemFailure       FailInfo = 25
	FailDuplicateCertReq    FailInfo = 26
)

// bitString is a PKIFailureInfo with one bit set.
func (f FailInfo) bitString() asn1.BitString {
	n := int(f)/8 + 1
	b := make([]byte, n)
	b[int(f)/8] = 0x80 >> (uint(f) % 8)
	return asn1.BitString{Bytes: b, BitLength: int(f) + 1}
}

// Header is a PKIHeader (EXPLICIT tags, as the PKIXCMP module).
type Header struct {
	PVNO          int
	Sender        asn1.RawValue
	Recipient     asn1.RawValue
	MessageTime   time.Time                `asn1:"generalized,explicit,optional,tag:0"`
	ProtectionAlg pkix.AlgorithmIdentifier `asn1:"explicit,optional,tag:1"`
	SenderKID     []byte                   `asn1:"explicit,optional,tag:2"`
	RecipKID      []byte                   `asn1:"explicit,optional,tag:3"`
	TransactionID []byte                   `asn1:"explicit,optional,tag:4"`
	SenderNonce   []byte                   `asn1:"explicit,optional,tag:5"`
	RecipNonce    []byte                   `asn1:"explicit,optional,tag:6"`
	FreeText      FreeText                 `asn1:"explicit,optional,tag:7"`
	GeneralInfo   []InfoTypeAndValue       `asn1:"explicit,optional,tag:8"`
}

// InfoTypeAndValue is one generalInfo or genm/genp entry.
type InfoTypeAndValue struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"optional"`
}

// Message is a parsed PKIMessage; Body is the PKIBody's tagged value,
// decoded further by the body's own parser.
type Message struct {
	Raw        []byte
	RawHeader  []byte
	Header     Header
	Body       asn1.RawValue
	Protection asn1.BitString
	ExtraCerts []asn1.RawValue
}

// rawMessage is the PKIMessage SEQUENCE.
type rawMessage struct {
	Header     asn1.RawValue
	Body       asn1.RawValue
	Protection asn1.BitString  `asn1:"explicit,optional,tag:0"`
	ExtraCerts []asn1.RawValue `asn1:"explicit,optional,tag:1"`
}

// ErrMalformed is a PKIMessage that does not parse.
var ErrMalformed = errors.New("cmp: malformed PKIMessage")

// ParseMessage parses a DER PKIMessage, with nothing left over.
func ParseMessage(der []byte) (*Message, error) {
	if len(der) > MaxBody {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxBody)
	}
	var rm rawMessage
	rest, err := asn1.Unmarshal(der, &rm)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	m := &Message{Raw: der, RawHeader: rm.Header.FullBytes, Body: rm.Body, Protection: rm.Protection, ExtraCerts: rm.ExtraCerts}
	if rest, err := asn1.Unmarshal(rm.Header.FullBytes, &m.Header); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if rm.Body.Class != asn1.ClassContextSpecific || !rm.Body.IsCompound {
		return nil, fmt.Errorf("%w: body is not a tagged choice", ErrMalformed)
	}
	return m, nil
}

// Type is the body's choice.
func (m *Message) Type() int { return m.Body.Tag }

// content unmarshals the body's (explicitly tagged) content into v.
func (m *Message) content(v any) error {
	rest, err := asn1.Unmarshal(m.Body.Bytes, v)
	if err != nil {
		return fmt.Errorf("%w: body: %v", ErrMalformed, err)
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: body: trailing data", ErrMalformed)
	}
	return nil
}

// protectedPart is the DER the protection covers: ProtectedPart ::=
// SEQUENCE { header, body }.
func protectedPart(header, body []byte) []byte {
	out, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(append([]byte{}, header...), body...)})
	return out
}

// generalInfo reports whether the header carries an entry of type oid.
func (h *Header) generalInfo(oid asn1.ObjectIdentifier) (InfoTypeAndValue, bool) {
	for _, it := range h.GeneralInfo {
		if it.Type.Equal(oid) {
			return it, true
		}
	}
	return InfoTypeAndValue{}, false
}

// CRMF (RFC 4211, IMPLICIT tags).

// CertReqMsg is one request of ir, cr or kur.
type CertReqMsg struct {
	Raw     asn1.RawContent
	CertReq CertRequest
	POPO    asn1.RawValue           `asn1:"optional"`
	RegInfo []AttributeTypeAndValue `asn1:"optional"`
}

// AttributeTypeAndValue is a CRMF control or regInfo entry.
type AttributeTypeAndValue struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// CertRequest is the part a signature PoP covers.
type CertRequest struct {
	Raw          asn1.RawContent
	CertReqID    *big.Int
	CertTemplate CertTemplate
	Controls     []AttributeTypeAndValue `asn1:"optional"`
}

// CertTemplate is what the requester asks for; Subject and Issuer are
// RawValues since Name is a CHOICE (tagged explicitly).
type CertTemplate struct {
	Raw          asn1.RawContent
	Version      int                      `asn1:"optional,tag:0"`
	SerialNumber *big.Int                 `asn1:"optional,tag:1"`
	SigningAlg   pkix.AlgorithmIdentifier `asn1:"optional,tag:2"`
	Issuer       asn1.RawValue            `asn1:"optional,explicit,tag:3"`
	Validity     asn1.RawValue            `asn1:"optional,tag:4"`
	Subject      asn1.RawValue            `asn1:"optional,explicit,tag:5"`
	PublicKey    asn1.RawValue            `asn1:"optional,tag:6"`
	IssuerUID    asn1.BitString           `asn1:"optional,tag:7"`
	SubjectUID   asn1.BitString           `asn1:"optional,tag:8"`
	Extensions   []pkix.Extension         `asn1:"optional,tag:9"`
}

// POPOSigningKey is a signature proof of possession (popo [1]).
type POPOSigningKey struct {
	Input     asn1.RawValue `asn1:"optional,tag:0"`
	Algorithm asn1.RawValue
	Signature asn1.BitString
}

// CMP bodies.

// PKIStatusInfo is a status with its text and failure bits.
type PKIStatusInfo struct {
	Status       int
	StatusString FreeText       `asn1:"optional"`
	FailInfo     asn1.BitString `asn1:"optional"`
}

// CertResponse answers one CertReqMsg.
type CertResponse struct {
	CertReqID        *big.Int
	Status           PKIStatusInfo
	CertifiedKeyPair asn1.RawValue `asn1:"optional"`
	RspInfo          []byte        `asn1:"optional"`
}

// CertRepMessage is the body of ip, cp and kup.
type CertRepMessage struct {
	CAPubs   []asn1.RawValue `asn1:"explicit,optional,tag:1"`
	Response []CertResponse
}

// CertStatus is one certConf entry.
type CertStatus struct {
	CertHash   []byte
	CertReqID  *big.Int
	StatusInfo PKIStatusInfo            `asn1:"optional"`
	HashAlg    pkix.AlgorithmIdentifier `asn1:"explicit,optional,tag:0"`
}

// ErrorMsgContent is the body of error.
type ErrorMsgContent struct {
	Status       PKIStatusInfo
	ErrorCode    int      `asn1:"optional"`
	ErrorDetails FreeText `asn1:"optional"`
}

// PollReq and PollRep entries.
type PollReq struct{ CertReqID *big.Int }

type PollRep struct {
	CertReqID  *big.Int
	CheckAfter int
	Reason     FreeText `asn1:"optional"`
}

// RevDetails is one rr entry.
type RevDetails struct {
	CertDetails     CertTemplate
	CRLEntryDetails []pkix.Extension `asn1:"optional"`
}

// RevRepContent is the body of rp.
type RevRepContent struct {
	Status []PKIStatusInfo
}

// tagged wraps DER in an explicit context tag.
func tagged(tag int, der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: true, Bytes: der}
}

// marshalBody encodes v as the body of type t.
func marshalBody(t int, v any) ([]byte, error) {
	der, err := asn1.Marshal(v)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(tagged(t, der))
}

// statusInfo makes a PKIStatusInfo.
func statusInfo(s Status, fail *FailInfo, text string) PKIStatusInfo {
	si := PKIStatusInfo{Status: int(s)}
	if text != "" {
		si.StatusString = NewFreeText(text)
	}
	if fail != nil {
		si.FailInfo = fail.bitString()
	}
	return si
}

// FreeText is a PKIFreeText: a SEQUENCE OF UTF8String.
type FreeText []asn1.RawValue

// NewFreeText makes a PKIFreeText of lines.
func NewFreeText(lines ...string) FreeText {
	out := make(FreeText, len(lines))
	for i, l := range lines {
		out[i] = asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte(l)}
	}
	return out
}

// String joins the lines.
func (t FreeText) String() string {
	var b []byte
	for i, l := range t {
		if i > 0 {
			b = append(b, "; "...)
		}
		b = append(b, l.Bytes...)
	}
	return string(b)
}
