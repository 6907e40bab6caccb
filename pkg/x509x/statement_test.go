package x509x

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

func TestStatementOfPossession(t *testing.T) {
	root := newRoot(t, algo.MLDSA65, "")
	signer := newSigner(t, algo.MLDSA44)
	signCert := issueLeaf(t, root, signer.Public(), nil)
	kem, _ := algo.GenerateKey(algo.MLKEM768, rand.Reader)
	kemPub, _ := algo.PublicKey(kem)

	plain, err := CreateCertificateRequest(rand.Reader, csrTemplate(), signer, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if KeyCannotSign(plain) {
		t.Fatal("KeyCannotSign: true for an ML-DSA request")
	}
	for _, include := range []bool{true, false} {
		der, err := CreateCertificateRequestWithStatement(rand.Reader, csrTemplate(), kemPub, signer, signCert, include, false)
		if err != nil {
			t.Fatal(err)
		}
		if !KeyCannotSign(der) {
			t.Fatal("KeyCannotSign: false for an ML-KEM request")
		}
		if KeyCannotSign(der[:len(der)/2]) {
			t.Fatal("KeyCannotSign: true for a truncated request")
		}
		// An ordinary parse refuses it: the subject key cannot sign.
		if _, err := ParseCertificateRequest(der); err == nil || !strings.Contains(err.Error(), "RFC 9883") {
			t.Fatalf("ordinary parse: %v", err)
		}
		lookup := func(rawIssuer []byte, serial *big.Int) (*x509.Certificate, error) {
			if serial.Cmp(signCert.SerialNumber) == 0 {
				return signCert, nil
			}
			return nil, errors.New("unknown")
		}
		csr, got, err := ParseCertificateRequestWithStatement(der, lookup)
		if err != nil {
			t.Fatal(err)
		}
		if csr.Algorithm != algo.MLKEM768 || !equalKeys(csr.PublicKey, kemPub) || got.SerialNumber.Cmp(signCert.SerialNumber) != 0 {
			t.Fatalf("parsed %s", csr.Algorithm)
		}
		if _, err := Verify(got, nil, []*x509.Certificate{root.cert}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if !include {
			if _, _, err := ParseCertificateRequestWithStatement(der, nil); err == nil {
				t.Fatal("statement without certificate accepted without lookup")
			}
		}
		// The certificate for the KEM key, issued from it.
		if leaf := issueLeaf(t, root, csr.PublicKey, nil); leaf.PublicKeyAlgorithm != x509.UnknownPublicKeyAlgorithm {
			t.Fatal("unexpected key algorithm")
		}
	}

	// Signed by a key other than the named certificate's.
	other := newSigner(t, algo.MLDSA44)
	if _, err := CreateCertificateRequestWithStatement(rand.Reader, csrTemplate(), kemPub, other, signCert, true, false); err == nil {
		t.Fatal("mismatched signer accepted at creation")
	}
	otherCert := issueLeaf(t, root, other.Public(), nil)
	der, _ := CreateCertificateRequestWithStatement(rand.Reader, csrTemplate(), kemPub, other, otherCert, false, false)
	wrong := func([]byte, *big.Int) (*x509.Certificate, error) { return signCert, nil }
	if _, _, err := ParseCertificateRequestWithStatement(der, wrong); err == nil || !strings.Contains(err.Error(), "does not verify with the signer certificate") {
		t.Fatalf("wrong signer certificate: %v", err)
	}
	// Not for signature keys.
	if _, err := CreateCertificateRequestWithStatement(rand.Reader, csrTemplate(), other.Public(), signer, signCert, true, false); err == nil {
		t.Fatal("statement for a signature key")
	}
}
