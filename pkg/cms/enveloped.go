package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/qpki/qpki/pkg/algo"
)

type encryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm algorithmIdentifier
	EncryptedContent           asn1.RawValue `asn1:"optional,tag:0"`
}

type envelopedData struct {
	Version              int
	OriginatorInfo       asn1.RawValue   `asn1:"optional,tag:0"`
	RecipientInfos       []asn1.RawValue `asn1:"set"`
	EncryptedContentInfo encryptedContentInfo
	UnprotectedAttrs     asn1.RawValue `asn1:"optional,tag:1"`
}

type authEnvelopedData struct {
	Version                  int
	OriginatorInfo           asn1.RawValue   `asn1:"optional,tag:0"`
	RecipientInfos           []asn1.RawValue `asn1:"set"`
	AuthEncryptedContentInfo encryptedContentInfo
	AuthAttrs                asn1.RawValue `asn1:"optional,tag:1"`
	MAC                      []byte
	UnauthAttrs              asn1.RawValue `asn1:"optional,tag:2"`
}

type gcmParameters struct {
	Nonce  []byte
	ICVLen int `asn1:"optional,default:12"`
}

// Envelope is a parsed EnvelopedData or AuthEnvelopedData.
type Envelope struct {
	// Auth is true for AuthEnvelopedData.
	Auth        bool
	ContentType asn1.ObjectIdentifier
	// ContentEncryption names the content cipher.
	ContentEncryption string
	Recipients        []RecipientInfo

	eci       encryptedContentInfo
	authAttrs []byte // DER, SET OF tag, for the AAD
	mac       []byte
}

// RecipientInfo describes one recipient, for `cms info` and matching.
type RecipientInfo struct {
	// Kind is "ktri", "kari", "kemri", "kekri", "pwri" or "ori".
	Kind string
	// KeyAlgorithm names the key transport, agreement or KEM algorithm.
	KeyAlgorithm string
	raw          asn1.RawValue
}

// ParseEnvelope parses a BER or DER ContentInfo holding an EnvelopedData
// or an AuthEnvelopedData.
func ParseEnvelope(ber []byte) (*Envelope, error) {
	typ, content, err := parseContentInfo(ber)
	if err != nil {
		return nil, err
	}
	e := &Envelope{}
	var ris []asn1.RawValue
	switch {
	case typ.Equal(OIDEnvelopedData):
		var ed envelopedData
		if rest, err := asn1.Unmarshal(innerOf(content), &ed); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("cms: malformed EnvelopedData: %v", err)
		}
		ris, e.eci = ed.RecipientInfos, ed.EncryptedContentInfo
	case typ.Equal(OIDAuthEnvelopedData):
		var ad authEnvelopedData
		if rest, err := asn1.Unmarshal(innerOf(content), &ad); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("cms: malformed AuthEnvelopedData: %v", err)
		}
		e.Auth = true
		ris, e.eci, e.mac = ad.RecipientInfos, ad.AuthEncryptedContentInfo, ad.MAC
		if len(ad.AuthAttrs.FullBytes) > 0 {
			e.authAttrs = encodeTLV([]byte{0x31}, ad.AuthAttrs.Bytes)
		}
	default:
		return nil, fmt.Errorf("cms: content type %s is not envelopedData or authEnvelopedData", OIDName(typ))
	}
	if len(ris) == 0 {
		return nil, errors.New("cms: no recipients")
	}
	e.ContentType = e.eci.ContentType
	e.ContentEncryption = OIDName(e.eci.ContentEncryptionAlgorithm.Algorithm)
	for _, ri := range ris {
		e.Recipients = append(e.Recipients, describeRecipient(ri))
	}
	return e, nil
}

func describeRecipient(ri asn1.RawValue) RecipientInfo {
	r := RecipientInfo{raw: ri}
	switch {
	case ri.Class == asn1.ClassUniversal && ri.Tag == asn1.TagSequence:
		r.Kind = "ktri"
		var k ktri
		if _, err := asn1.Unmarshal(ri.FullBytes, &k); err == nil {
			r.KeyAlgorithm = OIDName(k.KeyEncryptionAlgorithm.Algorithm)
		}
	case ri.Class == asn1.ClassContextSpecific && ri.Tag == 1:
		r.Kind = "kari"
		var k kari
		if _, err := asn1.Unmarshal(encodeTLV([]byte{0x30}, ri.Bytes), &k); err == nil {
			r.KeyAlgorithm = OIDName(k.KeyEncryptionAlgorithm.Algorithm)
		}
	case ri.Class == asn1.ClassContextSpecific && ri.Tag == 2:
		r.Kind = "kekri"
	case ri.Class == asn1.ClassContextSpecific && ri.Tag == 3:
		r.Kind = "pwri"
	case ri.Class == asn1.ClassContextSpecific && ri.Tag == 4:
		r.Kind = "ori"
		var o otherRecipientInfo
		if _, err := asn1.Unmarshal(encodeTLV([]byte{0x30}, ri.Bytes), &o); err == nil && o.Type.Equal(oidORIKEM) {
			r.Kind = "kemri"
			var k kemri
			if _, err := asn1.Unmarshal(o.Value.FullBytes, &k); err == nil {
				r.KeyAlgorithm = OIDName(k.KEM.Algorithm)
			}
		}
	default:
		r.Kind = "unknown"
	}
	return r
}

