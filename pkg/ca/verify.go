package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/qpki/qpki/pkg/x509x"
)

// VerifyOptions are the trust anchors, untrusted intermediates and CRLs
// for VerifyChain.
type VerifyOptions struct {
	Roots         []*x509.Certificate
	Intermediates []*x509.Certificate
	// CRLs, DER or PEM, are checked for every certificate of the chain
	// whose issuer has one here.
	CRLs [][]byte
	Now  time.Time
}

// VerifyChain builds a path from leaf to one of the roots and checks it,
// then checks revocation against the given CRLs.
func VerifyChain(leaf *x509.Certificate, o VerifyOptions) ([]*x509.Certificate, error) {
	if len(o.Roots) == 0 {
		return nil, errors.New("no trust anchor given")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	chain, err := buildChain(leaf, o)
	if err != nil {
		return nil, err
	}
	crls, err := parseCRLs(o.CRLs)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := checkRevocation(chain[i], chain[i+1], crls, o.Now); err != nil {
			return chain, err
		}
	}
	return chain, nil
}

func buildChain(leaf *x509.Certificate, o VerifyOptions) ([]*x509.Certificate, error) {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range o.Roots {
		roots.AddCert(c)
	}
	for _, c := range o.Intermediates {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: o.Now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, err
	}
	return chains[0], nil
}

func parseCRLs(raw [][]byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	for _, data := range raw {
		rest := data
		found := false
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "X509 CRL" {
				continue
			}
			crl, err := x509.ParseRevocationList(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("malformed CRL: %v", err)
			}
			out, found = append(out, crl), true
		}
		if !found {
			crl, err := x509.ParseRevocationList(data)
			if err != nil {
				return nil, fmt.Errorf("malformed CRL: %v", err)
			}
			out = append(out, crl)
		}
	}
	return out, nil
}

// RevokedError says that a certificate of the chain is revoked.
type RevokedError struct {
	Subject string
	Serial  string
	Time    time.Time
	Reason  int
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("certificate %s (serial %s) was revoked on %s, reason %s",
		e.Subject, e.Serial, e.Time.UTC().Format(time.RFC3339), ReasonName(e.Reason))
}

func checkRevocation(cert, issuer *x509.Certificate, crls []*x509.RevocationList, now time.Time) error {
	for _, crl := range crls {
		if !bytes.Equal(crl.RawIssuer, cert.RawIssuer) {
			continue
		}
		if len(crl.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(crl.AuthorityKeyId, issuer.SubjectKeyId) {
			continue // the same name under another key: a rotated CA's other CRL
		}
		if err := CheckCRLSignature(crl, issuer); err != nil {
			return fmt.Errorf("CRL from %s: %v", issuer.Subject, err)
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			return fmt.Errorf("CRL from %s is stale: nextUpdate %s has passed", issuer.Subject, crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return &RevokedError{Subject: cert.Subject.String(), Serial: cert.SerialNumber.Text(16), Time: e.RevocationTime, Reason: e.ReasonCode}
			}
		}
	}
	return nil
}

// CheckCRLSignature verifies a CRL's signature with the issuer's key.
func CheckCRLSignature(crl *x509.RevocationList, issuer *x509.Certificate) error {
	return x509x.CheckCRLSignature(crl, issuer)
}
