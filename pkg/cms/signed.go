package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

type signerInfo struct {
	Version            int
	SID                asn1.RawValue
	DigestAlgorithm    algorithmIdentifier
	SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
	SignatureAlgorithm algorithmIdentifier
	Signature          []byte
	UnsignedAttrs      asn1.RawValue `asn1:"optional,tag:1"`
}

type encapContent struct {
	EContentType asn1.ObjectIdentifier
	EContent     asn1.RawValue `asn1:"optional,tag:0"` // [0] EXPLICIT OCTET STRING, kept whole
}

type signedData struct {
	Version          int
	DigestAlgorithms []algorithmIdentifier `asn1:"set"`
	EncapContentInfo encapContent
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos      []signerInfo  `asn1:"set"`
}

// SignOptions says who signs and what goes along.
type SignOptions struct {
	// Signer makes the signature; Certificate is its certificate.
	Signer      algo.Signer
	Certificate *x509.Certificate
	// Chain holds further certificates to include (intermediates).
	Chain []*x509.Certificate
	// ContentType of the content; id-data when nil.
	ContentType asn1.ObjectIdentifier
	// Detached leaves the content out of the message.
	Detached bool
	// SigningTime is the signingTime attribute; now when zero.
	SigningTime time.Time
	// Attributes are further signed attributes (SCEP's messageType,
	// transactionID, nonces...).
	Attributes []Attribute
}

// Attribute is a signed attribute with one value: an asn1.RawValue as
// it is, anything else as encoding/asn1 marshals it.
type Attribute struct {
	Type  asn1.ObjectIdentifier
	Value any
}

// signatureAlgorithm is the SignerInfo signatureAlgorithm of a signer.
func signatureAlgorithm(a algo.Algorithm) (algorithmIdentifier, error) {
	info, ok := algo.Lookup(a)
	if !ok || !info.CanSign {
		return algorithmIdentifier{}, fmt.Errorf("cms: %s cannot sign", a)
	}
	if info.SignRefused != nil {
		return algorithmIdentifier{}, fmt.Errorf("cms: %s: %w", a, info.SignRefused)
	}
	switch info.Family {
	case algo.FamilyECDSA:
		return algorithmIdentifier{Algorithm: map[crypto.Hash]asn1.ObjectIdentifier{
			crypto.SHA256: oidECDSAWithSHA256, crypto.SHA384: oidECDSAWithSHA384, crypto.SHA512: oidECDSAWithSHA512}[algo.HashFor(a)]}, nil
	case algo.FamilyRSA:
		oid := oidSHA256WithRSA
		if algo.HashFor(a) == crypto.SHA384 {
			oid = oidSHA384WithRSA
		}
		return algorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue}, nil
	case algo.FamilyEd25519:
		return algorithmIdentifier{Algorithm: oidEd25519}, nil
	case algo.FamilyMLDSA, algo.FamilySLHDSA, algo.FamilyComposite:
		return algorithmIdentifier{Algorithm: info.OID}, nil
	}
	return algorithmIdentifier{}, fmt.Errorf("cms: no CMS signature algorithm for %s", a)
}

