package x509x

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
)

// Catalyst hybrid certificates and CRLs (ITU-T X.509 (10/2019), 9.8): the
// subject's alternative public key and the issuer's alternative signature
// travel in three non-critical extensions, so a verifier that knows only
// the primary (classical) algorithm still accepts the certificate.
//
// The alternative signature is computed over the "pre-TBS": the
// TBSCertificate (or TBSCertList) without its signature field and without
// the altSignatureValue extension, DER-encoded. The altSignatureValue
// extension is then added last and the primary signature covers it.
var (
	OIDSubjectAltPublicKeyInfo = asn1.ObjectIdentifier{2, 5, 29, 72}
	OIDAltSignatureAlgorithm   = asn1.ObjectIdentifier{2, 5, 29, 73}
	OIDAltSignatureValue       = asn1.ObjectIdentifier{2, 5, 29, 74}
)

// ErrNotCatalyst is the alternative-signature result for a certificate,
// CRL or CSR that carries no alternative signature.
var ErrNotCatalyst = errors.New("x509x: no alternative (Catalyst) signature")

// AltPublicKey returns the certificate's subjectAltPublicKeyInfo key, or
// nil when it has none.
func AltPublicKey(c *x509.Certificate) (crypto.PublicKey, error) {
	v := extensionValue(c.Extensions, OIDSubjectAltPublicKeyInfo)
	if v == nil {
		return nil, nil
	}
	pub, err := algo.ParsePKIX(v)
	if err != nil {
		return nil, fmt.Errorf("subjectAltPublicKeyInfo: %w", err)
	}
	return pub, nil
}

// IsCatalyst reports whether the certificate carries an alternative
// signature.
func IsCatalyst(c *x509.Certificate) bool {
	return extensionValue(c.Extensions, OIDAltSignatureValue) != nil
}

func crlIsCatalyst(crl *x509.RevocationList) bool {
	return extensionValue(crl.Extensions, OIDAltSignatureValue) != nil
}

func extensionValue(exts []pkix.Extension, oid asn1.ObjectIdentifier) []byte {
	for _, e := range exts {
		if e.Id.Equal(oid) {
			return e.Value
		}
	}
	return nil
}

// tbsParts is a to-be-signed structure split into its elements.
type tbsParts struct {
	fields [][]byte
	sigIdx int // the signature AlgorithmIdentifier
	extIdx int // the extensions wrapper, -1 when absent
	extTag cbasn1.Tag
}

// parseCertTBS splits a TBSCertificate.
func parseCertTBS(tbs []byte) (*tbsParts, error) {
	fields, err := splitSequence(tbs, cbasn1.SEQUENCE)
	if err != nil {
		return nil, fmt.Errorf("TBSCertificate: %v", err)
	}
	p := &tbsParts{fields: fields, sigIdx: 1, extIdx: -1, extTag: tagCertExtensions}
	if len(fields) > 0 && tagOf(fields[0]) == tagCertVersion {
		p.sigIdx = 2
	}
	if len(fields) < p.sigIdx+5 {
		return nil, errors.New("TBSCertificate: too few fields")
	}
	if last := len(fields) - 1; tagOf(fields[last]) == tagCertExtensions {
		p.extIdx = last
	}
	return p, nil
}

// parseCRLTBS splits a TBSCertList.
func parseCRLTBS(tbs []byte) (*tbsParts, error) {
	fields, err := splitSequence(tbs, cbasn1.SEQUENCE)
	if err != nil {
		return nil, fmt.Errorf("TBSCertList: %v", err)
	}
	p := &tbsParts{fields: fields, sigIdx: 0, extIdx: -1, extTag: tagCRLExtensions}
	if len(fields) > 0 && tagOf(fields[0]) == cbasn1.INTEGER {
		p.sigIdx = 1
	}
	if len(fields) < p.sigIdx+3 {
		return nil, errors.New("TBSCertList: too few fields")
	}
	if last := len(fields) - 1; tagOf(fields[last]) == tagCRLExtensions {
		p.extIdx = last
	}
	return p, nil
}

func (p *tbsParts) encode() []byte { return wrap(cbasn1.SEQUENCE, p.fields...) }

func (p *tbsParts) signatureAlgorithm() (algorithmID, error) {
	return parseAlgorithmID(p.fields[p.sigIdx])
}

func (p *tbsParts) extensions() ([][]byte, error) {
	if p.extIdx < 0 {
		return nil, nil
	}
	return extensionsOf(p.fields[p.extIdx], p.extTag)
}

// preTBS encodes the structure without its signature field and with
// extensions exts in place of its own.
func (p *tbsParts) preTBS(exts [][]byte) []byte {
	var fields [][]byte
	for i, f := range p.fields {
		switch i {
		case p.sigIdx:
			continue
		case p.extIdx:
			f = extensionsWrapper(p.extTag, exts)
		}
		fields = append(fields, f)
	}
	return wrap(cbasn1.SEQUENCE, fields...)
}

