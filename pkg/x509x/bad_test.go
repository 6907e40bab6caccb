package x509x

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
)

// resign re-encodes a certificate after edit changed its TBS fields and
// signs it again with iss's primary signer, as a forger holding only that
// key could.
func resign(t *testing.T, c *x509.Certificate, iss Issuer, edit func(p *tbsParts)) *x509.Certificate {
	t.Helper()
	p, err := parseCertTBS(c.RawTBSCertificate)
	if err != nil {
		t.Fatal(err)
	}
	edit(p)
	alg, _ := p.signatureAlgorithm()
	der, err := signTBS(rand.Reader, p.encode(), alg, iss)
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, der)
}

// forgeAltSignature flips a bit of the altSignatureValue and re-signs the
// primary signature.
func forgeAltSignature(t *testing.T, c *x509.Certificate, iss Issuer) *x509.Certificate {
	return resign(t, c, iss, func(p *tbsParts) {
		exts, _ := p.extensions()
		rest, val, _ := withoutExtension(exts, OIDAltSignatureValue)
		if val == nil {
			t.Fatal("no altSignatureValue")
		}
		var sig asn1.BitString
		asn1.Unmarshal(extensionContent(val), &sig)
		sig.Bytes[len(sig.Bytes)/2] ^= 0x10
		bs, _ := asn1.Marshal(sig)
		p.fields[p.extIdx] = extensionsWrapper(p.extTag, append(rest, extension(OIDAltSignatureValue, bs)))
	})
}

// rawCert assembles a certificate with any TBS and signature fields, for
// inputs no signer would make.
func rawCert(t *testing.T, c *x509.Certificate, edit func(p *tbsParts), sigAlg []byte, sig []byte) []byte {
	p, err := parseCertTBS(c.RawTBSCertificate)
	if err != nil {
		t.Fatal(err)
	}
	edit(p)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(p.encode())
		b.AddBytes(sigAlg)
		b.AddASN1BitString(sig)
	})
	return b.BytesOrPanic()
}

func spki(oid asn1.ObjectIdentifier, params []byte, key []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddBytes(params)
		})
		b.AddASN1BitString(key)
	})
	return b.BytesOrPanic()
}

func TestBadPublicKeys(t *testing.T) {
	root := newRoot(t, algo.MLDSA65, "")
	leafKey := newSigner(t, algo.MLDSA44)
	leaf := issueLeaf(t, root, leafKey.Public(), nil)
	raw := leafKey.Public().(*algo.MLDSAPublicKey).Bytes()
	oid := algo.MLDSA44.Info().OID
	cases := []struct {
		name, want string
		spki       []byte
	}{
		{"truncated", "ml-dsa-44 public key is 1311 bytes, want 1312", spki(oid, nil, raw[:1311])},
		{"oversized", "ml-dsa-44 public key is 1313 bytes, want 1312", spki(oid, nil, append(raw, 0))},
		{"unknown OID", "algorithm 1.3.6.1.4.1.99999.1", spki(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, nil, raw)},
		{"parameters present", "ml-dsa-44: algorithm identifier parameters must be absent", spki(oid, []byte{5, 0}, raw)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Certificates are signed as they are; the key is what's wrong.
			der := rawCert(t, root.cert, func(p *tbsParts) { p.fields[p.sigIdx+4] = c.spki }, (algorithmID{oid: algo.MLDSA65.Info().OID}).marshal(), root.cert.Signature)
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := PublicKey(cert); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("PublicKey: got %v, want %q", err, c.want)
			}
			// As an issuer, the bad key fails the chain with the same reason.
			if err := CheckSignatureFrom(leaf, cert); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("CheckSignatureFrom: got %v", err)
			}
		})
	}
}

