package x509x

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
)

// Signature algorithm identifiers for the classical algorithms, as
// crypto/x509 writes them; the post-quantum and composite ones are the key
// OIDs from the algo registry, parameters absent.
var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidRSASSAPSS       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

var asn1Null = []byte{0x05, 0x00}

// algorithmID is a parsed AlgorithmIdentifier; params holds the DER of
// the parameters, nil when absent.
type algorithmID struct {
	oid    asn1.ObjectIdentifier
	params []byte
}

func (a algorithmID) marshal() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.oid)
		if a.params != nil {
			b.AddBytes(a.params)
		}
	})
	return b.BytesOrPanic()
}

func parseAlgorithmID(der []byte) (algorithmID, error) {
	s := cryptobyte.String(der)
	var seq cryptobyte.String
	var a algorithmID
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() || !seq.ReadASN1ObjectIdentifier(&a.oid) {
		return a, errors.New("malformed algorithm identifier")
	}
	if !seq.Empty() {
		var params cryptobyte.String
		if !seq.ReadAnyASN1Element(&params, new(cbasn1.Tag)) || !seq.Empty() {
			return a, errors.New("malformed algorithm identifier parameters")
		}
		a.params = params
	}
	return a, nil
}

// hashOID maps the hashes qpki signs with to their identifiers.
func hashOID(h crypto.Hash) asn1.ObjectIdentifier {
	switch h {
	case crypto.SHA256:
		return oidSHA256
	case crypto.SHA384:
		return oidSHA384
	case crypto.SHA512:
		return oidSHA512
	}
	return nil
}

// pssParams encodes RSASSA-PSS-params with MGF1 over the same hash and a
// salt as long as the hash, exactly as crypto/x509 does.
func pssParams(h crypto.Hash) []byte {
	hashAI := algorithmID{hashOID(h), asn1Null}.marshal()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(hashAI) })
		b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddBytes(algorithmID{oidMGF1, hashAI}.marshal())
		})
		b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1Int64(int64(h.Size())) })
	})
	return b.BytesOrPanic()
}

// signatureAlgorithmFor returns the AlgorithmIdentifier a signer of
// algorithm a writes.
func signatureAlgorithmFor(a algo.Algorithm, pss bool) (algorithmID, error) {
	info, ok := algo.Lookup(a)
	if !ok {
		return algorithmID{}, fmt.Errorf("unknown algorithm %q", a)
	}
	if !info.CanSign {
		return algorithmID{}, fmt.Errorf("%s keys cannot sign", a)
	}
	if info.SignRefused != nil {
		return algorithmID{}, fmt.Errorf("%s: %w", a, info.SignRefused)
	}
	h := algo.HashFor(a)
	switch info.Family {
	case algo.FamilyECDSA:
		switch h {
		case crypto.SHA256:
			return algorithmID{oid: oidECDSAWithSHA256}, nil
		case crypto.SHA384:
			return algorithmID{oid: oidECDSAWithSHA384}, nil
		case crypto.SHA512:
			return algorithmID{oid: oidECDSAWithSHA512}, nil
		}
	case algo.FamilyRSA:
		if pss {
			return algorithmID{oidRSASSAPSS, pssParams(h)}, nil
		}
		switch h {
		case crypto.SHA256:
			return algorithmID{oidSHA256WithRSA, asn1Null}, nil
		case crypto.SHA384:
			return algorithmID{oidSHA384WithRSA, asn1Null}, nil
		case crypto.SHA512:
			return algorithmID{oidSHA512WithRSA, asn1Null}, nil
		}
	case algo.FamilyEd25519:
		return algorithmID{oid: oidEd25519}, nil
	case algo.FamilyMLDSA, algo.FamilySLHDSA, algo.FamilyComposite:
		return algorithmID{oid: info.OID}, nil
	}
	return algorithmID{}, fmt.Errorf("no X.509 signature algorithm for %s", a)
}

// signMessage signs msg with s as the X.509 signature algorithm requires.
func signMessage(rand io.Reader, s algo.Signer, msg []byte, pss bool) ([]byte, error) {
	return algo.SignDigest(s, rand, msg, pss)
}

// SignatureAlgorithmName names an AlgorithmIdentifier for people:
// "ml-dsa-65", "composite-mldsa65-ecdsa-p256", "ecdsa-with-SHA384", ...
func signatureAlgorithmName(a algorithmID) string {
	if info, ok := algo.ByOID(a.oid); ok && !info.Classical {
		return string(info.Name)
	}
	switch {
	case a.oid.Equal(oidECDSAWithSHA256):
		return "ecdsa-with-SHA256"
	case a.oid.Equal(oidECDSAWithSHA384):
		return "ecdsa-with-SHA384"
	case a.oid.Equal(oidECDSAWithSHA512):
		return "ecdsa-with-SHA512"
	case a.oid.Equal(oidSHA256WithRSA):
		return "sha256WithRSAEncryption"
	case a.oid.Equal(oidSHA384WithRSA):
		return "sha384WithRSAEncryption"
	case a.oid.Equal(oidSHA512WithRSA):
		return "sha512WithRSAEncryption"
	case a.oid.Equal(oidRSASSAPSS):
		return "rsassa-pss"
	case a.oid.Equal(oidEd25519):
		return "ed25519"
	}
	return a.oid.String()
}

