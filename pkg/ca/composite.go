package ca

import (
	"errors"

	"github.com/qpki/qpki/pkg/x509x"
)

// composeIssuer turns a composite version's two keys into one signer.
// Composite CAs come with the post-quantum work.
func composeIssuer(iss *x509x.Issuer, v *Version) error {
	return errors.New("composite CA keys are not supported yet")
}
