package est

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/qpki/qpki/pkg/algo"
)

// Object identifiers of the encrypted server-generated key (RFC 5652,
// RFC 5958, RFC 3565, RFC 4055, RFC 5753, RFC 8419, RFC 9882).
var (
	oidKeyPackage      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 2, 1, 2, 78, 5} // id-ct-KP-aKeyPackage
	oidAttrContentType = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidAttrDigest      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidAES256CBC       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidAES256Wrap      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}
	oidRSAESOAEP       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	oidMGF1            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECDHSHA256KDF   = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1} // dhSinglePass-stdDH-sha256kdf-scheme
)

// recipient is the client key a server-generated key is encrypted to.
type recipient struct {
	keyID []byte // the AsymmetricDecryptKeyIdentifier, used as the rid
	pub   crypto.PublicKey
}

// keyIDs are the identifiers a client may give for a public key: RFC 5280
// §4.2.1.2 method 1 (SHA-1 of the key bits) and RFC 7093 method 1 (the
// leftmost 160 bits of their SHA-256).
func keyIDs(spki []byte) [][]byte {
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		Key       asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil
	}
	s1 := sha1.Sum(info.Key.Bytes)
	s2 := sha256.Sum256(info.Key.Bytes)
	return [][]byte{s1[:], s2[:20]}
}

// findRecipient finds the public key an AsymmetricDecryptKeyIdentifier
// names among the client's keys: its TLS certificate's (by
// subjectKeyIdentifier or computed) and the CSR's own.
func findRecipient(id []byte, clientCert *x509.Certificate, csr *x509.CertificateRequest) (*recipient, error) {
	type cand struct {
		pub  crypto.PublicKey
		spki []byte
		ski  []byte
	}
	var cands []cand
	if clientCert != nil {
		cands = append(cands, cand{clientCert.PublicKey, clientCert.RawSubjectPublicKeyInfo, clientCert.SubjectKeyId})
	}
	if csr != nil && csr.PublicKey != nil {
		cands = append(cands, cand{csr.PublicKey, csr.RawSubjectPublicKeyInfo, nil})
	}
	for _, c := range cands {
		ids := keyIDs(c.spki)
		if len(c.ski) > 0 {
			ids = append(ids, c.ski)
		}
		for _, k := range ids {
			if bytes.Equal(k, id) {
				switch c.pub.(type) {
				case *rsa.PublicKey, *ecdsa.PublicKey:
					return &recipient{keyID: id, pub: c.pub}, nil
				}
				return nil, fmt.Errorf("the key named by AsymmetricDecryptKeyIdentifier is a %T; an RSA or EC key is needed to encrypt to", c.pub)
			}
		}
	}
	return nil, errors.New("no key of the client matches the AsymmetricDecryptKeyIdentifier (give the subject key identifier of the TLS client certificate's key or the CSR's key)")
}

// encryptedKey builds the server-generated-key part (RFC 7030 §4.4.2): an
// EnvelopedData to the client's key whose content is a SignedData over an
// AsymmetricKeyPackage (RFC 5958) holding the private key. The key
// generator's signature is made with the generated key itself and names
// the issued certificate (included): the CA's signature on that
// certificate is what authenticates the package.
func encryptedKey(rnd io.Reader, rcpt *recipient, priv crypto.Signer, pkcs8 []byte, cert *x509.Certificate) ([]byte, error) {
	pkg, err := asn1.Marshal([]asn1.RawValue{{FullBytes: pkcs8}})
	if err != nil {
		return nil, err
	}
	signed, err := signKeyPackage(rnd, priv, cert, pkg)
	if err != nil {
		return nil, err
	}
	return envelop(rnd, rcpt, oidSignedData, signed)
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

type signerInfo struct {
	Version            int
	SID                issuerAndSerial
	DigestAlgorithm    algorithmIdentifier
	SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
	SignatureAlgorithm algorithmIdentifier
	Signature          []byte
}

// encapContent is EncapsulatedContentInfo; EContent is the [0] EXPLICIT
// wrapper (encoding/asn1 writes a RawValue as given, ignoring tags).
type encapContent struct {
	EContentType asn1.ObjectIdentifier
	EContent     asn1.RawValue `asn1:"optional"`
}

type signedData struct {
	Version          int
	DigestAlgorithms []algorithmIdentifier `asn1:"set"`
	EncapContentInfo encapContent
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	SignerInfos      []signerInfo  `asn1:"set"`
}

// cmsSignature returns the digest and signature algorithms a key signs
// CMS content with, and the hash of the content digest.
func cmsSignature(a algo.Algorithm) (digest, sig asn1.ObjectIdentifier, h crypto.Hash, err error) {
	h = algo.HashFor(a)
	switch a.Family() {
	case algo.FamilyECDSA:
		return map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA256: oidSHA256, crypto.SHA384: oidSHA384, crypto.SHA512: oidSHA512}[h],
			ecdsaSigOIDs[a], h, nil
	case algo.FamilyRSA:
		if h == crypto.SHA384 {
			return oidSHA384, oidSHA384WithRSA, h, nil
		}
		return oidSHA256, oidSHA256WithRSA, h, nil
	case algo.FamilyEd25519:
		return oidSHA512, oidEd25519, crypto.SHA512, nil // RFC 8419
	case algo.FamilyMLDSA:
		return oidSHA512, a.Info().OID, crypto.SHA512, nil // RFC 9882
	}
	return nil, nil, 0, fmt.Errorf("encrypted delivery of %s keys is not supported", a)
}

