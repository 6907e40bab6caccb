package x509x

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
)

func createRevocationList(rand io.Reader, tmpl *x509.RevocationList, iss Issuer) ([]byte, error) {
	if err := checkIssuerKeys(iss, nil, nil); err != nil {
		return nil, err
	}
	sigAlg, err := signatureAlgorithmFor(iss.Signer.Algorithm(), iss.PSS)
	if err != nil {
		return nil, fmt.Errorf("x509x: signer: %w", err)
	}
	t := *tmpl
	t.SignatureAlgorithm = x509.PureEd25519
	if t.ExtraExtensions, err = catalystExtensions(t.ExtraExtensions, nil, iss.AltSigner, iss.PSS); err != nil {
		return nil, err
	}
	issuer := *iss.Cert
	issuer.PublicKey = nil
	draft, err := x509.CreateRevocationList(rand, &t, &issuer, placeholderKey())
	if err != nil {
		return nil, err
	}
	tbs, _, _, err := signedParts(draft)
	if err != nil {
		return nil, err
	}
	p, err := parseCRLTBS(tbs)
	if err != nil {
		return nil, err
	}
	p.fields[p.sigIdx] = sigAlg.marshal()
	if iss.AltSigner != nil {
		if err := p.addCatalystSignature(rand, iss.AltSigner, iss.PSS); err != nil {
			return nil, fmt.Errorf("x509x: %w", err)
		}
	}
	return signTBS(rand, p.encode(), sigAlg, iss)
}

func checkCRLSignature(crl *x509.RevocationList, issuer *x509.Certificate) error {
	if err := checkCAConstraints(issuer, x509.KeyUsageCRLSign); err != nil {
		return err
	}
	primary, alt := VerifyCatalystCRL(crl, issuer)
	if primary != nil {
		return fmt.Errorf("x509x: CRL %w", primary)
	}
	if alt != nil && !errors.Is(alt, ErrNotCatalyst) {
		return fmt.Errorf("x509x: CRL %w", alt)
	}
	return nil
}
