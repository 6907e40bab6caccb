package cmp

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// signerKind is how a signature-protected request's certificate is
// trusted.
type signerKind int

const (
	signerAnchor signerKind = iota + 1 // chains to the label's trust anchors (a vendor's device CA)
	signerOwn                          // issued by this CA through CMP on this label
)

// authenticateSigned checks a signature-protected request: its first
// extraCert signed the protected part, and is trusted.
func (f *Frontend) authenticateSigned(svc *enroll.Service, l *Label, m *Message) (*protector, signerKind, error) {
	ra := f.currentRA()
	if ra == nil {
		return nil, 0, refuse(FailSystemUnavail, "the CMP RA certificate is not made yet; retry later")
	}
	if len(m.ExtraCerts) == 0 {
		return nil, 0, refuse(FailSignerNotTrusted, "a signed request carries its signer's certificate first in extraCerts")
	}
	certs := make([]*x509.Certificate, 0, len(m.ExtraCerts))
	for _, raw := range m.ExtraCerts {
		c, err := x509.ParseCertificate(raw.FullBytes)
		if err != nil {
			return nil, 0, refuse(FailBadDataFormat, "extraCerts: %v", err)
		}
		certs = append(certs, c)
	}
	signer := certs[0]
	if len(m.Header.SenderKID) > 0 && len(signer.SubjectKeyId) > 0 && !bytesEqual(m.Header.SenderKID, signer.SubjectKeyId) {
		return nil, 0, refuse(FailBadMessageCheck, "senderKID is not the signer certificate's key identifier")
	}
	alg, err := asn1.Marshal(m.Header.ProtectionAlg)
	if err != nil {
		return nil, 0, refuse(FailBadAlg, "protectionAlg")
	}
	if err := x509x.VerifySignedData(signer.PublicKey, alg, protectedPart(m.RawHeader, m.Body.FullBytes), m.Protection.RightAlign()); err != nil {
		return nil, 0, refuse(FailBadMessageCheck, "the signature does not verify")
	}
	p := &protector{ra: ra, client: signer}
	now := time.Now()
	if now.Before(signer.NotBefore) || now.After(signer.NotAfter) {
		return nil, 0, &pkiError{fail: FailSignerNotTrusted, msg: "the signer's certificate is not valid now", prot: p}
	}
	if issuedBy(svc, signer) {
		st, err := svc.CA.Store()
		if err != nil {
			return nil, 0, err
		}
		rec, err := st.Cert(signer.SerialNumber)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, 0, &pkiError{fail: FailSignerNotTrusted, msg: "the signer's certificate is not in this CA's records", prot: p}
		case err != nil:
			return nil, 0, err
		case rec.Revocation != nil:
			return nil, 0, &pkiError{fail: FailCertRevoked, msg: "the signer's certificate is revoked", prot: p}
		case rec.Origin == nil || rec.Origin.Frontend != string(enroll.FrontendCMP) || rec.Origin.Label != l.name:
			return nil, 0, &pkiError{fail: FailNotAuthorized, msg: "the signer's certificate was not issued through CMP on this label", prot: p}
		}
		return p, signerOwn, nil
	}
	if len(l.clientCAs) > 0 {
		if _, err := x509x.Verify(signer, certs[1:], l.clientCAs, now); err == nil {
			return p, signerAnchor, nil
		}
	}
	return nil, 0, &pkiError{fail: FailSignerNotTrusted, msg: "the signer's certificate is not from a trusted CA", prot: p}
}