// Sign makes a SignedData over content with signed attributes
// (contentType, signingTime, CMSAlgorithmProtection, messageDigest),
// identifying the signer by issuer and serial number and carrying its
// certificate and Chain.
func Sign(rand io.Reader, content []byte, opts SignOptions) ([]byte, error) {
	if opts.Signer == nil || opts.Certificate == nil {
		return nil, errors.New("cms: a signer and its certificate are required")
	}
	spki, err := algo.MarshalPKIX(opts.Signer.Public())
	if err != nil || !bytes.Equal(spki, opts.Certificate.RawSubjectPublicKeyInfo) {
		return nil, errors.New("cms: the signer's key is not the certificate's")
	}
	ctype := opts.ContentType
	if ctype == nil {
		ctype = OIDData
	}
	a := opts.Signer.Algorithm()
	sigAlg, err := signatureAlgorithm(a)
	if err != nil {
		return nil, err
	}
	dig := digestFor(a)
	digAlg := algorithmIdentifier{Algorithm: dig.oid}
	when := opts.SigningTime
	if when.IsZero() {
		when = time.Now()
	}
	protection, err := asn1.Marshal(struct {
		Digest algorithmIdentifier
		Sig    asn1.RawValue
	}{digAlg, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: innerOf(mustRaw(sigAlg).FullBytes)}})
	if err != nil {
		return nil, err
	}
	attrs := [][]byte{
		mustRaw(attribute{oidAttrContentType, []asn1.RawValue{mustRaw(ctype)}}).FullBytes,
		mustRaw(attribute{oidAttrSigningTime, []asn1.RawValue{mustRaw(when.UTC())}}).FullBytes,
		mustRaw(attribute{oidAttrAlgProtection, []asn1.RawValue{{FullBytes: protection}}}).FullBytes,
		mustRaw(attribute{oidAttrMessageDigest, []asn1.RawValue{mustRaw(dig.sum(content))}}).FullBytes,
	}
	for _, a := range opts.Attributes {
		v, ok := a.Value.(asn1.RawValue)
		if !ok {
			der, err := asn1.Marshal(a.Value)
			if err != nil {
				return nil, fmt.Errorf("cms: attribute %s: %v", a.Type, err)
			}
			v = asn1.RawValue{FullBytes: der}
		}
		attrs = append(attrs, mustRaw(attribute{a.Type, []asn1.RawValue{v}}).FullBytes)
	}
	slices.SortFunc(attrs, bytes.Compare) // DER SET OF
	body := bytes.Join(attrs, nil)
	// The signature covers the attributes as a SET OF; SignerInfo holds
	// them [0] IMPLICIT.
	sig, err := algo.SignDigest(opts.Signer, rand, encodeTLV([]byte{0x31}, body), false)
	if err != nil {
		return nil, fmt.Errorf("cms: signing: %w", err)
	}
	certs := [][]byte{opts.Certificate.Raw}
	for _, c := range opts.Chain {
		if !bytes.Equal(c.Raw, opts.Certificate.Raw) {
			certs = append(certs, c.Raw)
		}
	}
	slices.SortFunc(certs, bytes.Compare)
	sd := signedData{
		Version:          1,
		DigestAlgorithms: []algorithmIdentifier{digAlg},
		EncapContentInfo: encapContent{EContentType: ctype},
		Certificates:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: bytes.Join(certs, nil)},
		SignerInfos: []signerInfo{{
			Version:            1,
			SID:                sidOf(opts.Certificate),
			DigestAlgorithm:    digAlg,
			SignedAttrs:        asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: body},
			SignatureAlgorithm: sigAlg,
			Signature:          sig,
		}},
	}
	if !ctype.Equal(OIDData) {
		sd.Version = 3
	}
	if !opts.Detached {
		sd.EncapContentInfo.EContent = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustRaw(content).FullBytes}
	}
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return wrapContentInfo(OIDSignedData, inner)
}

func sidOf(c *x509.Certificate) asn1.RawValue {
	return mustRaw(issuerAndSerial{Issuer: asn1.RawValue{FullBytes: c.RawIssuer}, Serial: mustRaw(c.SerialNumber)})
}

// innerOf strips the tag and length of a DER element.
func innerOf(der []byte) []byte {
	_, body, err := splitTLV(der)
	if err != nil {
		return nil
	}
	return body
}

// SignedData is a parsed SignedData.
type SignedData struct {
	ContentType asn1.ObjectIdentifier
	// Content is nil for a detached signature.
	Content      []byte
	Certificates []*x509.Certificate
	Signers      []*Signer
}

// Signer is one SignerInfo.
type Signer struct {
	DigestAlgorithm    string
	SignatureAlgorithm string
	SigningTime        time.Time
	raw                signerInfo
}

