package cose_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/cose"
)

// A CA certificate and a key it certified, as a file or HSM key would be.
func exampleKeyAndCA() (algo.Signer, *x509.Certificate) {
	priv, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
	signer, _ := algo.NewSigner(priv, algo.ECDSAP256)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Example CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	ca, _ := x509.ParseCertificate(der)
	return signer, ca
}

func Example() {
	signer, ca := exampleKeyAndCA()

	// What `qpki cose sign --type cwt --sub device-7 --exp 24h --claim role=sensor` does.
	claims, err := cose.ClaimFlags{Subject: "device-7", Expiry: "24h", Claims: []string{"role=sensor"}}.Build(time.Now())
	if err != nil {
		panic(err)
	}
	token, err := cose.Sign(rand.Reader, cose.SignRequest{Type: cose.TypeCWT, Claims: claims},
		[]cose.Signer{signer}, [][]*x509.Certificate{{ca}})
	if err != nil {
		panic(err)
	}

	// What `qpki cose verify token.cbor --ca ca.crt` does.
	m, err := cose.Verify(token, cose.VerifyOptions{Roots: []*x509.Certificate{ca}})
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Type, m.Signatures[0].Alg(), m.Claims.Subject, m.Claims.Extra["role"])
	// Output: cwt ES256 device-7 sensor
}