// kurRequest is a key update: the new key keeps the old certificate's
// names, and only its holder may ask.
func (f *Frontend) kurRequest(l *Label, m *Message, old *x509.Certificate) (enroll.Request, int64, error) {
	req, id, err := f.enrollRequest(l, m, nil)
	if err != nil {
		return req, 0, err
	}
	ips := make([]string, len(old.IPAddresses))
	for i, ip := range old.IPAddresses {
		ips[i] = ip.String()
	}
	dns := append([]string{}, old.DNSNames...)
	if old.Subject.CommonName != "" {
		dns = append(dns, old.Subject.CommonName)
	}
	req.Principal.Names = enroll.ExactNames(dns, ips)
	if _, ok := req.Vars["cn"]; !ok && old.Subject.CommonName != "" {
		req.Vars["cn"] = old.Subject.CommonName
	}
	return req, id, nil
}

// revocation answers rr: the certificate that signed the request revokes
// itself (RFC 9483 §4.2).
func (f *Frontend) revocation(svc *enroll.Service, l *Label, m *Message, p *protector, kind signerKind) ([]byte, error) {
	if kind != signerOwn {
		return nil, &pkiError{fail: FailNotAuthorized, msg: "rr must be signed by the certificate to revoke", prot: p}
	}
	var rr []RevDetails
	if err := m.content(&rr); err != nil || len(rr) != 1 {
		return nil, &pkiError{fail: FailBadDataFormat, msg: "rr must carry one RevDetails", prot: p}
	}
	d := rr[0]
	if d.CertDetails.SerialNumber == nil || d.CertDetails.SerialNumber.Cmp(p.client.SerialNumber) != 0 ||
		len(d.CertDetails.Issuer.Bytes) > 0 && !bytesEqual(d.CertDetails.Issuer.Bytes, p.client.RawIssuer) {
		return nil, &pkiError{fail: FailBadCertID, msg: "rr names another certificate than its signer", prot: p}
	}
	reason := 0
	for _, e := range d.CRLEntryDetails {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 21}) {
			var r asn1.Enumerated
			if _, err := asn1.Unmarshal(e.Value, &r); err != nil {
				return nil, &pkiError{fail: FailBadDataFormat, msg: "reasonCode", prot: p}
			}
			reason = int(r)
		}
	}
	name := txName(l.name, m.Header.TransactionID)
	if err := f.txs.Create(name, &Transaction{Label: l.name, Phase: PhaseConfirmed, Type: BodyRR, Created: time.Now().UTC(),
		Serial: store.FormatSerial(p.client.SerialNumber)}); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			return nil, &pkiError{fail: FailTransactionIDInUse, msg: "this transactionID was used already", prot: p}
		}
		return nil, err
	}
	if _, err := svc.CA.Revoke(store.FormatSerial(p.client.SerialNumber), reason, time.Now()); err != nil {
		if errors.Is(err, store.ErrRevoked) {
			return nil, &pkiError{fail: FailCertRevoked, msg: "already revoked", prot: p}
		}
		return nil, &pkiError{fail: FailBadRequest, msg: err.Error(), prot: p}
	}
	return f.build(m, p, BodyRP, RevRepContent{Status: []PKIStatusInfo{statusInfo(StatusAccepted, nil, "")}}, nil, nil)
}

// general answers genm with the info types asked for (RFC 9483 §4.3).
func (f *Frontend) general(svc *enroll.Service, l *Label, m *Message, p *protector) ([]byte, error) {
	var asks []InfoTypeAndValue
	if err := m.content(&asks); err != nil || len(asks) == 0 || len(asks) > 16 {
		return nil, &pkiError{fail: FailBadDataFormat, msg: "genm carries 1 to 16 InfoTypeAndValue", prot: p}
	}
	var out []InfoTypeAndValue
	for _, a := range asks {
		it := InfoTypeAndValue{Type: a.Type}
		switch {
		case a.Type.Equal(OIDITCACerts):
			it.Value = f.caCertsValue(svc)
		case a.Type.Equal(OIDITSignKeyPairTypes):
			it.Value = f.keyPairTypes(l)
		case a.Type.Equal(OIDITRootCAKeyUpdate):
			if v, ok := f.rootUpdate(svc); ok {
				it.Value = v
			}
		case a.Type.Equal(OIDITCertReqTemplate):
			// No template constraints beyond the profile's: absent value.
		case a.Type.Equal(OIDITCRLStatusList):
			it.Type = OIDITCRLs
			if v, ok := f.currentCRL(svc); ok {
				it.Value = v
			}
		default:
			continue // unknown types are left out of the genp
		}
		out = append(out, it)
	}
	return f.build(m, p, BodyGenP, out, nil, nil)
}

