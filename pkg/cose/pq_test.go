package cose

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// Post-quantum and hybrid tokens through the signers pkg/algo provides.

func TestPostQuantumRoundTrip(t *testing.T) {
	pki := newPKI(t, "PQ")
	roots := []*x509.Certificate{pki.root}
	for _, tc := range []struct {
		key  algo.Algorithm
		want Algorithm
	}{
		{algo.MLDSA44, AlgMLDSA44},
		{algo.MLDSA65, AlgMLDSA65},
		{algo.MLDSA87, AlgMLDSA87},
		{algo.SLHDSASHA2128s, AlgSLHDSASHA2128s},
		{algo.SLHDSASHAKE128s, AlgSLHDSASHAKE128s},
	} {
		t.Run(string(tc.key), func(t *testing.T) {
			s := testSigner(t, tc.key)
			chain := pki.leafFor(t, s, string(tc.key)+" leaf", nil)
			if chain[0].PublicKey != nil {
				t.Fatalf("crypto/x509 decoded the %s key; the test means to exercise pkg/x509x", tc.key)
			}
			tok, err := Sign(rand.Reader, SignRequest{Type: TypeCWT, Claims: &Claims{Subject: "pq", Expiry: time.Now().Add(time.Hour)}}, []Signer{s}, [][]*x509.Certificate{chain})
			if err != nil {
				t.Fatal(err)
			}
			m, err := Verify(tok, VerifyOptions{Roots: roots})
			if err != nil {
				t.Fatal(err)
			}
			if m.Signatures[0].Alg() != tc.want || len(m.Signatures[0].Chain) != 3 || m.Claims.Subject != "pq" {
				t.Errorf("alg %s chain %d claims %+v", m.Signatures[0].Alg(), len(m.Signatures[0].Chain), m.Claims)
			}
			// Verified with the bare key, too.
			if _, err := Verify(tok, VerifyOptions{PublicKeys: []crypto.PublicKey{s.Public()}}); err != nil {
				t.Errorf("pinned key: %v", err)
			}
			bad := bytes.Clone(tok)
			i := bytes.Index(bad, m.Signatures[0].Value)
			bad[i+100] ^= 0x04
			if _, err := Verify(bad, VerifyOptions{Roots: roots}); !errors.Is(err, ErrSignature) {
				t.Errorf("tampered signature: %v", err)
			}
			// The algorithm is bound to the key: an ML-DSA-65 key under an
			// ML-DSA-44 header is refused.
			other := AlgMLDSA44
			if tc.want == AlgMLDSA44 {
				other = AlgMLDSA65
			}
			if _, err := Sign(rand.Reader, SignRequest{Algorithms: []string{other.String()}}, []Signer{s}, nil); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("mismatched algorithm: %v", err)
			}
		})
	}
	// SLH-DSA parameter sets the COSE draft does not register.
	if _, err := Sign(rand.Reader, SignRequest{}, []Signer{testSigner(t, algo.SLHDSASHA2128f)}, nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("slh-dsa-sha2-128f: %v, want ErrUnsupported", err)
	}
}

func TestHybridToken(t *testing.T) {
	pki := newPKI(t, "Hybrid PQ")
	roots := []*x509.Certificate{pki.root}
	classical := testSigner(t, algo.ECDSAP256)
	pq := testSigner(t, algo.MLDSA65)
	chains := [][]*x509.Certificate{pki.leafFor(t, classical, "classical", nil), pki.leafFor(t, pq, "ml-dsa", nil)}
	tok, err := Sign(rand.Reader, SignRequest{Type: TypeCWT, Claims: &Claims{Subject: "hybrid"}, KIDs: [][]byte{[]byte("ec"), []byte("pq")}}, []Signer{classical, pq}, chains)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Verify(tok, VerifyOptions{Roots: roots, MinSignatures: 2})
	if err != nil {
		t.Fatal(err)
	}
	if m.Structure != TypeSign || m.Signatures[0].Alg() != AlgES256 || m.Signatures[1].Alg() != AlgMLDSA65 {
		t.Fatalf("structure %s algs %s %s", m.Structure, m.Signatures[0].Alg(), m.Signatures[1].Alg())
	}
	// Breaking the ML-DSA signature alone fails the token, though the
	// classical one still holds.
	bad := bytes.Clone(tok)
	i := bytes.Index(bad, m.Signatures[1].Value)
	bad[i+1000] ^= 0x10
	if _, err := Verify(bad, VerifyOptions{Roots: roots}); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered ML-DSA signature: %v", err)
	}
}

