package jobspec

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/qpki/qpki/pkg/cose"
)

// MaxCOSEContent bounds what a COSE job carries to be signed (payload,
// external AAD and claims together), so that a job and its signed result,
// with the CA's chain, stay well within the queue's 1 MiB message limit
// (and within it even in the JSON form, base64, of a dead letter).
const MaxCOSEContent = 256 << 10

// COSE asks for a COSE_Sign1 or COSE_Sign message, or a CWT, signed with a
// CA version's key; the message carries that version's chain in x5chain.
type COSE struct {
	// Version is the CA version whose key signs, chosen by enroll.
	Version string           `json:"version"`
	Request cose.SignRequest `json:"request"`
}

// COSEResult is a signed COSE message or CWT.
type COSEResult struct {
	Message   []byte `json:"message"`
	CAVersion string `json:"ca_version"`
}

// Check is what enroll checks before publishing a COSE job and a worker
// again before signing it: the CA certificate allows digitalSignature
// (RFC 5280 §4.2.1.3: signing anything but certificates and CRLs), the
// request fits the limits, a token's iat and cti are fixed (so that a
// re-sign after a crash is the same token), and the token does not outlive
// the certificate of the key that signs it.
func (c *COSE) Check(caCert *x509.Certificate) error {
	if caCert.KeyUsage != 0 && caCert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("%w: the CA certificate (%s) does not allow digitalSignature, so verifiers would refuse its tokens; sign tokens with a CA whose profile adds digitalSignature to keyUsage", cose.ErrInvalidRequest, caCert.Subject)
	}
	r := &c.Request
	size := len(r.Payload) + len(r.ExternalAAD)
	if r.Claims != nil {
		b, err := json.Marshal(r.Claims)
		if err != nil {
			return fmt.Errorf("%w: claims: %v", cose.ErrInvalidRequest, err)
		}
		size += len(b)
	}
	if size > MaxCOSEContent {
		return fmt.Errorf("%w: %d bytes to sign, the limit for a queued job is %d", cose.ErrInvalidRequest, size, MaxCOSEContent)
	}
	if r.Type != cose.TypeCWT {
		return nil
	}
	if r.Claims == nil || r.Claims.IssuedAt.IsZero() || len(r.Claims.CTI) == 0 {
		return errors.New("a CWT job must carry its iat and cti")
	}
	if exp := r.Claims.Expiry; !exp.IsZero() && exp.After(caCert.NotAfter) {
		return fmt.Errorf("%w: the token would expire (%s) after the CA certificate (%s)", cose.ErrInvalidRequest,
			exp.UTC().Format(time.RFC3339), caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
