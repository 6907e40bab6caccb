package cose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/qpki/qpki/pkg/algo"
)

func digest(h crypto.Hash, msg []byte) []byte {
	d := h.New()
	d.Write(msg)
	return d.Sum(nil)
}

// sign makes the COSE signature of toBeSigned.
func (info *algInfo) sign(rand io.Reader, s crypto.Signer, toBeSigned []byte) ([]byte, error) {
	switch info.kind {
	case kindECDSA:
		sig, err := s.Sign(rand, digest(info.hash, toBeSigned), info.hash)
		if err != nil {
			return nil, err
		}
		return ecdsaRaw(sig, ecdsaSize(info))
	case kindPSS:
		return s.Sign(rand, digest(info.hash, toBeSigned), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: info.hash})
	case kindEdDSA, kindPure:
		return s.Sign(rand, toBeSigned, crypto.Hash(0))
	}
	return nil, fmt.Errorf("%w: algorithm %s", ErrUnsupported, info.name)
}

// verify checks a COSE signature over toBeSigned.
func (info *algInfo) verify(pub crypto.PublicKey, toBeSigned, sig []byte) error {
	if err := info.checkKey(pub); err != nil {
		return err
	}
	switch info.kind {
	case kindECDSA:
		n := ecdsaSize(info)
		if len(sig) != 2*n {
			return fmt.Errorf("%s signature is %d bytes, want %d", info.name, len(sig), 2*n)
		}
		r := new(big.Int).SetBytes(sig[:n])
		s := new(big.Int).SetBytes(sig[n:])
		if !ecdsa.Verify(pub.(*ecdsa.PublicKey), digest(info.hash, toBeSigned), r, s) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	case kindEdDSA:
		if !ed25519.Verify(pub.(ed25519.PublicKey), toBeSigned, sig) {
			return errors.New("Ed25519 verification failed")
		}
		return nil
	case kindPSS:
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: info.hash}
		if err := rsa.VerifyPSS(pub.(*rsa.PublicKey), info.hash, digest(info.hash, toBeSigned), sig, opts); err != nil {
			return errors.New("RSASSA-PSS verification failed")
		}
		return nil
	case kindPure:
		// ML-DSA and SLH-DSA verify the whole message with an empty
		// context; pkg/algo owns their implementation.
		if err := algo.VerifyDigest(pub, info.key, toBeSigned, sig, false); err != nil {
			return fmt.Errorf("%s verification failed: %v", info.name, err)
		}
		return nil
	}
	return fmt.Errorf("%w: algorithm %s", ErrUnsupported, info.name)
}

// ecdsaSize is the byte length of r and s in the fixed-size COSE form
// (RFC 9053 §2.1): the curve order's length.
func ecdsaSize(info *algInfo) int {
	return (info.curve.Params().N.BitLen() + 7) / 8
}

// ecdsaRaw turns the ASN.1 DER signature a crypto.Signer returns into COSE's
// r || s, each left-padded to n bytes.
func ecdsaRaw(der []byte, n int) ([]byte, error) {
	var rs struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &rs)
	if err != nil || len(rest) != 0 {
		// Some HSM front-ends hand back the raw PKCS#11 form already.
		if len(der) == 2*n {
			return der, nil
		}
		return nil, fmt.Errorf("signer returned a malformed ECDSA signature")
	}
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 8*n || rs.S.BitLen() > 8*n {
		return nil, fmt.Errorf("signer returned an out-of-range ECDSA signature")
	}
	out := make([]byte, 2*n)
	rs.R.FillBytes(out[:n])
	rs.S.FillBytes(out[n:])
	return out, nil
}
