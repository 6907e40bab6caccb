package x509x

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// The streaming builder makes the very TBSCertList crypto/x509 makes from
// the same entries (classical CAs), and a CRL that verifies for every
// kind of CA (ML-DSA, composite, Catalyst).
func TestCRLBuilder(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	entries := []x509.RevocationListEntry{
		{SerialNumber: big.NewInt(42), RevocationTime: now.Add(-time.Hour), ReasonCode: 1},
		{SerialNumber: new(big.Int).Lsh(big.NewInt(1), 159), RevocationTime: now, ReasonCode: 0}, // high bit: padded
		{SerialNumber: big.NewInt(0x7f), RevocationTime: time.Date(2051, 1, 2, 3, 4, 5, 0, time.UTC), ReasonCode: 10},
	}
	idp := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: []byte{0x30, 0x00}}
	cases := append([]chainCase{{"ecdsa", algo.ECDSAP384, "", algo.ECDSAP256, "", algo.ECDSAP256, ""}}, chainCases[:4]...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			issuing := newSub(t, newRoot(t, c.root, c.rootAlt), c.issuing, c.issAlt)
			hdr := CRLHeader{Number: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(time.Hour), ExtraExtensions: []pkix.Extension{idp}}
			b, err := NewCRLBuilder(hdr, issuing.iss, len(entries))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if err := b.Add(e.SerialNumber, e.RevocationTime, e.ReasonCode); err != nil {
					t.Fatal(err)
				}
			}
			der, err := b.Sign(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckCRLSignature(crl, issuing.cert); err != nil {
				t.Fatal(err)
			}
			primary, alt := VerifyCatalystCRL(crl, issuing.cert)
			if primary != nil || (c.issAlt != "") != (alt == nil) {
				t.Fatalf("primary %v, alternative %v", primary, alt)
			}
			if len(crl.RevokedCertificateEntries) != len(entries) || crl.Number.Int64() != 7 {
				t.Fatalf("got %d entries, number %v", len(crl.RevokedCertificateEntries), crl.Number)
			}
			for i, e := range crl.RevokedCertificateEntries {
				w := entries[i]
				if e.SerialNumber.Cmp(w.SerialNumber) != 0 || !e.RevocationTime.Equal(w.RevocationTime) || e.ReasonCode != w.ReasonCode {
					t.Errorf("entry %d: got %v %v %d", i, e.SerialNumber, e.RevocationTime, e.ReasonCode)
				}
			}
			if c.issAlt != "" || !issuing.iss.Signer.Algorithm().IsClassical() {
				return
			}
			ref, err := CreateRevocationList(rand.Reader, &x509.RevocationList{Number: hdr.Number, ThisUpdate: now, NextUpdate: hdr.NextUpdate,
				RevokedCertificateEntries: entries, ExtraExtensions: hdr.ExtraExtensions}, issuing.iss)
			if err != nil {
				t.Fatal(err)
			}
			refCRL, err := x509.ParseRevocationList(ref)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(refCRL.RawTBSRevocationList, crl.RawTBSRevocationList) {
				t.Fatalf("TBSCertList differs from crypto/x509's:\n%x\n%x", crl.RawTBSRevocationList, refCRL.RawTBSRevocationList)
			}
		})
	}
}

// An empty CRL leaves revokedCertificates out, as crypto/x509 does.
func TestCRLBuilderEmpty(t *testing.T) {
	issuing := newSub(t, newRoot(t, algo.MLDSA65, ""), algo.MLDSA44, "")
	now := time.Now().UTC().Truncate(time.Second)
	b, err := NewCRLBuilder(CRLHeader{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, issuing.iss, 0)
	if err != nil {
		t.Fatal(err)
	}
	der, err := b.Sign(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil || len(crl.RevokedCertificateEntries) != 0 {
		t.Fatal(err)
	}
	if err := CheckCRLSignature(crl, issuing.cert); err != nil {
		t.Fatal(err)
	}
}
