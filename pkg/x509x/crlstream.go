package x509x

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// CRLHeader is everything of a CRL but its entries.
type CRLHeader struct {
	Number     *big.Int
	ThisUpdate time.Time
	NextUpdate time.Time
	// ExtraExtensions go into crlExtensions after the authority key
	// identifier and the CRL number (issuingDistributionPoint,
	// deltaCRLIndicator, freshestCRL).
	ExtraExtensions []pkix.Extension
}

// CRLBuilder encodes a CRL whose entries arrive one at a time, so that a
// CRL of millions of entries costs its own DER size in memory and nothing
// per entry: each entry is appended as DER the moment it is added. The
// fields before revokedCertificates are known at the start and the
// lengths only at the end, so the buffer keeps room in front for them and
// Sign writes them right-aligned there: one pass over the entries, no copy
// of them before signing.
type CRLBuilder struct {
	iss     Issuer
	hdr     CRLHeader
	sigAlg  algorithmID
	prefix  []byte // version, signature, issuer, thisUpdate, nextUpdate
	buf     []byte // headroom, then the entries
	front   int    // where the entries start in buf
	entries int
}

// The headroom in front of the entries: the prefix plus two length
// headers (TBSCertList, revokedCertificates) of at most 6 bytes each.
const crlHeaderSlack = 12

// NewCRLBuilder starts a CRL signed by iss. sizeHint, when known, is the
// number of entries expected (it only sizes the buffer).
func NewCRLBuilder(hdr CRLHeader, iss Issuer, sizeHint int) (*CRLBuilder, error) {
	if iss.Signer == nil || iss.Cert == nil {
		return nil, errors.New("x509x: a CRL needs an issuer certificate and signer")
	}
	if err := checkIssuerKeys(iss, nil, nil); err != nil {
		return nil, err
	}
	if iss.Cert.KeyUsage != 0 && iss.Cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, errors.New("x509x: issuer must have the crlSign key usage bit set")
	}
	if len(iss.Cert.SubjectKeyId) == 0 {
		return nil, errors.New("x509x: issuer certificate doesn't contain a subject key identifier")
	}
	if hdr.Number == nil || hdr.Number.Sign() < 0 || len(hdr.Number.Bytes()) > 20 {
		return nil, errors.New("x509x: CRL number must be a non-negative integer of at most 20 octets")
	}
	if !hdr.NextUpdate.After(hdr.ThisUpdate) {
		return nil, errors.New("x509x: CRL nextUpdate must be after thisUpdate")
	}
	sigAlg, err := signatureAlgorithmFor(iss.Signer.Algorithm(), iss.PSS)
	if err != nil {
		return nil, fmt.Errorf("x509x: signer: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1Int64(1) // v2
	b.AddBytes(sigAlg.marshal())
	b.AddBytes(iss.Cert.RawSubject)
	addTime(&b, hdr.ThisUpdate)
	addTime(&b, hdr.NextUpdate)
	prefix, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("x509x: CRL header: %w", err)
	}
	front := crlHeaderSlack + len(prefix)
	if sizeHint < 0 || sizeHint > 1<<26 {
		sizeHint = 0
	}
	buf := make([]byte, front, front+sizeHint*40+1024)
	return &CRLBuilder{iss: iss, hdr: hdr, sigAlg: sigAlg, prefix: prefix, buf: buf, front: front}, nil
}

// Len is the number of entries added so far.
func (c *CRLBuilder) Len() int { return c.entries }

// Add appends one revoked certificate. reason 0 (unspecified) is left out
// of the entry, as RFC 5280 §5.3.1 asks.
func (c *CRLBuilder) Add(serial *big.Int, revoked time.Time, reason int) error {
	if serial == nil || serial.Sign() < 0 {
		return errors.New("x509x: CRL entry: serial must be a non-negative integer")
	}
	if reason < 0 || reason > 10 || reason == 7 {
		return fmt.Errorf("x509x: CRL entry: invalid reason code %d", reason)
	}
	sb := serial.Bytes()
	if len(sb) > 32 {
		return errors.New("x509x: CRL entry: serial longer than 32 octets")
	}
	pad := len(sb) == 0 || sb[0]&0x80 != 0
	intLen := len(sb)
	if pad {
		intLen++
	}
	var tb [17]byte
	tm := appendTimeTLV(tb[:0], revoked)
	n := 2 + intLen + len(tm)
	if reason != 0 {
		n += len(reasonExtPrefix) + 1
	}
	// Every part is shorter than 128 bytes: short-form lengths throughout.
	c.buf = append(c.buf, 0x30, byte(n), 0x02, byte(intLen))
	if pad {
		c.buf = append(c.buf, 0)
	}
	c.buf = append(c.buf, sb...)
	c.buf = append(c.buf, tm...)
	if reason != 0 {
		c.buf = append(c.buf, reasonExtPrefix...)
		c.buf = append(c.buf, byte(reason))
	}
	c.entries++
	return nil
}

