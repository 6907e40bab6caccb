package est

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/cms"
)

// oidKeyPackage is id-ct-KP-aKeyPackage (RFC 5958), the content type of
// the signed server-generated key.
var oidKeyPackage = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 2, 1, 2, 78, 5}

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
	a, err := algo.Of(priv.Public())
	if err != nil {
		return nil, err
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		return nil, err
	}
	signed, err := cms.Sign(rnd, pkg, cms.SignOptions{Signer: s, Certificate: cert, ContentType: oidKeyPackage})
	if err != nil {
		return nil, err
	}
	// The EnvelopedData encloses the bare SignedData (RFC 5652 §6.1).
	_, inner, err := cms.Unwrap(signed)
	if err != nil {
		return nil, err
	}
	return cms.EncryptTo(rnd, inner, []cms.Recipient{{PublicKey: rcpt.pub, KeyID: rcpt.keyID}}, cms.EncryptOptions{ContentType: cms.OIDSignedData})
}
