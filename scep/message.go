package scep

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/pkg/x509x"
)

// The SCEP signed attributes (RFC 8894 §3.2.1), under id-VeriSign
// pki-attributes 2.16.840.1.113733.1.9.
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
)

// MessageType is a pkiMessage's messageType (RFC 8894 §3.2.1.2).
type MessageType int

// The message types qpki answers; CertRep is its answer.
const (
	CertRep        MessageType = 3
	RenewalReq     MessageType = 17
	PKCSReq        MessageType = 19
	CertPoll       MessageType = 20 // GetCertInitial in older drafts
	GetCert        MessageType = 21
	GetCRL         MessageType = 22
	maxMessageType             = 99
)

func (m MessageType) String() string {
	switch m {
	case CertRep:
		return "CertRep"
	case RenewalReq:
		return "RenewalReq"
	case PKCSReq:
		return "PKCSReq"
	case CertPoll:
		return "CertPoll"
	case GetCert:
		return "GetCert"
	case GetCRL:
		return "GetCRL"
	}
	return "messageType " + strconv.Itoa(int(m))
}

// PKIStatus is a CertRep's pkiStatus.
type PKIStatus int

// The statuses of RFC 8894 §3.2.1.3.
const (
	StatusSuccess PKIStatus = 0
	StatusFailure PKIStatus = 2
	StatusPending PKIStatus = 3
)

// FailInfo is why a CertRep is FAILURE (RFC 8894 §3.2.1.4).
type FailInfo int

// The failInfo values.
const (
	BadAlg          FailInfo = 0 // unrecognized or unsupported algorithm
	BadMessageCheck FailInfo = 1 // integrity check (signature, decryption) failed
	BadRequest      FailInfo = 2 // transaction not permitted or supported
	BadTime         FailInfo = 3
	BadCertID       FailInfo = 4 // no certificate matches what was given
)

func (f FailInfo) String() string {
	return [...]string{"badAlg", "badMessageCheck", "badRequest", "badTime", "badCertId"}[f]
}

// nonceSize is the length of a senderNonce and recipientNonce.
const nonceSize = 16

// maxTransactionID bounds a transactionID (printable text, usually a
// hash of the client's key in hex or base64).
const maxTransactionID = 128

// message is a parsed pkiMessage: its signed attributes, its signer, and
// the pkcsPKIEnvelope still encrypted.
type message struct {
	Type          MessageType
	TransactionID string
	SenderNonce   []byte
	// Signer is the certificate whose key signed: the client's
	// self-signed certificate, or the certificate being renewed.
	Signer   *x509.Certificate
	Digest   string
	envelope []byte
	sd       *cms.SignedData
}

// Failure is a request answered with FAILURE and a failInfo.
type Failure struct {
	Info   FailInfo
	Reason string
}

func (f *Failure) Error() string { return f.Info.String() + ": " + f.Reason }

func fail(info FailInfo, format string, args ...any) *Failure {
	return &Failure{Info: info, Reason: fmt.Sprintf(format, args...)}
}

// errMalformed marks a message too broken to answer with a CertRep (no
// transactionID or senderNonce to echo): HTTP 400.
var errMalformed = errors.New("malformed SCEP message")

