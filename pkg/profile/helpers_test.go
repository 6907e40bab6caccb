package profile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	keysOnce sync.Once
	keyP256  *ecdsa.PrivateKey
	keyP384  *ecdsa.PrivateKey
	keyRSA   *rsa.PrivateKey
	keyEd    ed25519.PrivateKey
	issuer   *x509.Certificate
)

// testKeys makes the keys once: RSA generation is the slow part.
func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keyP256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if keyP384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if keyRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if _, keyEd, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Issuer"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(100 * 365 * 24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, keyP256.Public(), keyP256)
		if err != nil {
			panic(err)
		}
		if issuer, err = x509.ParseCertificate(der); err != nil {
			panic(err)
		}
	})
}

// keyFor returns a private key of the family a profile wants.
func keyFor(t testing.TB, p *Profile) crypto.Signer {
	testKeys(t)
	switch p.Algorithm {
	case "ecdsa-p256":
		return keyP256
	case "ecdsa-p384":
		return keyP384
	case "ed25519":
		return keyEd
	}
	if strings.HasPrefix(string(p.Algorithm), "rsa-") {
		return keyRSA // rsa-2048: in every RSA profile's family
	}
	t.Fatalf("no test key for %s", p.Algorithm)
	return nil
}

// sign has the test issuer sign a template and parses the result, so
// tests look at real DER, not at the template.
func sign(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	testKeys(t)
	tmpl.SerialNumber = big.NewInt(42)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, keyP256)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return cert
}

func makeCSR(t testing.TB, key crypto.Signer, cn string, dns []string, ips []string, emails []string, uris []string) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, EmailAddresses: emails}
	for _, s := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func findExt(c *x509.Certificate, oid asn1.ObjectIdentifier) *pkix.Extension {
	for i := range c.Extensions {
		if c.Extensions[i].Id.Equal(oid) {
			return &c.Extensions[i]
		}
	}
	return nil
}

func mustLoad(t testing.TB, name string) *Profile {
	t.Helper()
	p, err := Load(name, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t testing.TB, yml string) *Profile {
	t.Helper()
	p, err := Parse([]byte(yml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// wantErr fails unless err is set and mentions every fragment.
func wantErr(t testing.TB, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error mentioning %q, got nil", fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error %q does not mention %q", err, f)
		}
	}
}

// wantVarErr fails unless err is a *VarError for the named variable.
func wantVarErr(t testing.TB, err error, name string) {
	t.Helper()
	var ve *VarError
	if !errors.As(err, &ve) {
		t.Fatalf("want a VarError for %q, got %v", name, err)
	}
	if ve.Name != name {
		t.Fatalf("VarError names %q, want %q (%v)", ve.Name, name, err)
	}
	if !strings.Contains(err.Error(), `"`+name+`"`) {
		t.Fatalf("error %q does not name %q", err, name)
	}
}