// verifySignature checks sig over msg made with pub under signature
// algorithm a. The key must be of the kind the algorithm names.
func verifySignature(pub crypto.PublicKey, a algorithmID, msg, sig []byte) error {
	if info, ok := algo.ByOID(a.oid); ok && !info.Classical {
		if !info.CanSign {
			return fmt.Errorf("%s is not a signature algorithm", info.Name)
		}
		if a.params != nil {
			return fmt.Errorf("%s signature algorithm: parameters must be absent", info.Name)
		}
		if _, ok := algo.PreHashOf(info.Name); ok {
			// A pre-hash signature; the key may be the pure or the
			// pre-hash key of the same parameter set.
			return algo.VerifyPreHash(info.Name, pub, msg, nil, sig)
		}
		if err := algo.CheckKey(pub, info.Name); err != nil {
			return fmt.Errorf("%s signature: %v", info.Name, err)
		}
		v, ok := pub.(interface{ Verify(msg, sig []byte) error })
		if !ok {
			return fmt.Errorf("%s: %T cannot verify", info.Name, pub)
		}
		return v.Verify(msg, sig)
	}
	name := signatureAlgorithmName(a)
	var h crypto.Hash
	switch {
	case a.oid.Equal(oidECDSAWithSHA256), a.oid.Equal(oidSHA256WithRSA):
		h = crypto.SHA256
	case a.oid.Equal(oidECDSAWithSHA384), a.oid.Equal(oidSHA384WithRSA):
		h = crypto.SHA384
	case a.oid.Equal(oidECDSAWithSHA512), a.oid.Equal(oidSHA512WithRSA):
		h = crypto.SHA512
	case a.oid.Equal(oidRSASSAPSS):
		var err error
		if h, err = parsePSSParams(a.params); err != nil {
			return err
		}
	case a.oid.Equal(oidEd25519):
	default:
		return fmt.Errorf("unsupported signature algorithm %s", a.oid)
	}
	var digest []byte
	if h != 0 {
		d := h.New()
		d.Write(msg)
		digest = d.Sum(nil)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !isECDSA(a.oid) || a.params != nil {
			break
		}
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return fmt.Errorf("%s: %w", name, algo.ErrVerify)
		}
		return nil
	case *rsa.PublicKey:
		if a.oid.Equal(oidRSASSAPSS) {
			if err := rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: h.Size(), Hash: h}); err != nil {
				return fmt.Errorf("%s: %w", name, algo.ErrVerify)
			}
			return nil
		}
		if isECDSA(a.oid) || a.oid.Equal(oidEd25519) {
			break
		}
		if err := rsa.VerifyPKCS1v15(k, h, digest, sig); err != nil {
			return fmt.Errorf("%s: %w", name, algo.ErrVerify)
		}
		return nil
	case ed25519.PublicKey:
		if !a.oid.Equal(oidEd25519) || a.params != nil {
			break
		}
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k, msg, sig) {
			return fmt.Errorf("%s: %w", name, algo.ErrVerify)
		}
		return nil
	}
	return fmt.Errorf("%s signature cannot be made by a %T key", name, pub)
}

func isECDSA(oid asn1.ObjectIdentifier) bool {
	return oid.Equal(oidECDSAWithSHA256) || oid.Equal(oidECDSAWithSHA384) || oid.Equal(oidECDSAWithSHA512)
}

// parsePSSParams accepts the RSASSA-PSS parameters crypto/x509 accepts:
// SHA-256/384/512, MGF1 with the same hash, salt length = hash length.
func parsePSSParams(params []byte) (crypto.Hash, error) {
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		if string(params) == string(pssParams(h)) {
			return h, nil
		}
	}
	// Also tolerate absent NULLs in the hash identifiers.
	var p struct {
		Hash       asn1.RawValue `asn1:"explicit,tag:0"`
		MGF        asn1.RawValue `asn1:"explicit,tag:1"`
		SaltLength int           `asn1:"explicit,tag:2"`
	}
	if rest, err := asn1.Unmarshal(params, &p); err == nil && len(rest) == 0 {
		ha, err1 := parseAlgorithmID(p.Hash.FullBytes)
		mgf, err2 := parseAlgorithmID(p.MGF.FullBytes)
		if err1 == nil && err2 == nil && mgf.oid.Equal(oidMGF1) {
			mh, err3 := parseAlgorithmID(mgf.params)
			for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
				if err3 == nil && ha.oid.Equal(hashOID(h)) && mh.oid.Equal(hashOID(h)) && p.SaltLength == h.Size() {
					return h, nil
				}
			}
		}
	}
	return 0, errors.New("unsupported RSASSA-PSS parameters")
}