func TestBadSignatureAlgorithm(t *testing.T) {
	root := newRoot(t, algo.MLDSA65, "")
	leaf := issueLeaf(t, root, newSigner(t, algo.MLDSA44).Public(), nil)
	mldsa65 := algo.MLDSA65.Info().OID
	cases := []struct {
		name, want string
		alg        algorithmID
	}{
		{"parameters present", "ml-dsa-65 signature algorithm: parameters must be absent", algorithmID{mldsa65, asn1Null}},
		{"unknown OID", "unsupported signature algorithm 1.3.6.1.4.1.99999.2", algorithmID{oid: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2}}},
		{"other parameter set", "ml-dsa-87 signature: key is ml-dsa-65 but ml-dsa-87 is required", algorithmID{oid: algo.MLDSA87.Info().OID}},
		{"KEM as signature", "ml-kem-768 is not a signature algorithm", algorithmID{oid: algo.MLKEM768.Info().OID}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := c.alg.marshal()
			der := rawCert(t, leaf, func(p *tbsParts) { p.fields[p.sigIdx] = a }, a, leaf.Signature)
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckSignatureFrom(cert, root.cert); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
	// A flipped signature bit.
	sig := bytes.Clone(leaf.Signature)
	sig[100] ^= 1
	bad := mustParse(t, rawCert(t, leaf, func(*tbsParts) {}, algorithmID{oid: mldsa65}.marshal(), sig))
	if err := CheckSignatureFrom(bad, root.cert); !errors.Is(err, algo.ErrVerify) {
		t.Errorf("flipped bit: %v", err)
	}
}

func TestBadCatalystSignature(t *testing.T) {
	root := newRoot(t, algo.ECDSAP384, algo.MLDSA65)
	leaf := issueLeaf(t, root, newSigner(t, algo.ECDSAP256).Public(), nil)
	forged := forgeAltSignature(t, leaf, root.iss)
	primary, alt := VerifyCatalyst(forged, root.cert)
	if primary != nil {
		t.Fatalf("primary signature should verify: %v", primary)
	}
	if alt == nil || !strings.Contains(alt.Error(), "alternative signature") || !errors.Is(alt, algo.ErrVerify) {
		t.Fatalf("alternative: %v", alt)
	}
	if err := CheckSignatureFrom(forged, root.cert); err == nil || !strings.Contains(err.Error(), "alternative signature: ml-dsa-65") {
		t.Fatalf("CheckSignatureFrom: %v", err)
	}
	// Stripping the alternative signature altogether leaves a certificate
	// whose altSignatureAlgorithm promises one; it is not Catalyst any more
	// and the primary signature covers the change.
	stripped := resign(t, leaf, root.iss, func(p *tbsParts) {
		exts, _ := p.extensions()
		rest, _, _ := withoutExtension(exts, OIDAltSignatureValue)
		p.fields[p.extIdx] = extensionsWrapper(p.extTag, rest)
	})
	if IsCatalyst(stripped) {
		t.Fatal("stripped certificate still Catalyst")
	}
	// The issuer's alternative key is needed: a parent without one fails.
	if _, alt := VerifyCatalyst(leaf, newRoot(t, algo.ECDSAP384, "").cert); alt == nil {
		t.Fatal("alternative signature verified without an issuer alternative key")
	}
}

func TestBadCompositeSignature(t *testing.T) {
	root := newRoot(t, algo.CompositeMLDSA65ECDSAP256, "")
	leaf := issueLeaf(t, root, newSigner(t, algo.ECDSAP256).Public(), nil)
	alg := algorithmID{oid: algo.CompositeMLDSA65ECDSAP256.Info().OID}.marshal()
	for _, c := range []struct {
		name, want string
		at         int
	}{
		{"ML-DSA half", "ML-DSA component (ml-dsa-65)", 50},
		{"ECDSA half", "traditional component (ecdsa-p256)", len(leaf.Signature) - 5},
	} {
		sig := bytes.Clone(leaf.Signature)
		sig[c.at] ^= 1
		bad := mustParse(t, rawCert(t, leaf, func(*tbsParts) {}, alg, sig))
		err := CheckSignatureFrom(bad, root.cert)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	// A valid ML-DSA half spliced with the traditional half another
	// composite key made over the same TBS.
	other := newRoot(t, algo.CompositeMLDSA65ECDSAP256, "")
	otherSig, err := other.iss.Signer.Sign(rand.Reader, leaf.RawTBSCertificate, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	spliced := append(bytes.Clone(leaf.Signature[:3309]), otherSig[3309:]...)
	bad := mustParse(t, rawCert(t, leaf, func(*tbsParts) {}, alg, spliced))
	if err := CheckSignatureFrom(bad, root.cert); err == nil || !strings.Contains(err.Error(), "traditional component (ecdsa-p256)") {
		t.Errorf("spliced signature: %v", err)
	}
}

func TestIssuerKeyMismatch(t *testing.T) {
	root := newRoot(t, algo.MLDSA65, "")
	wrong := root.iss
	wrong.Signer = newSigner(t, algo.MLDSA65)
	if _, err := CreateCertificate(rand.Reader, leafTemplate(t, "x"), newSigner(t, algo.MLDSA44).Public(), nil, wrong); err == nil || !strings.Contains(err.Error(), "does not match the issuer") {
		t.Fatalf("got %v", err)
	}
	cat := newRoot(t, algo.ECDSAP384, algo.MLDSA65)
	wrong = cat.iss
	wrong.AltSigner = newSigner(t, algo.MLDSA65)
	if _, err := CreateCertificate(rand.Reader, leafTemplate(t, "x"), newSigner(t, algo.ECDSAP256).Public(), nil, wrong); err == nil || !strings.Contains(err.Error(), "alternative signer key does not match") {
		t.Fatalf("got %v", err)
	}
}