// addCatalystSignature signs the pre-TBS with alt and appends the
// altSignatureValue extension. The altSignatureAlgorithm extension must
// already be present.
func (p *tbsParts) addCatalystSignature(rand io.Reader, alt algo.Signer, pss bool) error {
	exts, err := p.extensions()
	if err != nil {
		return err
	}
	if p.extIdx < 0 {
		return errors.New("catalyst: no extensions to carry the alternative signature")
	}
	pre := p.preTBS(exts)
	sig, err := signMessage(rand, alt, pre, pss)
	if err != nil {
		return fmt.Errorf("alternative signature: %w", err)
	}
	altAlg, err := signatureAlgorithmFor(alt.Algorithm(), pss)
	if err != nil {
		return err
	}
	if err := verifySignature(alt.Public(), altAlg, pre, sig); err != nil {
		return fmt.Errorf("alternative signer returned an invalid signature: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1BitString(sig)
	p.fields[p.extIdx] = extensionsWrapper(p.extTag, append(exts, extension(OIDAltSignatureValue, b.BytesOrPanic())))
	return nil
}

// verifyCatalystSignature checks the alternative signature of a split
// structure with the issuer's alternative public key.
func (p *tbsParts) verifyCatalystSignature(altPub crypto.PublicKey) error {
	exts, err := p.extensions()
	if err != nil {
		return err
	}
	rest, valueExt, err := withoutExtension(exts, OIDAltSignatureValue)
	if err != nil {
		return err
	}
	if valueExt == nil {
		return ErrNotCatalyst
	}
	var sig asn1.BitString
	if rest, err := asn1.Unmarshal(extensionContent(valueExt), &sig); err != nil || len(rest) != 0 || sig.BitLength%8 != 0 {
		return errors.New("malformed altSignatureValue")
	}
	var algDER []byte
	for _, e := range rest {
		if id, _ := extensionOID(e); id.Equal(OIDAltSignatureAlgorithm) {
			algDER = extensionContent(e)
		}
	}
	if algDER == nil {
		return errors.New("altSignatureValue without altSignatureAlgorithm")
	}
	alg, err := parseAlgorithmID(algDER)
	if err != nil {
		return fmt.Errorf("altSignatureAlgorithm: %v", err)
	}
	if altPub == nil {
		return errors.New("the issuer has no alternative public key (subjectAltPublicKeyInfo)")
	}
	return verifySignature(altPub, alg, p.preTBS(rest), sig.Bytes)
}

// extensionContent returns an Extension's extnValue contents (nil if
// malformed).
func extensionContent(ext []byte) []byte {
	_, _, v := parseExtension(ext)
	return v
}

func parseExtension(ext []byte) (oid asn1.ObjectIdentifier, critical bool, value []byte) {
	s := cryptobyte.String(ext)
	var body cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1ObjectIdentifier(&oid) ||
		!body.ReadOptionalASN1Boolean(&critical, cbasn1.BOOLEAN, false) || !body.ReadASN1Bytes(&value, cbasn1.OCTET_STRING) {
		return nil, false, nil
	}
	return oid, critical, value
}

// VerifyCatalyst checks both signatures on child with parent's two keys and
// reports each: primaryErr for the signature every verifier sees, altErr
// for the alternative one (ErrNotCatalyst when child has none). It checks
// signatures only; CheckSignatureFrom and Verify also check that parent
// may issue certificates.
func VerifyCatalyst(child, parent *x509.Certificate) (primaryErr, altErr error) {
	p, err := parseCertTBS(child.RawTBSCertificate)
	if err != nil {
		return err, err
	}
	primaryErr = verifyPrimary(p, child.RawTBSCertificate, child.Signature, parent)
	if !IsCatalyst(child) {
		return primaryErr, ErrNotCatalyst
	}
	altPub, err := AltPublicKey(parent)
	if err != nil {
		return primaryErr, fmt.Errorf("issuer: %v", err)
	}
	if err := p.verifyCatalystSignature(altPub); err != nil {
		return primaryErr, fmt.Errorf("alternative signature: %w", err)
	}
	return primaryErr, nil
}

// VerifyCatalystCRL is VerifyCatalyst for a CRL.
func VerifyCatalystCRL(crl *x509.RevocationList, issuer *x509.Certificate) (primaryErr, altErr error) {
	p, err := parseCRLTBS(crl.RawTBSRevocationList)
	if err != nil {
		return err, err
	}
	primaryErr = verifyPrimary(p, crl.RawTBSRevocationList, crl.Signature, issuer)
	if !crlIsCatalyst(crl) {
		return primaryErr, ErrNotCatalyst
	}
	altPub, err := AltPublicKey(issuer)
	if err != nil {
		return primaryErr, fmt.Errorf("issuer: %v", err)
	}
	if err := p.verifyCatalystSignature(altPub); err != nil {
		return primaryErr, fmt.Errorf("alternative signature: %w", err)
	}
	return primaryErr, nil
}

// verifyPrimary checks the ordinary signature of a split structure.
func verifyPrimary(p *tbsParts, tbs, sig []byte, issuer *x509.Certificate) error {
	alg, err := p.signatureAlgorithm()
	if err != nil {
		return err
	}
	pub, err := PublicKey(issuer)
	if err != nil {
		return fmt.Errorf("issuer key: %w", err)
	}
	if err := verifySignature(pub, alg, tbs, sig); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	return nil
}

// SignatureAlgorithms names a certificate's signature algorithm and, for a
// Catalyst certificate, its alternative one ("" otherwise), as people read
// them: "ml-dsa-65", "composite-mldsa65-ecdsa-p256", "ecdsa-with-SHA384".
func SignatureAlgorithms(c *x509.Certificate) (primary, alt string) {
	p, err := parseCertTBS(c.RawTBSCertificate)
	if err != nil {
		return "", ""
	}
	if a, err := p.signatureAlgorithm(); err == nil {
		primary = signatureAlgorithmName(a)
	}
	if v := extensionValue(c.Extensions, OIDAltSignatureAlgorithm); v != nil {
		if a, err := parseAlgorithmID(v); err == nil {
			alt = signatureAlgorithmName(a)
		}
	}
	return primary, alt
}