// ParseSignedData parses a BER or DER ContentInfo holding a SignedData.
func ParseSignedData(ber []byte) (*SignedData, error) {
	typ, content, err := parseContentInfo(ber)
	if err != nil {
		return nil, err
	}
	if !typ.Equal(OIDSignedData) {
		return nil, fmt.Errorf("cms: content type %s is not signedData", OIDName(typ))
	}
	var sd signedData
	if rest, err := asn1.Unmarshal(innerOf(content), &sd); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("cms: malformed SignedData: %v", err)
	}
	out := &SignedData{ContentType: sd.EncapContentInfo.EContentType}
	if len(sd.EncapContentInfo.EContent.FullBytes) > 0 {
		var octets []byte
		if _, err := asn1.Unmarshal(sd.EncapContentInfo.EContent.Bytes, &octets); err != nil {
			return nil, fmt.Errorf("cms: malformed eContent: %v", err)
		}
		out.Content = octets
	}
	if len(sd.Certificates.Bytes) > 0 {
		rest := sd.Certificates.Bytes
		for len(rest) > 0 {
			var rv asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &rv); err != nil {
				return nil, fmt.Errorf("cms: malformed certificates: %v", err)
			}
			if rv.Class != asn1.ClassUniversal || rv.Tag != asn1.TagSequence {
				continue // other certificate formats ([0]..[3]) are skipped
			}
			c, err := x509.ParseCertificate(rv.FullBytes)
			if err != nil {
				return nil, fmt.Errorf("cms: certificate: %v", err)
			}
			out.Certificates = append(out.Certificates, c)
		}
	}
	for _, si := range sd.SignerInfos {
		s := &Signer{DigestAlgorithm: OIDName(si.DigestAlgorithm.Algorithm), SignatureAlgorithm: OIDName(si.SignatureAlgorithm.Algorithm), raw: si}
		if t, ok := s.attr(oidAttrSigningTime); ok {
			var tm time.Time
			if _, err := asn1.Unmarshal(t, &tm); err == nil {
				s.SigningTime = tm
			}
		}
		out.Signers = append(out.Signers, s)
	}
	return out, nil
}

// Attribute returns the DER of the single value of a signed attribute;
// false when it is absent, repeated or has several values.
func (s *Signer) Attribute(oid asn1.ObjectIdentifier) ([]byte, bool) { return s.attr(oid) }

// attr returns the single value of a signed attribute.
func (s *Signer) attr(oid asn1.ObjectIdentifier) ([]byte, bool) {
	var found []byte
	n := 0
	rest := s.raw.SignedAttrs.Bytes
	for len(rest) > 0 {
		var a attribute
		var err error
		if rest, err = asn1.Unmarshal(rest, &a); err != nil {
			return nil, false
		}
		if a.Type.Equal(oid) {
			n++
			if len(a.Values) == 1 {
				found = a.Values[0].FullBytes
			}
		}
	}
	return found, n == 1 && found != nil
}

// VerifyOptions says what a signature is checked against.
type VerifyOptions struct {
	// Roots are the trust anchors; with none, only the signatures are
	// checked, against the certificates in the message.
	Roots []*x509.Certificate
	// Intermediates are further untrusted certificates for path building.
	Intermediates []*x509.Certificate
	// Content is the signed content of a detached signature.
	Content []byte
	// Now is the time certificates must be valid at; time.Now when zero.
	Now time.Time
	// AllowSHA1 accepts SHA-1 digests and sha1WithRSAEncryption, for
	// legacy SCEP clients.
	AllowSHA1 bool
}

// VerifiedSigner is a signer whose signature verified.
type VerifiedSigner struct {
	Certificate *x509.Certificate
	Algorithm   string
	// Chain is the path to a root, leaf first; nil when no roots were given.
	Chain []*x509.Certificate
}

