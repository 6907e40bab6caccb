package x509x

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

// CheckIssued accepts a certificate the CA key signed, whether this
// process made it (remembered once) or not (verified with the issuer
// tables), and refuses one with a broken signature or signed by another
// key under the same name.
func TestCheckIssued(t *testing.T) {
	mkCA := func() (*x509.Certificate, algo.Signer) {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		s, _ := algo.NewSigner(priv, algo.ECDSAP256)
		root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Same Name"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := CreateCertificate(rand.Reader, root, priv.Public(), nil, Issuer{Signer: s})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, s
	}
	caCert, signer := mkCA()
	rogueCert, rogue := mkCA()
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	issue := func(c *x509.Certificate, s algo.Signer) *x509.Certificate {
		der, err := CreateCertificate(rand.Reader, leaf, leafKey.Public(), nil, Issuer{Cert: c, Signer: s})
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return cert
	}
	good := issue(caCert, signer)
	if err := CheckIssued(good, caCert); err != nil {
		t.Fatalf("made and checked here: %v", err)
	}
	if err := CheckIssued(good, caCert); err != nil { // forgotten: verified now
		t.Fatalf("verified with the tables: %v", err)
	}
	bad := issue(caCert, signer)
	selfChecked.take(bad.Raw, caCert.PublicKey.(*ecdsa.PublicKey)) // as if another process made it
	bad.Signature = append([]byte(nil), bad.Signature...)
	bad.Signature[len(bad.Signature)-1] ^= 1
	if err := CheckIssued(bad, caCert); err == nil {
		t.Fatal("a broken signature passed")
	}
	// Signed here, by another key under the same name: remembered with
	// that key, so not taken for the CA's.
	if err := CheckIssued(issue(rogueCert, rogue), caCert); err == nil {
		t.Fatal("a certificate of another key under the CA's name passed")
	}
}
