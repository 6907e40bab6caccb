package algo

import (
	_ "unsafe" // go:linkname

	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
)

// ML-DSA.Verify_internal (FIPS 204, Algorithm 8) over a caller-built M'.
// HashML-DSA verification needs it: M' starts with the domain byte 1,
// which circl's exported Verify (domain byte 0, pure ML-DSA) cannot
// produce. circl v1.6.5 implements Verify_internal for its ACVP tests but
// does not export it, so it is linked here; go.mod pins circl, and
// x509x TestInteropTrustAnchors (a Bouncy Castle HashML-DSA-65 trust anchor) and
// TestHashMLDSAInternalMatchesPure (pure M' through the same path) fail
// if an upgrade changes it.

//go:linkname mldsa44VerifyInternal github.com/cloudflare/circl/sign/mldsa/mldsa44.unsafeVerifyInternal
func mldsa44VerifyInternal(pk *mldsa44.PublicKey, msg, sig []byte) bool

//go:linkname mldsa65VerifyInternal github.com/cloudflare/circl/sign/mldsa/mldsa65.unsafeVerifyInternal
func mldsa65VerifyInternal(pk *mldsa65.PublicKey, msg, sig []byte) bool

//go:linkname mldsa87VerifyInternal github.com/cloudflare/circl/sign/mldsa/mldsa87.unsafeVerifyInternal
func mldsa87VerifyInternal(pk *mldsa87.PublicKey, msg, sig []byte) bool

// verifyInternal runs Verify_internal for a circl ML-DSA public key.
func verifyInternal(pk sign.PublicKey, mPrime, sig []byte) bool {
	switch k := pk.(type) {
	case *mldsa44.PublicKey:
		return len(sig) == mldsa44.SignatureSize && mldsa44VerifyInternal(k, mPrime, sig)
	case *mldsa65.PublicKey:
		return len(sig) == mldsa65.SignatureSize && mldsa65VerifyInternal(k, mPrime, sig)
	case *mldsa87.PublicKey:
		return len(sig) == mldsa87.SignatureSize && mldsa87VerifyInternal(k, mPrime, sig)
	}
	return false
}