func certSeq(certs []*x509.Certificate) asn1.RawValue {
	var b []byte
	for _, c := range certs {
		b = append(b, c.Raw...)
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: b}
}

// caCertsValue is every CA version's chain.
func (f *Frontend) caCertsValue(svc *enroll.Service) asn1.RawValue {
	var all []*x509.Certificate
	for _, v := range svc.CA.Meta.VersionNames() {
		chain, _ := svc.CA.Chain(v)
		for _, c := range chain {
			if !containsCert(all, c) {
				all = append(all, c)
			}
		}
	}
	return certSeq(all)
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// keyPairTypes are the key algorithms the label's profile accepts.
func (f *Frontend) keyPairTypes(l *Label) asn1.RawValue {
	var b []byte
	p := f.profiles[l.Profile]
	if p != nil {
		for _, a := range p.AllowedAlgorithms {
			if id, ok := keyAlgID(a); ok {
				der, _ := asn1.Marshal(id)
				b = append(b, der...)
			}
		}
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: b}
}

// rootUpdate is the newest root when the CA's chain has more than one
// (after a rotation): RootCaKeyUpdateContent { newWithNew }.
func (f *Frontend) rootUpdate(svc *enroll.Service) (asn1.RawValue, bool) {
	var roots []*x509.Certificate
	for _, v := range svc.CA.Meta.VersionNames() {
		chain, _ := svc.CA.Chain(v)
		if len(chain) > 0 && !containsCert(roots, chain[len(chain)-1]) {
			roots = append(roots, chain[len(chain)-1])
		}
	}
	if len(roots) < 2 {
		return asn1.RawValue{}, false
	}
	newest := roots[0]
	for _, r := range roots {
		if r.NotBefore.After(newest.NotBefore) {
			newest = r
		}
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: newest.Raw}, true
}

// currentCRL is the CA's published CRL, as id-it-crls' SEQUENCE OF
// CertificateList.
func (f *Frontend) currentCRL(svc *enroll.Service) (asn1.RawValue, bool) {
	der, err := readCRL(svc.CA.Dir)
	if err != nil {
		return asn1.RawValue{}, false
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: der}, true
}

// keyAlgID is a key algorithm's SubjectPublicKeyInfo identifier.
func keyAlgID(a algo.Algorithm) (pkix.AlgorithmIdentifier, bool) {
	curve := func(oid asn1.ObjectIdentifier) pkix.AlgorithmIdentifier {
		der, _ := asn1.Marshal(oid)
		return pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}, Parameters: asn1.RawValue{FullBytes: der}}
	}
	switch {
	case strings.HasPrefix(string(a), "rsa-"):
		return pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}, Parameters: asn1.NullRawValue}, true
	case a == algo.ECDSAP256:
		return curve(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}), true
	case a == algo.ECDSAP384:
		return curve(asn1.ObjectIdentifier{1, 3, 132, 0, 34}), true
	case a == algo.ECDSAP521:
		return curve(asn1.ObjectIdentifier{1, 3, 132, 0, 35}), true
	case a == "ed25519":
		return pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 3, 101, 112}}, true
	}
	if info, ok := algo.Lookup(a); ok && len(info.OID) > 0 {
		return pkix.AlgorithmIdentifier{Algorithm: info.OID}, true
	}
	return pkix.AlgorithmIdentifier{}, false
}

// readCRL is the active version's published CRL.
func readCRL(caDir string) ([]byte, error) {
	return os.ReadFile(filepath.Join(caDir, ca.CRLDir, "ca.crl.der"))
}
