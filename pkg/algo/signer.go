package algo

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
)

// Signer is a crypto.Signer together with the algorithm that policy chose
// for it. File keys and HSM keys both implement it, so the code that builds
// certificates never asks where a key lives.
type Signer interface {
	crypto.Signer
	Algorithm() Algorithm
}

// BatchSigner is a Signer that signs several digests at once, on one
// session and in one call into its token, where calling one signature at
// a time would pay the overhead of a call (a return to the Go scheduler,
// a network round trip) for each.
type BatchSigner interface {
	Signer
	// SignBatch signs each request, in order, setting its Sig or Err.
	SignBatch(reqs []SignRequest)
}

// SignBatch signs reqs with s: in one batch when s is a BatchSigner, else
// one by one.
func SignBatch(s Signer, reqs []SignRequest) {
	if b, ok := s.(BatchSigner); ok {
		b.SignBatch(reqs)
		return
	}
	for i := range reqs {
		reqs[i].Sig, reqs[i].Err = s.Sign(rand.Reader, reqs[i].Digest, reqs[i].Opts)
	}
}

// SignRequest is one signature of a SignBatch: Digest and Opts as for
// crypto.Signer.Sign.
type SignRequest struct {
	Digest []byte
	Opts   crypto.SignerOpts
	Sig    []byte
	Err    error
}

// SignerCloser is a Signer holding a resource (an HSM session, say) that
// must be released.
type SignerCloser interface {
	Signer
	Close() error
}

type softwareSigner struct {
	crypto.Signer
	alg Algorithm
}

func (s softwareSigner) Algorithm() Algorithm { return s.alg }

// Unwrap returns the underlying private key, for codecs that need it.
func (s softwareSigner) Unwrap() crypto.Signer { return s.Signer }

// NewSigner wraps a software private key. The key must be of algorithm want:
// the algorithm comes from policy, and a key that does not fit is an error,
// never a silent switch of algorithm.
func NewSigner(priv crypto.PrivateKey, want Algorithm) (Signer, error) {
	s, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T keys cannot sign", priv)
	}
	if err := CheckKey(s.Public(), want); err != nil {
		return nil, err
	}
	if !want.CanSign() {
		return nil, fmt.Errorf("%s is not a signature algorithm", want)
	}
	if err := want.Info().SignRefused; err != nil {
		return nil, fmt.Errorf("%s: %w", want, err)
	}
	return softwareSigner{Signer: s, alg: want}, nil
}

// CheckKey returns an error unless pub is a key of algorithm want.
func CheckKey(pub crypto.PublicKey, want Algorithm) error {
	info, ok := Lookup(want)
	if !ok {
		return fmt.Errorf("unknown algorithm %q", want)
	}
	if info.Matches != nil && info.Matches(pub) {
		return nil
	}
	got, err := Of(pub)
	if err != nil {
		return fmt.Errorf("key does not fit %s: %v", want, err)
	}
	return fmt.Errorf("key is %s but %s is required", got, want)
}

// HashFor returns the digest that goes with a classical signing key, or 0
// when the algorithm signs the message itself (Ed25519, ML-DSA, SLH-DSA).
func HashFor(a Algorithm) crypto.Hash {
	switch a {
	case ECDSAP256, RSA2048, RSA3072:
		return crypto.SHA256
	case ECDSAP384, RSA4096:
		return crypto.SHA384
	case ECDSAP521:
		return crypto.SHA512
	}
	return 0
}

// SignDigest hashes msg as the algorithm requires and signs it. pss selects
// RSASSA-PSS for RSA keys.
func SignDigest(s Signer, rand interface{ Read([]byte) (int, error) }, msg []byte, pss bool) ([]byte, error) {
	h := HashFor(s.Algorithm())
	if h == 0 {
		return s.Sign(rand, msg, crypto.Hash(0))
	}
	d := h.New()
	d.Write(msg)
	var opts crypto.SignerOpts = h
	if pss && s.Algorithm().Family() == FamilyRSA {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
	}
	return s.Sign(rand, d.Sum(nil), opts)
}

// VerifyDigest checks a signature made by SignDigest with a classical key.
func VerifyDigest(pub crypto.PublicKey, a Algorithm, msg, sig []byte, pss bool) error {
	h := HashFor(a)
	var digest []byte
	if h != 0 {
		d := h.New()
		d.Write(msg)
		digest = d.Sum(nil)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return fmt.Errorf("ecdsa signature does not verify")
		}
		return nil
	case *rsa.PublicKey:
		if pss {
			return rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
		}
		return rsa.VerifyPKCS1v15(k, h, digest, sig)
	}
	if v, ok := pub.(interface {
		Verify(msg, sig []byte) error
	}); ok {
		return v.Verify(msg, sig)
	}
	return verifyOther(pub, msg, sig)
}
