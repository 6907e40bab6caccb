package x509x

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// plainSigner hides a signer's SelfChecker: crypto/x509 then does it all.
type plainSigner struct{ algo.Signer }

// lyingSigner signs with another key, and checks with the given answer.
type lyingSigner struct {
	algo.Signer
	other *ecdsa.PrivateKey
	check error
}

func (l lyingSigner) Sign(r io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	return ecdsa.SignASN1(r, l.other, digest)
}

func (l lyingSigner) CheckOwnSignature(digest, sig []byte) error {
	if l.check != nil {
		return l.check
	}
	return l.Signer.(algo.SelfChecker).CheckOwnSignature(digest, sig)
}

// The certificate an ECDSA self-checking signer makes is the one crypto/x509
// makes (the same TBSCertificate, a signature that verifies), and a signer that returns a
// bad signature is caught, by its own check or by the verification that
// stands in for it.
func TestSelfCheckedCertificate(t *testing.T) {
	for _, c := range []struct {
		alg   algo.Algorithm
		curve elliptic.Curve
	}{{algo.ECDSAP256, elliptic.P256()}, {algo.ECDSAP384, elliptic.P384()}, {algo.ECDSAP521, elliptic.P521()}} {
		priv, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		s, err := algo.NewSigner(priv, c.alg)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.(algo.SelfChecker); !ok {
			t.Fatalf("%s: no SelfChecker", c.alg)
		}
		leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: "self-check.example"},
			NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1800000000, 0), DNSNames: []string{"self-check.example"},
			SubjectKeyId: []byte{1, 2, 3}, AuthorityKeyId: []byte{4, 5, 6}}
		root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Root"}, NotBefore: tmpl.NotBefore,
			NotAfter: tmpl.NotAfter, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: []byte{4, 5, 6}}
		rootDER, err := CreateCertificate(rand.Reader, root, priv.Public(), nil, Issuer{Signer: s})
		if err != nil {
			t.Fatal(err)
		}
		rootCert, err := x509.ParseCertificate(rootDER)
		if err != nil {
			t.Fatal(err)
		}
		if err := rootCert.CheckSignatureFrom(rootCert); err != nil {
			t.Fatalf("%s self-signed: %v", c.alg, err)
		}
		fast, err := CreateCertificate(rand.Reader, tmpl, leafKey.Public(), nil, Issuer{Cert: rootCert, Signer: s})
		if err != nil {
			t.Fatal(err)
		}
		std, err := CreateCertificate(rand.Reader, tmpl, leafKey.Public(), nil, Issuer{Cert: rootCert, Signer: plainSigner{s}})
		if err != nil {
			t.Fatal(err)
		}
		a, err := x509.ParseCertificate(fast)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := x509.ParseCertificate(std)
		if !bytes.Equal(a.RawTBSCertificate, b.RawTBSCertificate) || a.SignatureAlgorithm != b.SignatureAlgorithm {
			t.Fatalf("%s: the TBS differs from crypto/x509's", c.alg)
		}
		if err := a.CheckSignatureFrom(rootCert); err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}

		other, _ := ecdsa.GenerateKey(c.curve, rand.Reader)
		for name, check := range map[string]error{"own check": nil, "stand-in verify": algo.ErrCannotCheck} {
			_, err := CreateCertificate(rand.Reader, tmpl, leafKey.Public(), nil, Issuer{Cert: rootCert, Signer: lyingSigner{s, other, check}})
			if err == nil || !strings.Contains(err.Error(), "invalid") {
				t.Errorf("%s, %s: a bad signature gave %v", c.alg, name, err)
			}
		}
		if _, err := CreateCertificate(rand.Reader, tmpl, leafKey.Public(), nil, Issuer{Cert: rootCert, Signer: lyingSigner{s, priv, algo.ErrCannotCheck}}); err != nil {
			t.Errorf("%s: a good signature checked by verify: %v", c.alg, err)
		}
	}
}
