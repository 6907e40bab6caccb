package x509x

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/slhdsa"
	"github.com/qpki/qpki/pkg/algo"
)

// A CRL signed with HashSLH-DSA by a CA's pure SLH-DSA key verifies
// (FIPS 205 lets one key make both kinds); tampered, it does not. qpki
// itself refuses to sign with the pre-hash algorithm.
func TestPreHashCRL(t *testing.T) {
	root := newRoot(t, algo.SLHDSASHA2128f, "")
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: fixedNow, NextUpdate: fixedNow.Add(time.Hour)}
	der, err := CreateRevocationList(rand.Reader, tmpl, root.iss)
	if err != nil {
		t.Fatal(err)
	}
	tbs, _, _, err := signedParts(der)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseCRLTBS(tbs)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := algo.Lookup(algo.HashSLHDSASHA2128fSHA256)
	alg := algorithmID{oid: info.OID}
	p.fields[p.sigIdx] = alg.marshal()
	tbs = p.encode()

	priv := root.iss.Signer.(interface{ Unwrap() crypto.Signer }).Unwrap().(*algo.SLHDSAPrivateKey)
	sk := slhdsa.PrivateKey{ID: slhdsa.SHA2_128f}
	if err := sk.UnmarshalBinary(priv.Bytes()); err != nil {
		t.Fatal(err)
	}
	ph, _ := slhdsa.NewPreHashWithHash(crypto.SHA256)
	ph.Write(tbs)
	m, _ := ph.BuildMessage()
	sig, err := slhdsa.SignRandomized(&sk, rand.Reader, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(assembleSigned(tbs, alg, sig))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCRLSignature(crl, root.cert); err != nil {
		t.Fatalf("pre-hash CRL: %v", err)
	}
	sig[10] ^= 1
	crl, _ = x509.ParseRevocationList(assembleSigned(tbs, alg, sig))
	if err := CheckCRLSignature(crl, root.cert); !errors.Is(err, algo.ErrVerify) {
		t.Fatalf("tampered pre-hash CRL: %v", err)
	}
	if _, err := signatureAlgorithmFor(algo.HashSLHDSASHA2128fSHA256, false); !errors.Is(err, algo.ErrPreHashSigning) {
		t.Fatalf("signing with a pre-hash algorithm: %v", err)
	}
}
