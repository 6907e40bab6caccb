package ca

import (
	"errors"
	"fmt"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// A composite version (draft-ietf-lamps-pq-composite-sigs-19) signs with
// one composite key. A file-key CA keeps it as one composite private key
// file (key id "default"); a CA whose keys live in an HSM, which knows no
// composite mechanism, keeps its halves as two keys, "classical" and
// "pqc", that composeIssuer joins into one signer. Either way the version's
// Algos names the composite algorithm alone.

// compositeAlgorithm returns the composite algorithm a version signs with.
func compositeAlgorithm(v *Version) (algo.Algorithm, error) {
	for _, name := range v.Algos {
		if a, err := algo.Parse(name); err == nil && a.Family() == algo.FamilyComposite {
			return a, nil
		}
	}
	return "", fmt.Errorf("composite CA version names no composite algorithm (algos %v)", v.Algos)
}

// composeIssuer turns a composite version's key(s) into the one signer
// x509x uses: openIssuer put the classical key in Signer and the pqc key
// in AltSigner, which a composite CA does not have.
func composeIssuer(iss *x509x.Issuer, v *Version) error {
	alg, err := compositeAlgorithm(v)
	if err != nil {
		return err
	}
	if iss.Signer == nil {
		return errors.New("composite CA version has no classical or composite key")
	}
	if iss.AltSigner == nil {
		if iss.Signer.Algorithm() != alg {
			return fmt.Errorf("composite CA key is %s, the version signs with %s", iss.Signer.Algorithm(), alg)
		}
		return nil
	}
	s, err := algo.NewCompositeSigner(alg, iss.AltSigner, iss.Signer)
	if err != nil {
		return fmt.Errorf("composite CA keys: %w", err)
	}
	iss.Signer, iss.AltSigner = s, nil
	return nil
}

// versionKeyAlgorithms returns the algorithms of the keys a new version of
// policy pol gets in storage typ, and what its Algos will say. A composite
// CA's key is one composite key in a file, two component keys elsewhere.
func versionKeyAlgorithms(pol *policy, typ string) (keys []algo.Algorithm, algos []string) {
	keys = pol.algos
	if pol.mode != "composite" {
		for _, a := range keys {
			algos = append(algos, string(a))
		}
		return keys, algos
	}
	if typ == "software" {
		keys = []algo.Algorithm{pol.p.Algorithm}
	}
	return keys, []string{string(pol.p.Algorithm)}
}
