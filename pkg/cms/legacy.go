package cms

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/sha1"
	"encoding/asn1"
	"errors"
)

// Content ciphers an EnvelopedData may name (EncryptOptions.ContentCipher,
// Envelope.ContentCipher). DES and 3DES are legacy: decrypted only with
// DecryptOptions.Legacy, for SCEP clients that know nothing else.
var (
	OIDAES128CBC  = oidAES128CBC
	OIDAES256CBC  = oidAES256CBC
	OIDDESCBC     = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}
	OIDDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
)

// ErrLegacyCipher refuses DES or 3DES content encryption where legacy
// ciphers were not allowed.
var ErrLegacyCipher = errors.New("cms: DES and 3DES content encryption are refused here")

// cbcCipher is a CBC content cipher.
type cbcCipher struct {
	oid    asn1.ObjectIdentifier
	keyLen int
	legacy bool
	block  func(key []byte) (cipher.Block, error)
}

var cbcCiphers = []cbcCipher{
	{oidAES128CBC, 16, false, aes.NewCipher},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}, 24, false, aes.NewCipher},
	{oidAES256CBC, 32, false, aes.NewCipher},
	{OIDDESCBC, 8, true, des.NewCipher},
	{OIDDESEDE3CBC, 24, true, des.NewTripleDESCipher},
}

func cbcByOID(oid asn1.ObjectIdentifier) (cbcCipher, bool) {
	for _, c := range cbcCiphers {
		if c.oid.Equal(oid) {
			return c, true
		}
	}
	return cbcCipher{}, false
}

// DecryptOptions relax what Decrypt accepts.
type DecryptOptions struct {
	// Legacy accepts DES-CBC and DES-EDE3-CBC content encryption.
	Legacy bool
}

// ContentCipher is the OID of the envelope's content encryption algorithm.
func (e *Envelope) ContentCipher() asn1.ObjectIdentifier {
	return e.eci.ContentEncryptionAlgorithm.Algorithm
}

// Legacy digests and signatures, verified only with
// VerifyOptions.AllowSHA1 (SCEP clients that sign with SHA-1).
var (
	oidSHA1        = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA1WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	digestSHA1     = digestAlg{oidSHA1, "sha1", func(b []byte) []byte { d := sha1.Sum(b); return d[:] }}
)

// digestFor returns the digest of a SignerInfo, SHA-1 only when allowed.
func signerDigest(oid asn1.ObjectIdentifier, allowSHA1 bool) (digestAlg, error) {
	if allowSHA1 && oid.Equal(oidSHA1) {
		return digestSHA1, nil
	}
	return digestByOID(oid)
}

// hashSHA1 is the crypto.Hash of the legacy digest, for PKCS #1 v1.5.
func hashSHA1(d digestAlg) crypto.Hash {
	if d.name == "sha1" {
		return crypto.SHA1
	}
	return 0
}
