package ca

import (
	"crypto/x509"
	"fmt"
)

// Bundle returns the certificates of an export bundle for a version:
// "ca" is the CA certificate alone, "chain" the CA certificate and its
// issuers up to the root, "root" the root alone.
func (c *CA) Bundle(kind, version string) ([]*x509.Certificate, error) {
	chain, err := c.Chain(version)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "ca", "":
		return chain[:1], nil
	case "chain":
		return chain, nil
	case "root":
		return chain[len(chain)-1:], nil
	}
	return nil, fmt.Errorf("unknown bundle %q (want ca, chain or root)", kind)
}
