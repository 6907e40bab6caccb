package x509x

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

func csrTemplate() *x509.CertificateRequest {
	return &x509.CertificateRequest{Subject: pkix.Name{CommonName: "pq.example.com"}, DNSNames: []string{"pq.example.com"}}
}

func TestPQCSR(t *testing.T) {
	for _, a := range []algo.Algorithm{algo.MLDSA65, algo.SLHDSASHA2128f, algo.CompositeMLDSA65ECDSAP256, algo.CompositeMLDSA44Ed25519} {
		s := newSigner(t, a)
		der, err := CreateCertificateRequest(rand.Reader, csrTemplate(), s, nil, false)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		csr, err := ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if csr.Algorithm != a || !equalKeys(csr.PublicKey, s.Public()) || csr.DNSNames[0] != "pq.example.com" || csr.AltPublicKey != nil {
			t.Fatalf("%s: parsed %s", a, csr.Algorithm)
		}
		// Proof of possession: a CSR signed by another key is refused.
		tbs, alg, _, _ := signedParts(der)
		forged, _ := newSigner(t, a).Sign(rand.Reader, tbs, crypto.Hash(0))
		if _, err := ParseCertificateRequest(assembleSigned(tbs, alg, forged)); err == nil || !strings.Contains(err.Error(), "CSR signature does not verify") {
			t.Fatalf("%s: forged CSR: %v", a, err)
		}
	}
}

func TestCatalystCSR(t *testing.T) {
	s, alt := newSigner(t, algo.ECDSAP384), newSigner(t, algo.MLDSA65)
	tmpl := csrTemplate()
	tmpl.ExtraExtensions = []pkix.Extension{{Id: []int{1, 2, 3, 4}, Value: []byte{5, 0}}}
	der, err := CreateCertificateRequest(rand.Reader, tmpl, s, alt, false)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if csr.Algorithm != algo.ECDSAP384 || csr.AltAlgorithm != algo.MLDSA65 || !equalKeys(csr.AltPublicKey, alt.Public()) {
		t.Fatalf("parsed %s + %s", csr.Algorithm, csr.AltAlgorithm)
	}
	if len(csr.Extensions) != 2 { // SAN and the extra one survive
		t.Fatalf("extensions: %v", csr.Extensions)
	}
	// The attributes are a DER SET OF: sorted.
	_, attrs, _ := csrAttributes(csr.RawTBSCertificateRequest)
	for i := 1; i < len(attrs); i++ {
		if bytes.Compare(attrs[i-1], attrs[i]) > 0 {
			t.Fatal("attributes not in DER order")
		}
	}
	// The certificate issued from it carries the alternative key.
	root := newRoot(t, algo.ECDSAP384, algo.MLDSA87)
	leaf := issueLeaf(t, root, csr.PublicKey, csr.AltPublicKey)
	if got, _ := AltPublicKey(leaf); !equalKeys(got, alt.Public()) {
		t.Fatal("alternative key lost")
	}
	if _, err := Verify(leaf, nil, []*x509.Certificate{root.cert}, time.Now()); err != nil {
		t.Fatal(err)
	}

	// A wrong alternative signature with a valid primary one.
	fields, attrs, _ := csrAttributes(csr.RawTBSCertificateRequest)
	for i, a := range attrs {
		if oid, _, _ := parseAttribute(a); oid.Equal(OIDAltSignatureValue) {
			bad := bytes.Clone(a)
			bad[len(bad)-10] ^= 1
			attrs[i] = bad
		}
	}
	fields[3] = wrap(tagCSRAttributes, attrs...)
	tbs := wrap(0x30, fields...)
	sig, _ := algo.SignDigest(s, rand.Reader, tbs, false)
	alg, _ := signatureAlgorithmFor(algo.ECDSAP384, false)
	forged := assembleSigned(tbs, alg, sig)
	if _, err := x509.ParseCertificateRequest(forged); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCertificateRequest(forged); err == nil || !strings.Contains(err.Error(), "alternative signature does not verify") || !errors.Is(err, algo.ErrVerify) {
		t.Fatalf("forged alternative signature: %v", err)
	}

	// OpenSSL 3.0 sees an ordinary ECDSA request.
	bin := openssl(t)
	p := writePEM(t, t.TempDir(), "req.pem", "CERTIFICATE REQUEST", der)
	out, err := exec.Command(bin, "req", "-in", p, "-verify", "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl req -verify: %v\n%s", err, out)
	}
}

// A KEM key cannot sign its own request.
func TestKEMCSRRefused(t *testing.T) {
	kem, _ := algo.GenerateKey(algo.MLKEM768, rand.Reader)
	kemPub, _ := algo.PublicKey(kem)
	kemSPKI, _ := algo.MarshalPKIX(kemPub)
	s := newSigner(t, algo.MLDSA44)
	der, _ := CreateCertificateRequest(rand.Reader, csrTemplate(), s, nil, false)
	tbs, alg, _, _ := signedParts(der)
	fields, _ := splitSequence(tbs, 0x30)
	fields[2] = kemSPKI
	tbs = wrap(0x30, fields...)
	sig, _ := s.Sign(rand.Reader, tbs, crypto.Hash(0))
	if _, err := ParseCertificateRequest(assembleSigned(tbs, alg, sig)); err == nil || !strings.Contains(err.Error(), "ml-kem-768, which cannot sign") {
		t.Fatalf("got %v", err)
	}
	if _, err := algo.NewSigner(kem, algo.MLKEM768); err == nil {
		t.Fatal("KEM signer")
	}
}

// The classical AlgorithmIdentifiers written for a PQC subject or a
// Catalyst certificate are byte for byte those crypto/x509 writes.
func TestClassicalSignatureAlgorithmsMatchStdlib(t *testing.T) {
	for _, c := range []struct {
		a   algo.Algorithm
		pss bool
	}{{algo.ECDSAP256, false}, {algo.ECDSAP384, false}, {algo.ECDSAP521, false}, {algo.Ed25519, false},
		{algo.RSA2048, false}, {algo.RSA2048, true}, {algo.RSA4096, false}, {algo.RSA4096, true}} {
		s := newSigner(t, c.a)
		iss := Issuer{Signer: s, PSS: c.pss}
		tmpl := caTemplate(t, "std", 0)
		der, err := CreateCertificate(rand.Reader, tmpl, s.Public(), nil, iss) // classical: crypto/x509's own path
		if err != nil {
			t.Fatal(err)
		}
		_, stdAlg, _, _ := signedParts(der)
		ours, err := signatureAlgorithmFor(c.a, c.pss)
		if err != nil || !bytes.Equal(ours.marshal(), stdAlg.marshal()) {
			t.Errorf("%s pss=%v: % x, crypto/x509 writes % x", c.a, c.pss, ours.marshal(), stdAlg.marshal())
		}
		// And our verifier accepts crypto/x509's signatures.
		cert := mustParse(t, der)
		if err := verifySignature(s.Public(), stdAlg, cert.RawTBSCertificate, cert.Signature); err != nil {
			t.Errorf("%s: %v", c.a, err)
		}
		// A classical CA issuing a post-quantum leaf goes through our path.
		leaf := issueLeaf(t, ca{mustParse(t, der), Issuer{Cert: mustParse(t, der), Signer: s, PSS: c.pss}}, newSigner(t, algo.MLDSA44).Public(), nil)
		if err := leaf.CheckSignatureFrom(cert); err != nil {
			t.Errorf("%s: crypto/x509 rejects our signature: %v", c.a, err)
		}
	}
}