// parseMessage reads the outer SignedData of a pkiMessage and its SCEP
// attributes without checking the signature; verify does.
func parseMessage(body []byte) (*message, error) {
	sd, err := cms.ParseSignedData(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if len(sd.Signers) != 1 {
		return nil, fmt.Errorf("%w: %d signers, want 1", errMalformed, len(sd.Signers))
	}
	s := sd.Signers[0]
	m := &message{sd: sd, envelope: sd.Content, Digest: s.DigestAlgorithm}
	var txid string
	if err := attr(s, oidTransactionID, &txid); err != nil {
		return nil, err
	}
	if txid == "" || len(txid) > maxTransactionID || !utf8.ValidString(txid) {
		return nil, fmt.Errorf("%w: transactionID must be 1 to %d characters", errMalformed, maxTransactionID)
	}
	m.TransactionID = txid
	if err := attr(s, oidSenderNonce, &m.SenderNonce); err != nil {
		return nil, err
	}
	if len(m.SenderNonce) != nonceSize {
		return nil, fmt.Errorf("%w: senderNonce is %d bytes, want %d", errMalformed, len(m.SenderNonce), nonceSize)
	}
	var typ string
	if err := attr(s, oidMessageType, &typ); err != nil {
		return m, err
	}
	n, err := strconv.Atoi(typ)
	if err != nil || n < 0 || n > maxMessageType {
		return m, fmt.Errorf("%w: messageType %q", errMalformed, typ)
	}
	m.Type = MessageType(n)
	return m, nil
}

// attr decodes the one value of a SCEP attribute (a PrintableString or
// an OCTET STRING).
func attr(s *cms.Signer, oid asn1.ObjectIdentifier, v any) error {
	der, ok := s.Attribute(oid)
	if !ok {
		return fmt.Errorf("%w: attribute %s missing or repeated", errMalformed, oid)
	}
	if rest, err := asn1.Unmarshal(der, v); err != nil || len(rest) != 0 {
		return fmt.Errorf("%w: attribute %s: %v", errMalformed, oid, err)
	}
	return nil
}

// digests the labels accept for the message signature.
var (
	strongDigests = []string{"sha256", "sha512"}
	legacyDigests = []string{"sha256", "sha512", "sha1"}
)

// verify checks the message's signature with the certificate in it
// (self-signed, or the one being renewed), and its digest algorithm.
func (m *message) verify(legacy bool) *Failure {
	allowed := strongDigests
	if legacy {
		allowed = legacyDigests
	}
	if !contains(allowed, m.Digest) {
		return fail(BadAlg, "digest algorithm %s is not accepted here (use SHA-256 or SHA-512)", m.Digest)
	}
	vs, err := m.sd.Verify(cms.VerifyOptions{AllowSHA1: legacy, Content: nonNil(m.envelope)})
	if err != nil {
		return fail(BadMessageCheck, "the message signature does not verify: %v", err)
	}
	m.Signer = vs[0].Certificate
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// decrypt opens the pkcsPKIEnvelope with the RA's key, refusing a message
// encrypted to another recipient, and DES or 3DES where not allowed. It
// returns the content and the cipher, to answer in the same one.
func (m *message) decrypt(ra *RA, legacy bool) ([]byte, asn1.ObjectIdentifier, *Failure) {
	if len(m.envelope) == 0 {
		return nil, nil, fail(BadRequest, "the message has no pkcsPKIEnvelope")
	}
	env, err := cms.ParseEnvelope(m.envelope)
	if err != nil {
		return nil, nil, fail(BadMessageCheck, "the pkcsPKIEnvelope is not an EnvelopedData: %v", err)
	}
	c := env.ContentCipher()
	if !c.Equal(cms.OIDAES128CBC) && !c.Equal(cms.OIDAES256CBC) && !(legacy && (c.Equal(cms.OIDDESCBC) || c.Equal(cms.OIDDESEDE3CBC))) {
		return nil, nil, fail(BadAlg, "content encryption %s is not accepted here (use AES-128-CBC or AES-256-CBC)", cms.OIDName(c))
	}
	plain, err := env.DecryptWith(ra.Key, ra.Cert, cms.DecryptOptions{Legacy: legacy})
	if errors.Is(err, cms.ErrNoRecipient) {
		return nil, nil, fail(BadMessageCheck, "the message is not encrypted to this RA's certificate")
	}
	if err != nil {
		return nil, nil, fail(BadMessageCheck, "the pkcsPKIEnvelope does not decrypt: %v", err)
	}
	return plain, c, nil
}

// reply is what a CertRep says.
type reply struct {
	Status  PKIStatus
	Fail    FailInfo
	Content []byte // degenerate PKCS#7 to encrypt, for SUCCESS
	Cipher  asn1.ObjectIdentifier
}

// certRep signs the CertRep answering m with the RA's key: the same
// transactionID, a fresh senderNonce, the request's senderNonce as
// recipientNonce (RFC 8894 §3.2.1.5), and for SUCCESS the content
// encrypted to the requester's certificate in the request's cipher.
func certRep(ra *RA, m *message, r reply) ([]byte, error) {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	attrs := []cms.Attribute{
		{Type: oidMessageType, Value: printable(strconv.Itoa(int(CertRep)))},
		{Type: oidPKIStatus, Value: printable(strconv.Itoa(int(r.Status)))},
		{Type: oidTransactionID, Value: printable(m.TransactionID)},
		{Type: oidSenderNonce, Value: nonce},
		{Type: oidRecipientNonce, Value: m.SenderNonce},
	}
	if r.Status == StatusFailure {
		attrs = append(attrs, cms.Attribute{Type: oidFailInfo, Value: printable(strconv.Itoa(int(r.Fail)))})
	}
	var content []byte
	opts := cms.SignOptions{Signer: ra.Signer, Certificate: ra.Cert, Attributes: attrs, Detached: true}
	if r.Status == StatusSuccess {
		env, err := cms.EncryptTo(rand.Reader, r.Content, []cms.Recipient{{Certificate: m.Signer}},
			cms.EncryptOptions{RSAPKCS1v15: true, ContentCipher: r.Cipher})
		if err != nil {
			return nil, err
		}
		content, opts.Detached = env, false
	}
	return cms.Sign(rand.Reader, content, opts)
}

// printable is a PrintableString, or a UTF8String for text that is not
// (a transactionID is echoed as the client sent it).
func printable(s string) asn1.RawValue {
	tag := asn1.TagPrintableString
	for _, r := range s {
		if !isPrintable(r) {
			tag = asn1.TagUTF8String
			break
		}
	}
	return asn1.RawValue{Tag: tag, Bytes: []byte(s)}
}

func isPrintable(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == ' ' || r == '\'' ||
		r == '(' || r == ')' || r == '+' || r == ',' || r == '-' || r == '.' || r == '/' || r == ':' || r == '=' || r == '?'
}

// issuerAndSubject is CertPoll's content (RFC 8894 §3.3.3).
type issuerAndSubject struct {
	Issuer  asn1.RawValue
	Subject asn1.RawValue
}

// issuerAndSerial is GetCert's and GetCRL's content.
type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial asn1.RawValue
}

// jobKey is the idempotency key of a request: the same transactionID
// under the same label with the same challenge (PKCSReq) or renewing the
// same certificate (RenewalReq) is the same job, however often it is
// sent. The rest counts because clients derive the transactionID from the
// key, which a renewal or a second enrollment may keep.
func jobKey(label, txid, op, detail string) string {
	h := sha256.New()
	for _, s := range []string{txid, op, detail} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return fmt.Sprintf("scep:%s:%s:%x", label, op, h.Sum(nil)[:16])
}

// parseCSR parses and checks a request's CSR.
func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) > x509x.MaxCSR {
		return nil, fmt.Errorf("the CSR is larger than %d bytes", x509x.MaxCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return nil, fmt.Errorf("malformed CSR: %v", err)
	}
	return csr, nil
}

// asn1Unmarshal decodes exactly one DER value.
func asn1Unmarshal(der []byte, v any) error {
	rest, err := asn1.Unmarshal(der, v)
	if err == nil && len(rest) != 0 {
		err = errors.New("trailing data")
	}
	return err
}