// signKeyPackage wraps content in a SignedData signed by priv.
func signKeyPackage(rnd io.Reader, priv crypto.Signer, cert *x509.Certificate, content []byte) ([]byte, error) {
	a, err := algo.Of(priv.Public())
	if err != nil {
		return nil, err
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		return nil, err
	}
	digestOID, sigOID, h, err := cmsSignature(s.Algorithm())
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(content)
	attrs := []asn1.RawValue{
		mustRaw(attribute{oidAttrContentType, []asn1.RawValue{mustRaw(oidKeyPackage)}}),
		mustRaw(attribute{oidAttrDigest, []asn1.RawValue{mustRaw(d.Sum(nil))}}),
	}
	// The signature covers the attributes as a DER SET OF; in SignerInfo
	// they are [0] IMPLICIT.
	set, err := asn1.MarshalWithParams(attrs, "set")
	if err != nil {
		return nil, err
	}
	sig, err := algo.SignDigest(s, rnd, set, false)
	if err != nil {
		return nil, err
	}
	var setBody asn1.RawValue
	if _, err := asn1.Unmarshal(set, &setBody); err != nil {
		return nil, err
	}
	econtent, err := asn1.Marshal(content)
	if err != nil {
		return nil, err
	}
	sd := signedData{
		Version:          3, // eContentType is not id-data
		DigestAlgorithms: []algorithmIdentifier{{Algorithm: digestOID}},
		EncapContentInfo: encapContent{EContentType: oidKeyPackage, EContent: explicit0(econtent)},
		Certificates:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: cert.Raw},
		SignerInfos: []signerInfo{{
			Version:            1,
			SID:                issuerAndSerial{Issuer: asn1.RawValue{FullBytes: cert.RawIssuer}, Serial: cert.SerialNumber},
			DigestAlgorithm:    algorithmIdentifier{Algorithm: digestOID},
			SignedAttrs:        asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: setBody.Bytes},
			SignatureAlgorithm: algorithmIdentifier{Algorithm: sigOID},
			Signature:          sig,
		}},
	}
	return asn1.Marshal(sd)
}

type encryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm algorithmIdentifier
	EncryptedContent           asn1.RawValue `asn1:"optional,tag:0"`
}

type envelopedData struct {
	Version              int
	RecipientInfos       []asn1.RawValue `asn1:"set"`
	EncryptedContentInfo encryptedContentInfo
}

type keyTransRecipientInfo struct {
	Version                int
	RID                    asn1.RawValue // subjectKeyIdentifier [0] IMPLICIT
	KeyEncryptionAlgorithm algorithmIdentifier
	EncryptedKey           []byte
}

type originatorPublicKey struct {
	Algorithm algorithmIdentifier
	PublicKey asn1.BitString
}

type recipientEncryptedKey struct {
	RID          asn1.RawValue // rKeyId [0] IMPLICIT RecipientKeyIdentifier
	EncryptedKey []byte
}

type keyAgreeRecipientInfo struct {
	Version                int
	Originator             asn1.RawValue // [0] EXPLICIT OriginatorIdentifierOrKey
	KeyEncryptionAlgorithm algorithmIdentifier
	RecipientEncryptedKeys []recipientEncryptedKey
}

// eccCMSSharedInfo is RFC 5753's KDF input.
type eccCMSSharedInfo struct {
	KeyInfo     algorithmIdentifier
	SuppPubInfo []byte `asn1:"explicit,tag:2"`
}

