package x509x

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"

	"github.com/qpki/qpki/pkg/algo"
)

// Signing to-be-signed structures that crypto/x509 does not build (an
// OCSP response's ResponseData), for every algorithm qpki knows: the
// caller encodes the structure, these functions give its
// AlgorithmIdentifier and signature, and check a signature over it.

// SignatureAlgorithmID returns the DER AlgorithmIdentifier that a signer
// of algorithm a writes (pss: RSASSA-PSS for RSA keys).
func SignatureAlgorithmID(a algo.Algorithm, pss bool) ([]byte, error) {
	id, err := signatureAlgorithmFor(a, pss)
	if err != nil {
		return nil, err
	}
	return id.marshal(), nil
}

// SignMany signs each message with s, in one batch when s signs digests
// in batches (an HSM session), and checks every signature before it is
// returned, as crypto/x509 does for a certificate: a faulty signer must
// not hand out a bad signature. It returns the AlgorithmIdentifier and
// one signature per message.
func SignMany(rand io.Reader, msgs [][]byte, s algo.Signer, pss bool) ([]byte, [][]byte, error) {
	id, err := signatureAlgorithmFor(s.Algorithm(), pss)
	if err != nil {
		return nil, nil, err
	}
	sigs := make([][]byte, len(msgs))
	h := algo.HashFor(s.Algorithm())
	if h == 0 {
		// Ed25519, ML-DSA, SLH-DSA, composite: the signer takes the message.
		for i, m := range msgs {
			if sigs[i], err = s.Sign(rand, m, crypto.Hash(0)); err != nil {
				return nil, nil, fmt.Errorf("x509x: signing: %w", err)
			}
		}
	} else {
		var opts crypto.SignerOpts = h
		if pss && s.Algorithm().Family() == algo.FamilyRSA {
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
		}
		reqs := make([]algo.SignRequest, len(msgs))
		for i, m := range msgs {
			d := h.New()
			d.Write(m)
			reqs[i] = algo.SignRequest{Digest: d.Sum(nil), Opts: opts}
		}
		algo.SignBatch(s, reqs)
		for i := range reqs {
			if reqs[i].Err != nil {
				return nil, nil, fmt.Errorf("x509x: signing: %w", reqs[i].Err)
			}
			sigs[i] = reqs[i].Sig
		}
	}
	for i, m := range msgs {
		if err := verifyTBS(s.Public(), id, m, sigs[i]); err != nil {
			return nil, nil, fmt.Errorf("x509x: signer returned an invalid signature: %w", err)
		}
	}
	return id.marshal(), sigs, nil
}

// VerifySignedData checks sig over msg under the DER AlgorithmIdentifier
// alg with pub. An ECDSA key that verifies many signatures (a CA's or an
// OCSP responder's) is checked with precomputed tables.
func VerifySignedData(pub crypto.PublicKey, alg, msg, sig []byte) error {
	id, err := parseAlgorithmID(alg)
	if err != nil {
		return err
	}
	return verifyTBS(pub, id, msg, sig)
}

func verifyTBS(pub crypto.PublicKey, id algorithmID, msg, sig []byte) error {
	if k, ok := pub.(*ecdsa.PublicKey); ok && isECDSA(id.oid) && id.params == nil {
		var h crypto.Hash
		switch {
		case id.oid.Equal(oidECDSAWithSHA256):
			h = crypto.SHA256
		case id.oid.Equal(oidECDSAWithSHA384):
			h = crypto.SHA384
		default:
			h = crypto.SHA512
		}
		d := h.New()
		d.Write(msg)
		if !algo.VerifyIssuerECDSA(k, d.Sum(nil), sig) {
			return fmt.Errorf("%s: %w", signatureAlgorithmName(id), algo.ErrVerify)
		}
		return nil
	}
	if pub == nil {
		return errors.New("no public key")
	}
	return verifySignature(pub, id, msg, sig)
}

// SignatureAlgorithmName names a DER AlgorithmIdentifier for people.
func SignatureAlgorithmName(alg []byte) string {
	id, err := parseAlgorithmID(alg)
	if err != nil {
		return "malformed"
	}
	return signatureAlgorithmName(id)
}