// reasonExtPrefix is crlEntryExtensions holding one reasonCode extension
// (2.5.29.21, non-critical) up to the ENUMERATED's one value byte.
var reasonExtPrefix = []byte{0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01}

// Sign finishes the TBSCertList and signs it, with a Catalyst alternative
// signature when the issuer has an alternative signer. The builder must not
// be used afterwards.
func (c *CRLBuilder) Sign(rand io.Reader) ([]byte, error) {
	exts, err := c.extensions()
	if err != nil {
		return nil, err
	}
	entriesLen := len(c.buf) - c.front
	c.buf = append(c.buf, exts...)
	// Fill the headroom from the back: revokedCertificates' header (none
	// when empty: the field is OPTIONAL), the prefix, the TBS header.
	off := c.front
	if c.entries > 0 {
		h := lengthHeader(0x30, entriesLen)
		off -= len(h)
		copy(c.buf[off:], h)
	}
	off -= len(c.prefix)
	copy(c.buf[off:], c.prefix)
	h := lengthHeader(0x30, len(c.buf)-off)
	off -= len(h)
	copy(c.buf[off:], h)
	tbs := c.buf[off:]
	c.buf = nil
	if c.iss.AltSigner != nil {
		p, err := parseCRLTBS(tbs)
		if err != nil {
			return nil, err
		}
		if err := p.addCatalystSignature(rand, c.iss.AltSigner, c.iss.PSS); err != nil {
			return nil, fmt.Errorf("x509x: %w", err)
		}
		tbs = p.encode()
	}
	return signTBS(rand, tbs, c.sigAlg, c.iss)
}

// extensions encodes [0] crlExtensions: authorityKeyIdentifier, cRLNumber,
// the template's extra ones and, for Catalyst, altSignatureAlgorithm.
func (c *CRLBuilder) extensions() ([]byte, error) {
	var aki cryptobyte.Builder
	aki.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(c.iss.Cert.SubjectKeyId) })
	})
	var num cryptobyte.Builder
	num.AddASN1BigInt(c.hdr.Number)
	list := []pkix.Extension{
		{Id: oidAuthorityKeyID, Value: aki.BytesOrPanic()},
		{Id: oidCRLNumber, Value: num.BytesOrPanic()},
	}
	list = append(list, c.hdr.ExtraExtensions...)
	var err error
	if c.iss.AltSigner != nil {
		if list, err = catalystExtensions(list, nil, c.iss.AltSigner, c.iss.PSS); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, e := range list {
		if seen[e.Id.String()] {
			return nil, fmt.Errorf("x509x: CRL extension %s appears twice", e.Id)
		}
		seen[e.Id.String()] = true
	}
	der, err := asn1.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("x509x: CRL extensions: %w", err)
	}
	return append(lengthHeader(0xa0, len(der)), der...), nil
}

var (
	oidAuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber      = asn1.ObjectIdentifier{2, 5, 29, 20}
)

// lengthHeader is a DER tag and length for n bytes of content.
func lengthHeader(tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return []byte{tag, byte(n)}
	case n < 1<<8:
		return []byte{tag, 0x81, byte(n)}
	case n < 1<<16:
		return []byte{tag, 0x82, byte(n >> 8), byte(n)}
	case n < 1<<24:
		return []byte{tag, 0x83, byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return []byte{tag, 0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// addTime adds a Time as RFC 5280 §5.1.2.4 wants it: UTCTime through 2049,
// GeneralizedTime from 2050.
func addTime(b *cryptobyte.Builder, t time.Time) {
	b.AddBytes(appendTimeTLV(nil, t))
}

// appendTimeTLV appends t (in UTC, to the second) as a DER Time.
func appendTimeTLV(dst []byte, t time.Time) []byte {
	t = t.UTC()
	y := t.Year()
	if y >= 1950 && y < 2050 {
		dst = append(dst, byte(cbasn1.UTCTime), 13)
		dst = append2(dst, y%100)
	} else {
		dst = append(dst, byte(cbasn1.GeneralizedTime), 15)
		dst = append2(dst, y/100%100)
		dst = append2(dst, y%100)
	}
	dst = append2(dst, int(t.Month()))
	dst = append2(dst, t.Day())
	dst = append2(dst, t.Hour())
	dst = append2(dst, t.Minute())
	dst = append2(dst, t.Second())
	return append(dst, 'Z')
}

func append2(dst []byte, v int) []byte { return append(dst, byte('0'+v/10), byte('0'+v%10)) }