// ErrNoRecipient says that the message is not encrypted to the given key.
var ErrNoRecipient = errors.New("cms: the message has no recipient for this key and certificate")

// Decrypt recovers the content of an EnvelopedData or AuthEnvelopedData
// with the recipient's private key. cert, when given, selects the
// RecipientInfo; without it each RecipientInfo the key could open is tried.
func Decrypt(ber []byte, key crypto.PrivateKey, cert *x509.Certificate) ([]byte, error) {
	e, err := ParseEnvelope(ber)
	if err != nil {
		return nil, err
	}
	return e.Decrypt(key, cert)
}

// Decrypt is the package function Decrypt on a parsed envelope.
func (e *Envelope) Decrypt(key crypto.PrivateKey, cert *x509.Certificate) ([]byte, error) {
	return e.DecryptWith(key, cert, DecryptOptions{})
}

// DecryptWith is Decrypt with options (legacy ciphers).
func (e *Envelope) DecryptWith(key crypto.PrivateKey, cert *x509.Certificate, o DecryptOptions) ([]byte, error) {
	if c, ok := cbcByOID(e.ContentCipher()); ok && c.legacy && !o.Legacy {
		return nil, ErrLegacyCipher
	}
	if cert != nil {
		pub, err := algo.PublicKey(key)
		if err != nil {
			return nil, err
		}
		spki, err := algo.MarshalPKIX(pub)
		if err != nil || !bytes.Equal(spki, cert.RawSubjectPublicKeyInfo) {
			return nil, errors.New("cms: the private key is not the certificate's")
		}
	}
	cekLen, err := contentKeySize(e.eci.ContentEncryptionAlgorithm.Algorithm)
	if err != nil {
		return nil, err
	}
	var errs []error
	tried := false
	for _, r := range e.Recipients {
		cek, err := r.unwrap(key, cert, cekLen)
		if errors.Is(err, errNotForUs) {
			continue
		}
		tried = true
		if err != nil {
			errs = append(errs, err)
			continue
		}
		plain, err := e.decryptContent(cek)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return plain, nil
	}
	if !tried {
		return nil, ErrNoRecipient
	}
	return nil, errors.Join(errs...)
}

// errNotForUs marks a RecipientInfo for another key or of another kind.
var errNotForUs = errors.New("not for this key")

func (r RecipientInfo) unwrap(key crypto.PrivateKey, cert *x509.Certificate, cekLen int) ([]byte, error) {
	switch r.Kind {
	case "ktri":
		return unwrapKTRI(r.raw, key, cert, cekLen)
	case "kari":
		return unwrapKARI(r.raw, key, cert)
	case "kemri":
		return unwrapKEMRI(r.raw, key, cert)
	}
	return nil, errNotForUs
}

// ridMatches reports whether a RecipientIdentifier names cert; with no
// certificate every identifier matches.
func ridMatches(rid asn1.RawValue, cert *x509.Certificate) bool {
	if cert == nil {
		return true
	}
	if rid.Class == asn1.ClassContextSpecific && rid.Tag == 0 {
		return len(cert.SubjectKeyId) > 0 && bytes.Equal(rid.Bytes, cert.SubjectKeyId)
	}
	var ias issuerAndSerial
	if _, err := asn1.Unmarshal(rid.FullBytes, &ias); err != nil {
		return false
	}
	return bytes.Equal(ias.Issuer.FullBytes, cert.RawIssuer) && bytes.Equal(ias.Serial.FullBytes, mustRaw(cert.SerialNumber).FullBytes)
}

// contentKeySize is the key length of a content cipher.
func contentKeySize(oid asn1.ObjectIdentifier) (int, error) {
	if c, ok := cbcByOID(oid); ok {
		return c.keyLen, nil
	}
	switch {
	case oid.Equal(oidAES128GCM):
		return 16, nil
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 26}):
		return 24, nil
	case oid.Equal(oidAES256GCM):
		return 32, nil
	}
	return 0, fmt.Errorf("cms: unsupported content encryption algorithm %s", oid)
}

