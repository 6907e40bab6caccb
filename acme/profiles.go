package acme

import (
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
)

// DefaultProfiles are the profiles offered when the operator names none.
// A classical CA offers any/tls-server, which takes the RSA and ECDSA keys
// ACME clients send (cert-manager, win-acme and older certbot and acme.sh
// setups still default to RSA); a post-quantum or hybrid CA offers
// ec/tls-server, whose ECDSA leaves it signs until clients can make
// post-quantum CSRs.
func DefaultProfiles(c *ca.CA) []string {
	if _, v, err := c.Version(""); err == nil && classicalOnly(v.Algos) {
		return []string{"any/tls-server"}
	}
	return []string{"ec/tls-server"}
}

func classicalOnly(names []string) bool {
	for _, n := range names {
		if a, err := algo.Parse(n); err != nil || !a.IsClassical() {
			return false
		}
	}
	return len(names) > 0
}