// TestInteropVectorKeys signs with the keys of the OpenSSL 3.5 trust anchors
// from the IETF PQC hackathon and verifies against those certificates, so
// that x5chain handling and key extraction work on certificates qpki did
// not make.
func TestInteropVectorKeys(t *testing.T) {
	const dir = "../../../shared/interop/pqc-certificates-r5/ossl35/"
	for _, tc := range []struct {
		key        algo.Algorithm
		base, priv string
	}{
		{algo.MLDSA44, "ml-dsa-44-2.16.840.1.101.3.4.3.17", "_seed_priv.der"},
		{algo.MLDSA65, "ml-dsa-65-2.16.840.1.101.3.4.3.18", "_both_priv.der"},
		{algo.MLDSA87, "ml-dsa-87-2.16.840.1.101.3.4.3.19", "_expandedkey_priv.der"},
		{algo.SLHDSASHA2128s, "slh-dsa-sha2-128s-2.16.840.1.101.3.4.3.20", "_priv.der"},
	} {
		t.Run(string(tc.key), func(t *testing.T) {
			certDER, err := os.ReadFile(dir + tc.base + "_ta.der")
			if err != nil {
				t.Fatal(err)
			}
			keyDER, err := os.ReadFile(dir + tc.base + tc.priv)
			if err != nil {
				t.Fatal(err)
			}
			ta, err := x509.ParseCertificate(certDER)
			if err != nil {
				t.Fatal(err)
			}
			priv, err := algo.ParsePKCS8(keyDER)
			if err != nil {
				t.Fatal(err)
			}
			s, err := algo.NewSigner(priv, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			// The anchors allow keyCertSign only, so a token signed with
			// the anchor key itself must not pass as certified...
			roots := []*x509.Certificate{ta}
			tok, err := Sign(rand.Reader, SignRequest{Type: TypeCWT, Claims: &Claims{Issuer: "ta"}}, []Signer{s}, [][]*x509.Certificate{{ta}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(tok, VerifyOptions{Roots: roots}); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "digitalSignature") {
				t.Errorf("token signed by a CA-only key: %v", err)
			}
			// ...but the key, read from the certificate, verifies it.
			taKey, err := x509x.PublicKey(ta)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(tok, VerifyOptions{PublicKeys: []crypto.PublicKey{taKey}}); err != nil {
				t.Errorf("anchor key: %v", err)
			}

			// A leaf issued by the post-quantum anchor: the path is checked
			// link by link through pkg/x509x.
			leafKey := testSigner(t, algo.MLDSA44)
			leaf := issue(t, &x509.Certificate{
				Subject:  pkix.Name{CommonName: "pq leaf"},
				KeyUsage: x509.KeyUsageDigitalSignature,
			}, leafKey.Public(), ta, s)
			if leaf.SignatureAlgorithm != x509.UnknownSignatureAlgorithm {
				t.Fatalf("leaf signed with %v, want a post-quantum signature", leaf.SignatureAlgorithm)
			}
			tok, err = Sign(rand.Reader, SignRequest{Type: TypeCWT, Claims: &Claims{Issuer: "pq ca"}}, []Signer{leafKey}, [][]*x509.Certificate{{leaf}})
			if err != nil {
				t.Fatal(err)
			}
			m, err := Verify(tok, VerifyOptions{Roots: roots})
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Signatures[0].Chain) != 2 || !m.Signatures[0].Chain[1].Equal(ta) {
				t.Errorf("path %v", m.Signatures[0].Chain)
			}
			other := newPKI(t, "Unrelated")
			if _, err := Verify(tok, VerifyOptions{Roots: []*x509.Certificate{other.root}}); !errors.Is(err, ErrUntrusted) {
				t.Errorf("unrelated root: %v", err)
			}
			var out bytes.Buffer
			if err := Info(&out, tok); err != nil || !regexp.MustCompile(`issuer:\s+CN=OpenSSL 3.5 `+string(tc.key)+` Root\n.*\n\s+key:\s+ml-dsa-44\n`).Match(out.Bytes()) {
				t.Errorf("info: %v\n%s", err, out.String())
			}
		})
	}
}