// Verify checks every signer: its certificate is in the message, its
// signed attributes carry the content type and the content's digest, its
// signature verifies, and, with roots, its certificate chains to one.
func (sd *SignedData) Verify(opts VerifyOptions) ([]VerifiedSigner, error) {
	content := sd.Content
	if content == nil {
		if opts.Content == nil {
			return nil, errors.New("cms: detached signature: the signed content is needed")
		}
		content = opts.Content
	} else if opts.Content != nil && !bytes.Equal(opts.Content, content) {
		return nil, errors.New("cms: the given content differs from the content in the message")
	}
	if len(sd.Signers) == 0 {
		return nil, errors.New("cms: no signers")
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	var out []VerifiedSigner
	for i, s := range sd.Signers {
		cert, err := sd.signerCert(s)
		if err != nil {
			return nil, fmt.Errorf("cms: signer %d: %w", i+1, err)
		}
		if err := s.verify(cert, sd.ContentType, content, opts.AllowSHA1); err != nil {
			return nil, fmt.Errorf("cms: signer %d (%s): %w", i+1, cert.Subject, err)
		}
		v := VerifiedSigner{Certificate: cert, Algorithm: s.SignatureAlgorithm}
		if len(opts.Roots) > 0 {
			pool := append(append([]*x509.Certificate(nil), opts.Intermediates...), sd.Certificates...)
			chain, err := x509x.Verify(cert, pool, opts.Roots, now)
			if err != nil {
				return nil, fmt.Errorf("cms: signer %d (%s): %w", i+1, cert.Subject, err)
			}
			v.Chain = chain
		}
		out = append(out, v)
	}
	return out, nil
}

func (sd *SignedData) signerCert(s *Signer) (*x509.Certificate, error) {
	sid := s.raw.SID
	if sid.Class == asn1.ClassContextSpecific && sid.Tag == 0 {
		for _, c := range sd.Certificates {
			if len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, sid.Bytes) {
				return c, nil
			}
		}
		return nil, errors.New("no certificate in the message matches the signer's subject key identifier")
	}
	var ias issuerAndSerial
	if _, err := asn1.Unmarshal(sid.FullBytes, &ias); err != nil {
		return nil, fmt.Errorf("malformed signer identifier: %v", err)
	}
	for _, c := range sd.Certificates {
		if bytes.Equal(c.RawIssuer, ias.Issuer.FullBytes) && bytes.Equal(mustRaw(c.SerialNumber).FullBytes, ias.Serial.FullBytes) {
			return c, nil
		}
	}
	return nil, errors.New("no certificate in the message matches the signer's issuer and serial number")
}

func (s *Signer) verify(cert *x509.Certificate, ctype asn1.ObjectIdentifier, content []byte, allowSHA1 bool) error {
	dig, err := signerDigest(s.raw.DigestAlgorithm.Algorithm, allowSHA1)
	if err != nil {
		return err
	}
	pub, err := x509x.PublicKey(cert)
	if err != nil {
		return err
	}
	tbs := content
	if len(s.raw.SignedAttrs.FullBytes) > 0 {
		ct, ok := s.attr(oidAttrContentType)
		var got asn1.ObjectIdentifier
		if !ok {
			return errors.New("signed attributes lack a single contentType")
		}
		if _, err := asn1.Unmarshal(ct, &got); err != nil || !got.Equal(ctype) {
			return errors.New("the contentType attribute does not match the content type")
		}
		md, ok := s.attr(oidAttrMessageDigest)
		var want []byte
		if !ok {
			return errors.New("signed attributes lack a single messageDigest")
		}
		if _, err := asn1.Unmarshal(md, &want); err != nil || subtle.ConstantTimeCompare(want, dig.sum(content)) != 1 {
			return errors.New("the content does not match the messageDigest attribute")
		}
		if p, ok := s.attr(oidAttrAlgProtection); ok {
			if err := s.checkProtection(p); err != nil {
				return err
			}
		}
		tbs = encodeTLV([]byte{0x31}, s.raw.SignedAttrs.Bytes)
	}
	return verifySignature(pub, s.raw.SignatureAlgorithm, dig, tbs, s.raw.Signature)
}

// checkProtection compares the CMSAlgorithmProtection attribute (RFC 6211)
// with the SignerInfo's algorithms.
func (s *Signer) checkProtection(der []byte) error {
	var p struct {
		Digest algorithmIdentifier
		Sig    asn1.RawValue `asn1:"optional,tag:1"`
	}
	if _, err := asn1.Unmarshal(der, &p); err != nil {
		return fmt.Errorf("malformed CMSAlgorithmProtection: %v", err)
	}
	var sig algorithmIdentifier
	if _, err := asn1.Unmarshal(encodeTLV([]byte{0x30}, p.Sig.Bytes), &sig); err != nil {
		return fmt.Errorf("malformed CMSAlgorithmProtection: %v", err)
	}
	if !p.Digest.Algorithm.Equal(s.raw.DigestAlgorithm.Algorithm) || !sig.Algorithm.Equal(s.raw.SignatureAlgorithm.Algorithm) {
		return errors.New("CMSAlgorithmProtection does not match the signer's algorithms")
	}
	return nil
}