func isGCM(oid asn1.ObjectIdentifier) bool {
	return oid.Equal(oidAES128GCM) || oid.Equal(oidAES256GCM) || oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 26})
}

// decryptContent decrypts the content with the content-encryption key.
func (e *Envelope) decryptContent(cek []byte) ([]byte, error) {
	alg := e.eci.ContentEncryptionAlgorithm
	n, err := contentKeySize(alg.Algorithm)
	if err != nil {
		return nil, err
	}
	if len(cek) != n {
		return nil, errUnwrap
	}
	newBlock := aes.NewCipher
	if c, ok := cbcByOID(alg.Algorithm); ok {
		newBlock = c.block
	}
	block, err := newBlock(cek)
	if err != nil {
		return nil, err
	}
	ct, err := implicitOctets(e.eci.EncryptedContent)
	if err != nil {
		return nil, err
	}
	if isGCM(alg.Algorithm) != e.Auth {
		return nil, fmt.Errorf("cms: %s content encryption in %s", OIDName(alg.Algorithm), map[bool]string{true: "AuthEnvelopedData", false: "EnvelopedData"}[e.Auth])
	}
	if e.Auth {
		var p gcmParameters
		if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return nil, errors.New("cms: malformed GCM parameters")
		}
		if p.ICVLen < 12 || p.ICVLen > 16 || len(e.mac) != p.ICVLen || len(p.Nonce) == 0 || len(p.Nonce) > 64 {
			return nil, errors.New("cms: unsupported GCM nonce or tag length")
		}
		aead, err := cipher.NewGCMWithNonceSize(block, len(p.Nonce))
		if err != nil {
			return nil, err
		}
		if p.ICVLen != 16 {
			if aead, err = newGCMWithTagSize(block, len(p.Nonce), p.ICVLen); err != nil {
				return nil, err
			}
		}
		plain, err := aead.Open(nil, p.Nonce, append(bytes.Clone(ct), e.mac...), e.authAttrs)
		if err != nil {
			return nil, errors.New("cms: authentication failed: the message was changed or the key is wrong")
		}
		return plain, nil
	}
	bs := block.BlockSize()
	var iv []byte
	if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 || len(iv) != bs {
		return nil, errors.New("cms: malformed CBC parameters")
	}
	if len(ct) == 0 || len(ct)%bs != 0 {
		return nil, errors.New("cms: encrypted content is not a whole number of cipher blocks")
	}
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ct)
	pad := int(plain[len(plain)-1])
	ok := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, bs)
	if ok == 1 {
		for _, b := range plain[len(plain)-pad:] {
			ok &= subtle.ConstantTimeByteEq(b, byte(pad))
		}
	}
	if ok != 1 {
		return nil, errors.New("cms: bad padding: wrong key or tampered message")
	}
	return plain[:len(plain)-pad], nil
}

func (r Recipient) name() string {
	if r.Certificate != nil {
		return r.Certificate.Subject.String()
	}
	return fmt.Sprintf("key %x", r.KeyID)
}

// implicitOctets returns the contents of an [n] IMPLICIT OCTET STRING,
// which BER writers may send constructed (a series of OCTET STRINGs).
func implicitOctets(rv asn1.RawValue) ([]byte, error) {
	if !rv.IsCompound {
		return rv.Bytes, nil
	}
	var out []byte
	rest := rv.Bytes
	for len(rest) > 0 {
		var seg []byte
		var err error
		if rest, err = asn1.Unmarshal(rest, &seg); err != nil {
			return nil, errors.New("cms: malformed constructed encrypted content")
		}
		out = append(out, seg...)
	}
	return out, nil
}

func newGCMWithTagSize(block cipher.Block, nonceSize, tagSize int) (cipher.AEAD, error) {
	if nonceSize != 12 {
		return nil, errors.New("cms: GCM with a short tag needs a 12-byte nonce")
	}
	return cipher.NewGCMWithTagSize(block, tagSize)
}

// EncryptOptions chooses the content protection.
type EncryptOptions struct {
	// Auth makes an AuthEnvelopedData with AES-256-GCM; otherwise an
	// EnvelopedData with AES-256-CBC.
	Auth bool
	// RSAPKCS1v15 transports the key to RSA recipients with PKCS #1 v1.5
	// instead of RSAES-OAEP (SHA-256), for old readers.
	RSAPKCS1v15 bool
	// ContentType of the content; id-data when nil.
	ContentType asn1.ObjectIdentifier
	// ContentCipher is the CBC content cipher (OIDAES128CBC, OIDAES256CBC,
	// or for a legacy SCEP client answered in its own cipher, OIDDESCBC or
	// OIDDESEDE3CBC); AES-256-CBC when nil. Ignored with Auth.
	ContentCipher asn1.ObjectIdentifier
}

