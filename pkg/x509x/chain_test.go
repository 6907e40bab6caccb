package x509x

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

type chainCase struct {
	name            string
	root, rootAlt   algo.Algorithm
	issuing, issAlt algo.Algorithm
	leaf, leafAlt   algo.Algorithm
}

var chainCases = []chainCase{
	{"ml-dsa", algo.MLDSA87, "", algo.MLDSA65, "", algo.MLDSA44, ""},
	{"slh-dsa", algo.SLHDSASHA2128f, "", algo.SLHDSASHAKE128f, "", algo.SLHDSASHA2128f, ""},
	{"catalyst", algo.ECDSAP384, algo.MLDSA65, algo.ECDSAP384, algo.MLDSA65, algo.ECDSAP256, algo.MLDSA44},
	{"composite", algo.CompositeMLDSA87ECDSAP384, "", algo.CompositeMLDSA65ECDSAP256, "", algo.CompositeMLDSA44ECDSAP256, ""},
	{"classical-root-pq-issuing", algo.ECDSAP384, "", algo.MLDSA65, "", algo.ECDSAP256, ""},
	{"ml-kem-leaf", algo.MLDSA65, "", algo.MLDSA65, "", algo.MLKEM768, ""},
}

type builtChain struct {
	root, issuing ca
	leaf          *x509.Certificate
	leafKey       crypto.PrivateKey
}