// verifySignature checks sig over tbs under a CMS signature algorithm.
func verifySignature(pub crypto.PublicKey, alg algorithmIdentifier, dig digestAlg, tbs, sig []byte) error {
	oid := alg.Algorithm
	hashed := func(h crypto.Hash) []byte { d := h.New(); d.Write(tbs); return d.Sum(nil) }
	switch {
	case oid.Equal(oidECDSAWithSHA256), oid.Equal(oidECDSAWithSHA384), oid.Equal(oidECDSAWithSHA512), oid.Equal(oidECPublicKey):
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%s signature with a %T key", OIDName(oid), pub)
		}
		h := map[string]crypto.Hash{"1.2.840.10045.4.3.2": crypto.SHA256, "1.2.840.10045.4.3.3": crypto.SHA384, "1.2.840.10045.4.3.4": crypto.SHA512}[oid.String()]
		if h == 0 {
			h = hashOfDigest(dig)
		}
		if h == 0 || !ecdsa.VerifyASN1(k, hashed(h), sig) {
			return fmt.Errorf("%s: %w", OIDName(oid), algo.ErrVerify)
		}
		return nil
	case oid.Equal(oidSHA256WithRSA), oid.Equal(oidSHA384WithRSA), oid.Equal(oidSHA512WithRSA), oid.Equal(oidRSAEncryption),
		oid.Equal(oidSHA1WithRSA) && dig.name == "sha1":
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%s signature with a %T key", OIDName(oid), pub)
		}
		h := map[string]crypto.Hash{"1.2.840.113549.1.1.11": crypto.SHA256, "1.2.840.113549.1.1.12": crypto.SHA384, "1.2.840.113549.1.1.13": crypto.SHA512}[oid.String()]
		if h == 0 {
			h = hashOfDigest(dig)
		}
		if h == 0 {
			h = hashSHA1(dig) // only ever sha1 when VerifyOptions.AllowSHA1
		}
		if h == 0 || rsa.VerifyPKCS1v15(k, h, hashed(h), sig) != nil {
			return fmt.Errorf("%s: %w", OIDName(oid), algo.ErrVerify)
		}
		return nil
	case oid.Equal(oidEd25519):
		k, ok := pub.(ed25519.PublicKey)
		if !ok || !ed25519.Verify(k, tbs, sig) {
			return fmt.Errorf("ed25519: %w", algo.ErrVerify)
		}
		return nil
	}
	info, ok := algo.ByOID(oid)
	if !ok || info.Classical || !info.CanSign {
		return fmt.Errorf("unsupported signature algorithm %s", oid)
	}
	if len(alg.Parameters.FullBytes) > 0 {
		return fmt.Errorf("%s: parameters must be absent", info.Name)
	}
	if _, pre := algo.PreHashOf(info.Name); pre {
		return algo.VerifyPreHash(info.Name, pub, tbs, nil, sig)
	}
	if err := algo.CheckKey(pub, info.Name); err != nil {
		return fmt.Errorf("%s signature: %v", info.Name, err)
	}
	v, ok := pub.(interface{ Verify(msg, sig []byte) error })
	if !ok {
		return fmt.Errorf("%s: %T cannot verify", info.Name, pub)
	}
	return v.Verify(tbs, sig)
}

func hashOfDigest(d digestAlg) crypto.Hash {
	switch d.name {
	case "sha256":
		return crypto.SHA256
	case "sha384":
		return crypto.SHA384
	case "sha512":
		return crypto.SHA512
	}
	return 0
}

func lookupAlgOID(oid asn1.ObjectIdentifier) (algo.Algorithm, bool) {
	info, ok := algo.ByOID(oid)
	if !ok {
		return "", false
	}
	return info.Name, true
}