// Encrypt makes an EnvelopedData (or AuthEnvelopedData) of content for
// each recipient certificate: KTRI for RSA keys, KARI (ephemeral-static
// ECDH, X9.63 SHA-256 KDF, AES-256 wrap) for EC keys, KEMRI (HKDF-SHA256,
// AES-256 wrap) for ML-KEM and composite ML-KEM keys.
func Encrypt(rand io.Reader, content []byte, recipients []*x509.Certificate, opts EncryptOptions) ([]byte, error) {
	rs := make([]Recipient, len(recipients))
	for i, c := range recipients {
		rs[i] = Recipient{Certificate: c}
	}
	return EncryptTo(rand, content, rs, opts)
}

// Recipient is a key to encrypt to: a certificate, identified by its
// issuer and serial number, or a bare public key identified by a subject
// key identifier (as EST's AsymmetricDecryptKeyIdentifier names one).
type Recipient struct {
	Certificate *x509.Certificate
	PublicKey   crypto.PublicKey
	KeyID       []byte
}

// EncryptTo is Encrypt for recipients given as certificates or keys.
func EncryptTo(rand io.Reader, content []byte, recipients []Recipient, opts EncryptOptions) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, errors.New("cms: no recipients")
	}
	ctype := opts.ContentType
	if ctype == nil {
		ctype = OIDData
	}
	cbc, _ := cbcByOID(oidAES256CBC)
	if opts.ContentCipher != nil && !opts.Auth {
		var ok bool
		if cbc, ok = cbcByOID(opts.ContentCipher); !ok {
			return nil, fmt.Errorf("cms: unsupported content cipher %s", OIDName(opts.ContentCipher))
		}
	}
	cek := make([]byte, 32)
	if !opts.Auth {
		cek = cek[:cbc.keyLen]
	}
	if _, err := io.ReadFull(rand, cek); err != nil {
		return nil, err
	}
	defer clear(cek)
	version := 0
	var ris []asn1.RawValue
	for _, r := range recipients {
		ri, v, err := wrapFor(rand, r, cek, opts)
		if err != nil {
			return nil, fmt.Errorf("cms: recipient %s: %w", r.name(), err)
		}
		version = max(version, v)
		ris = append(ris, ri)
	}
	var block cipher.Block
	var err error
	if opts.Auth {
		if block, err = aes.NewCipher(cek); err != nil {
			return nil, err
		}
		nonce := make([]byte, 12)
		if _, err := io.ReadFull(rand, nonce); err != nil {
			return nil, err
		}
		aead, _ := cipher.NewGCM(block)
		sealed := aead.Seal(nil, nonce, content, nil)
		ct, tag := sealed[:len(content)], sealed[len(content):]
		ad := authEnvelopedData{
			Version:        0,
			RecipientInfos: ris,
			AuthEncryptedContentInfo: encryptedContentInfo{
				ContentType:                ctype,
				ContentEncryptionAlgorithm: algorithmIdentifier{Algorithm: oidAES256GCM, Parameters: mustRaw(gcmParameters{Nonce: nonce, ICVLen: 16})},
				EncryptedContent:           asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: ct},
			},
			MAC: tag,
		}
		inner, err := asn1.Marshal(ad)
		if err != nil {
			return nil, err
		}
		return wrapContentInfo(OIDAuthEnvelopedData, inner)
	}
	if block, err = cbc.block(cek); err != nil {
		return nil, err
	}
	iv := make([]byte, block.BlockSize())
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, err
	}
	pad := len(iv) - len(content)%len(iv)
	plain := append(bytes.Clone(content), bytes.Repeat([]byte{byte(pad)}, pad)...)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)
	clear(plain)
	ed := envelopedData{
		Version:        version,
		RecipientInfos: ris,
		EncryptedContentInfo: encryptedContentInfo{
			ContentType:                ctype,
			ContentEncryptionAlgorithm: algorithmIdentifier{Algorithm: cbc.oid, Parameters: mustRaw(iv)},
			EncryptedContent:           asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: ct},
		},
	}
	inner, err := asn1.Marshal(ed)
	if err != nil {
		return nil, err
	}
	return wrapContentInfo(OIDEnvelopedData, inner)
}