func buildChain(t testing.TB, c chainCase) builtChain {
	root := newRoot(t, c.root, c.rootAlt)
	issuing := newSub(t, root, c.issuing, c.issAlt)
	leafKey, err := algo.GenerateKey(c.leaf, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := algo.PublicKey(leafKey)
	var altPub crypto.PublicKey
	if c.leafAlt != "" {
		altKey, _ := algo.GenerateKey(c.leafAlt, rand.Reader)
		altPub, _ = algo.PublicKey(altKey)
	}
	return builtChain{root, issuing, issueLeaf(t, issuing, pub, altPub), leafKey}
}

func TestChains(t *testing.T) {
	for _, c := range chainCases {
		t.Run(c.name, func(t *testing.T) {
			b := buildChain(t, c)
			chain, err := Verify(b.leaf, []*x509.Certificate{b.issuing.cert}, []*x509.Certificate{b.root.cert}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 3 || chain[1] != b.issuing.cert || chain[2] != b.root.cert {
				t.Fatalf("chain of %d", len(chain))
			}
			for _, cert := range []*x509.Certificate{b.root.cert, b.issuing.cert} {
				if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 || len(cert.SubjectKeyId) != 20 {
					t.Errorf("%s: CA fields lost (IsCA %v, KU %v, SKID %x)", cert.Subject.CommonName, cert.IsCA, cert.KeyUsage, cert.SubjectKeyId)
				}
			}
			if !bytes.Equal(b.leaf.AuthorityKeyId, b.issuing.cert.SubjectKeyId) || b.leaf.DNSNames[0] != "leaf.example.com" ||
				b.leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("leaf fields lost: AKID %x DNS %v", b.leaf.AuthorityKeyId, b.leaf.DNSNames)
			}
			if a, err := KeyAlgorithm(b.leaf); err != nil || a != c.leaf {
				t.Errorf("leaf key %s, %v", a, err)
			}
			if c.leafAlt != "" {
				altPub, err := AltPublicKey(b.leaf)
				if err != nil || altPub == nil {
					t.Fatalf("leaf alternative key: %v", err)
				}
				if a, _ := algo.Of(altPub); a != c.leafAlt {
					t.Errorf("leaf alternative key is %s", a)
				}
			}
			for _, pair := range [][2]*x509.Certificate{{b.leaf, b.issuing.cert}, {b.issuing.cert, b.root.cert}, {b.root.cert, b.root.cert}} {
				primary, alt := VerifyCatalyst(pair[0], pair[1])
				if primary != nil {
					t.Errorf("%s: primary signature: %v", pair[0].Subject.CommonName, primary)
				}
				wantCatalyst := c.rootAlt != "" && c.issAlt != ""
				if wantCatalyst && alt != nil || !wantCatalyst && !errors.Is(alt, ErrNotCatalyst) {
					t.Errorf("%s: alternative signature: %v", pair[0].Subject.CommonName, alt)
				}
			}
			// A wrong order or a missing intermediate fails.
			if _, err := Verify(b.leaf, nil, []*x509.Certificate{b.root.cert}, time.Now()); err == nil {
				t.Error("chain without its intermediate verified")
			}
			if err := CheckSignatureFrom(b.issuing.cert, b.issuing.cert); err == nil {
				t.Error("issuing CA verified as self-signed")
			}
			// The leaf is not a CA and may not sign.
			if err := CheckSignatureFrom(b.leaf, b.leaf); err == nil {
				t.Error("leaf accepted as an issuer")
			}
			if _, err := Verify(b.leaf, []*x509.Certificate{b.issuing.cert}, []*x509.Certificate{b.root.cert}, time.Now().Add(48*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
				t.Errorf("expired leaf: %v", err)
			}
		})
	}
}

func TestCRLs(t *testing.T) {
	for _, c := range chainCases[:4] {
		t.Run(c.name, func(t *testing.T) {
			issuing := newSub(t, newRoot(t, c.root, c.rootAlt), c.issuing, c.issAlt)
			der, err := CreateRevocationList(rand.Reader, &x509.RevocationList{
				Number:     big.NewInt(7),
				ThisUpdate: time.Now(),
				NextUpdate: time.Now().Add(time.Hour),
				RevokedCertificateEntries: []x509.RevocationListEntry{
					{SerialNumber: big.NewInt(42), RevocationTime: time.Now(), ReasonCode: 1},
				},
			}, issuing.iss)
			if err != nil {
				t.Fatal(err)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if crl.Number.Int64() != 7 || len(crl.RevokedCertificateEntries) != 1 || !bytes.Equal(crl.AuthorityKeyId, issuing.cert.SubjectKeyId) {
				t.Fatalf("CRL fields lost")
			}
			if err := CheckCRLSignature(crl, issuing.cert); err != nil {
				t.Fatal(err)
			}
			primary, alt := VerifyCatalystCRL(crl, issuing.cert)
			if primary != nil || (c.issAlt != "") != (alt == nil) {
				t.Fatalf("primary %v, alternative %v", primary, alt)
			}
			// Another CA's key does not verify it.
			other := newRoot(t, c.issuing, c.issAlt)
			if err := CheckCRLSignature(crl, other.cert); err == nil {
				t.Fatal("CRL verified with the wrong key")
			}
		})
	}
}

func writePEM(t *testing.T, dir, name, typ string, ders ...[]byte) string {
	t.Helper()
	var buf bytes.Buffer
	for _, d := range ders {
		pem.Encode(&buf, &pem.Block{Type: typ, Bytes: d})
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// OpenSSL 3.0 knows only the classical half of a Catalyst chain and must
// accept it, CRL included.
func TestCatalystChainOpenSSL(t *testing.T) {
	bin := openssl(t)
	b := buildChain(t, chainCases[2])
	dir := t.TempDir()
	root := writePEM(t, dir, "root.pem", "CERTIFICATE", b.root.cert.Raw)
	inter := writePEM(t, dir, "issuing.pem", "CERTIFICATE", b.issuing.cert.Raw)
	leaf := writePEM(t, dir, "leaf.pem", "CERTIFICATE", b.leaf.Raw)
	out, err := exec.Command(bin, "verify", "-CAfile", root, "-untrusted", inter, leaf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "leaf.pem: OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	crlDER, err := CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, b.issuing.iss)
	if err != nil {
		t.Fatal(err)
	}
	crl := writePEM(t, dir, "crl.pem", "X509 CRL", crlDER)
	out, err = exec.Command(bin, "crl", "-in", crl, "-CAfile", inter, "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	// The alternative signature is invisible to OpenSSL: the same chain
	// with a corrupted one still passes there but not here.
	forged := forgeAltSignature(t, b.leaf, b.issuing.iss)
	forgedPath := writePEM(t, dir, "forged.pem", "CERTIFICATE", forged.Raw)
	if out, err := exec.Command(bin, "verify", "-CAfile", root, "-untrusted", inter, forgedPath).CombinedOutput(); err != nil {
		t.Fatalf("openssl rejects the classical half: %v\n%s", err, out)
	}
	if _, err := Verify(forged, []*x509.Certificate{b.issuing.cert}, []*x509.Certificate{b.root.cert}, time.Now()); err == nil {
		t.Fatal("forged alternative signature verified")
	}
}