// envelop encrypts content for the recipient: AES-256-CBC content
// encryption, the key transported with RSAES-OAEP (SHA-256) to an RSA key
// or agreed by ephemeral-static ECDH with the X9.63 SHA-256 KDF and
// AES-256 key wrap to an EC key.
func envelop(rnd io.Reader, rcpt *recipient, contentType asn1.ObjectIdentifier, content []byte) ([]byte, error) {
	cek := make([]byte, 32)
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(rnd, cek); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(content)%aes.BlockSize
	plain := append(bytes.Clone(content), bytes.Repeat([]byte{byte(pad)}, pad)...)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)
	clear(plain)

	var ri asn1.RawValue
	switch pub := rcpt.pub.(type) {
	case *rsa.PublicKey:
		ek, err := rsa.EncryptOAEP(sha256.New(), rnd, pub, cek, nil)
		if err != nil {
			return nil, err
		}
		params, err := asn1.Marshal(struct {
			Hash algorithmIdentifier `asn1:"explicit,tag:0"`
			MGF  algorithmIdentifier `asn1:"explicit,tag:1"`
		}{algorithmIdentifier{Algorithm: oidSHA256}, algorithmIdentifier{Algorithm: oidMGF1, Parameters: mustRaw(algorithmIdentifier{Algorithm: oidSHA256})}})
		if err != nil {
			return nil, err
		}
		ri = mustRaw(keyTransRecipientInfo{
			Version:                2,
			RID:                    asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: rcpt.keyID},
			KeyEncryptionAlgorithm: algorithmIdentifier{Algorithm: oidRSAESOAEP, Parameters: asn1.RawValue{FullBytes: params}},
			EncryptedKey:           ek,
		})
	case *ecdsa.PublicKey:
		peer, err := pub.ECDH()
		if err != nil {
			return nil, err
		}
		eph, err := peer.Curve().GenerateKey(rnd)
		if err != nil {
			return nil, err
		}
		z, err := eph.ECDH(peer)
		if err != nil {
			return nil, err
		}
		wrapAlg := algorithmIdentifier{Algorithm: oidAES256Wrap}
		shared, err := asn1.Marshal(eccCMSSharedInfo{KeyInfo: wrapAlg, SuppPubInfo: []byte{0, 0, 1, 0}}) // 256 bits
		if err != nil {
			return nil, err
		}
		kek := x963KDF(z, shared, 32)
		wrapped, err := aesKeyWrap(kek, cek)
		if err != nil {
			return nil, err
		}
		origKey, err := asn1.Marshal(originatorPublicKey{
			Algorithm: algorithmIdentifier{Algorithm: oidECPublicKey},
			PublicKey: asn1.BitString{Bytes: eph.PublicKey().Bytes(), BitLength: 8 * len(eph.PublicKey().Bytes())},
		})
		if err != nil {
			return nil, err
		}
		rkeyID, err := asn1.Marshal(struct{ SKI []byte }{rcpt.keyID})
		if err != nil {
			return nil, err
		}
		var rkeyIDBody asn1.RawValue
		asn1.Unmarshal(rkeyID, &rkeyIDBody)
		kari, err := asn1.Marshal(keyAgreeRecipientInfo{
			Version: 3,
			// [0] EXPLICIT { originatorKey [1] IMPLICIT OriginatorPublicKey }
			Originator:             explicit0(mustRaw(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: innerBytes(origKey)}).FullBytes),
			KeyEncryptionAlgorithm: algorithmIdentifier{Algorithm: oidECDHSHA256KDF, Parameters: mustRaw(wrapAlg)},
			RecipientEncryptedKeys: []recipientEncryptedKey{{
				RID:          asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: rkeyIDBody.Bytes},
				EncryptedKey: wrapped,
			}},
		})
		if err != nil {
			return nil, err
		}
		// KeyAgreeRecipientInfo is [1] IMPLICIT in RecipientInfo.
		ri = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: innerBytes(kari)}
	default:
		return nil, fmt.Errorf("cannot encrypt to a %T", rcpt.pub)
	}
	ivDER, _ := asn1.Marshal(iv)
	ed := envelopedData{
		Version:        2, // a recipient identified by key identifier
		RecipientInfos: []asn1.RawValue{ri},
		EncryptedContentInfo: encryptedContentInfo{
			ContentType:                contentType,
			ContentEncryptionAlgorithm: algorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivDER}},
			EncryptedContent:           asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: ct},
		},
	}
	inner, err := asn1.Marshal(ed)
	if err != nil {
		return nil, err
	}
	return wrapContentInfo(oidEnvelopedData, inner)
}

// explicit0 wraps DER in a [0] EXPLICIT tag.
func explicit0(der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: der}
}

// innerBytes strips the tag and length of a DER element.
func innerBytes(der []byte) []byte {
	var rv asn1.RawValue
	asn1.Unmarshal(der, &rv)
	return rv.Bytes
}

// x963KDF is ANSI X9.63's KDF with SHA-256 (RFC 5753 §3.1.1).
func x963KDF(z, sharedInfo []byte, n int) []byte {
	var out []byte
	for counter := uint32(1); len(out) < n; counter++ {
		h := sha256.New()
		h.Write(z)
		binary.Write(h, binary.BigEndian, counter)
		h.Write(sharedInfo)
		out = h.Sum(out)
	}
	return out[:n]
}

// aesKeyWrap is RFC 3394's key wrap with the default IV.
func aesKeyWrap(kek, key []byte) ([]byte, error) {
	if len(key)%8 != 0 || len(key) < 16 {
		return nil, errors.New("key wrap: the key must be a multiple of 64 bits")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(key) / 8
	a := []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}
	r := bytes.Clone(key)
	buf := make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[8*i:8*i+8])
			block.Encrypt(buf, buf)
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[8*i:], buf[8:])
		}
	}
	return append(a, r...), nil
}
