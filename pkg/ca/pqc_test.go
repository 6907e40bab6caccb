package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/keyfile"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// fastProfile writes a copy of a built-in CA profile whose key algorithm
// is a (faster) other one, for tests; the file's name is the profile name.
func fastProfile(t testing.TB, dir, builtin, alg string) string {
	t.Helper()
	raw, err := profile.Builtin(builtin)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ReplaceAll(builtin, "/", "-") + "-" + alg
	raw = regexp.MustCompile(`(?m)^algorithm: .*$`).ReplaceAll(raw, []byte("algorithm: "+alg))
	raw = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(raw, []byte("name: test/"+name))
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// newSigner makes a software signer of algorithm a.
func newSigner(t testing.TB, a algo.Algorithm) algo.Signer {
	t.Helper()
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newCatalystCSR makes a CSR for a classical key carrying an alternative
// key, both signing it.
func newCatalystCSR(t testing.TB, a, alt algo.Algorithm, cn string) *x509x.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn}}
	der, err := x509x.CreateCertificateRequest(rand.Reader, tmpl, newSigner(t, a), newSigner(t, alt), false)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509x.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if csr.AltAlgorithm != alt {
		t.Fatalf("Catalyst CSR alternative key %q, want %s", csr.AltAlgorithm, alt)
	}
	return csr
}

func issue(t testing.TB, c *CA, req IssueRequest) *x509.Certificate {
	t.Helper()
	rec, err := c.Issue(context.Background(), req, KeyOptions{})
	if err != nil {
		t.Fatalf("issue %s: %v", req.Profile, err)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func caCert(t testing.TB, c *CA, version string) *x509.Certificate {
	t.Helper()
	cert, err := c.Certificate(version)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestPQHierarchies builds root → issuing → leaf for each post-quantum
// and hybrid family, verifies the chain, revokes the leaf and checks the
// CRL; Catalyst chains are checked by openssl too, which sees only their
// classical half.
func TestPQHierarchies(t *testing.T) {
	d := t.TempDir()
	cases := []struct {
		name                  string
		root, issuing, leaf   string
		keyAlgs               []string // ca.meta.json key algorithms of the issuing CA
		algos                 []string // its Algos
		csr                   func(t testing.TB) *x509x.CertificateRequest
		wantSig, wantAlt      string // the leaf's signature algorithms
		catalyst, withOpenSSL bool
	}{
		{name: "ml", root: "ml/root-ca", issuing: "ml/issuing-ca", leaf: "ml/tls-server",
			keyAlgs: []string{"ml-dsa-65"}, algos: []string{"ml-dsa-65"},
			csr: func(t testing.TB) *x509x.CertificateRequest {
				return newCSR(t, algo.MLDSA44, "ml.example.com", "ml.example.com")
			},
			wantSig: "ml-dsa-65"},
		{name: "slh", root: fastProfile(t, d, "slh/root-ca", "slh-dsa-sha2-128f"), issuing: "slh/issuing-ca", leaf: "slh/tls-server",
			keyAlgs: []string{"slh-dsa-sha2-128f"}, algos: []string{"slh-dsa-sha2-128f"},
			csr: func(t testing.TB) *x509x.CertificateRequest {
				return newCSR(t, "slh-dsa-shake-128f", "slh.example.com", "slh.example.com")
			},
			wantSig: "slh-dsa-sha2-128f"},
		{name: "catalyst", root: "hybrid/catalyst/root-ca", issuing: "hybrid/catalyst/issuing-ca", leaf: "hybrid/catalyst/tls-server",
			keyAlgs: []string{"ecdsa-p384", "ml-dsa-65"}, algos: []string{"ecdsa-p384", "ml-dsa-65"},
			csr: func(t testing.TB) *x509x.CertificateRequest {
				return newCatalystCSR(t, algo.ECDSAP256, algo.MLDSA65, "hybrid.example.com")
			},
			wantSig: "ecdsa-with-SHA384", wantAlt: "ml-dsa-65", catalyst: true, withOpenSSL: true},
		{name: "composite", root: "hybrid/composite/root-ca", issuing: "hybrid/composite/issuing-ca", leaf: "hybrid/composite/tls-server",
			keyAlgs: []string{"composite-mldsa65-ecdsa-p256"}, algos: []string{"composite-mldsa65-ecdsa-p256"},
			csr: func(t testing.TB) *x509x.CertificateRequest {
				return newCSR(t, algo.CompositeMLDSA65ECDSAP256, "comp.example.com", "comp.example.com")
			},
			wantSig: "composite-mldsa65-ecdsa-p256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(d, tc.name)
			root := newRoot(t, filepath.Join(dir, "root"), tc.root, tc.name+" Root")
			sub := newSub(t, filepath.Join(dir, "sub"), tc.issuing, tc.name+" Issuing", root)
			_, v, _ := sub.Version("")
			var keyAlgs []string
			for _, k := range v.Keys {
				keyAlgs = append(keyAlgs, k.Algorithm)
			}
			if strings.Join(keyAlgs, ",") != strings.Join(tc.keyAlgs, ",") || strings.Join(v.Algos, ",") != strings.Join(tc.algos, ",") {
				t.Errorf("issuing CA keys %v algos %v, want %v %v", keyAlgs, v.Algos, tc.keyAlgs, tc.algos)
			}

			csr := tc.csr(t)
			leaf := issue(t, sub, IssueRequest{Profile: tc.leaf, CSR: csr})
			if sig, alt := x509x.SignatureAlgorithms(leaf); sig != tc.wantSig || alt != tc.wantAlt {
				t.Errorf("leaf signed with %q / %q, want %q / %q", sig, alt, tc.wantSig, tc.wantAlt)
			}
			if tc.catalyst {
				alt, err := x509x.AltPublicKey(leaf)
				if err != nil || !equalPub(alt, csr.AltPublicKey) {
					t.Errorf("leaf's alternative key %v (%v), want the CSR's", alt, err)
				}
			}
			rootCert, subCert := caCert(t, root, ""), caCert(t, sub, "")
			o := VerifyOptions{Roots: []*x509.Certificate{rootCert}, Intermediates: []*x509.Certificate{subCert}}
			chain, err := VerifyChain(leaf, o)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			sigs := Signatures(chain)
			if len(sigs) != 3 || !sigs[2].Anchor {
				t.Fatalf("signatures %v, want leaf, issuing, self-signed root", sigs)
			}
			for _, s := range sigs {
				if !s.OK() || (tc.catalyst != (s.AltAlgorithm != "")) {
					t.Errorf("signature of %s: %s", s.Subject, s)
				}
			}
			if tc.catalyst && !strings.HasPrefix(sigs[0].String(), "classical (ecdsa-with-SHA384): OK, alternative (ml-dsa-65): OK") {
				t.Errorf("leaf signatures read %q", sigs[0])
			}

			// Not under another root of the same name.
			impostor := newRoot(t, filepath.Join(dir, "impostor"), tc.root, tc.name+" Root")
			if _, err := VerifyChain(leaf, VerifyOptions{Roots: []*x509.Certificate{caCert(t, impostor, "")}, Intermediates: []*x509.Certificate{subCert}}); err == nil {
				t.Error("the leaf verified under another root of the same name")
			}

			// Revocation and the CRL, with both signatures for Catalyst.
			if _, err := sub.Revoke(leaf.SerialNumber.Text(16), 1, time.Time{}); err != nil {
				t.Fatal(err)
			}
			crlDER, err := sub.GenerateCRL(CRLOptions{})
			if err != nil {
				t.Fatal(err)
			}
			crl, err := x509.ParseRevocationList(crlDER)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckCRLSignature(crl, subCert); err != nil {
				t.Errorf("CRL signature: %v", err)
			}
			if err := CheckCRLSignature(crl, rootCert); err == nil {
				t.Error("CRL verified with the root's key")
			}
			primary, alt := x509x.VerifyCatalystCRL(crl, subCert)
			if primary != nil || (tc.catalyst && alt != nil) || (!tc.catalyst && !errors.Is(alt, x509x.ErrNotCatalyst)) {
				t.Errorf("CRL signatures: %v / %v", primary, alt)
			}
			o.CRLs = [][]byte{crlDER}
			var revoked *RevokedError
			if _, err := VerifyChain(leaf, o); !errors.As(err, &revoked) {
				t.Errorf("revoked leaf: %v, want a RevokedError", err)
			}

			if tc.withOpenSSL {
				// openssl knows only the classical half: it must accept
				// chain and CRL as ordinary ECDSA ones.
				td := t.TempDir()
				rootF := writeCertsFile(t, filepath.Join(td, "root.pem"), rootCert)
				subF := writeCertsFile(t, filepath.Join(td, "sub.pem"), subCert)
				leafF := writeCertsFile(t, filepath.Join(td, "leaf.pem"), leaf)
				crlF := writePEM(t, filepath.Join(td, "sub.crl"), crlDER, "X509 CRL")
				emptyCRL, err := root.GenerateCRL(CRLOptions{})
				if err != nil {
					t.Fatal(err)
				}
				rootCRL := writePEM(t, filepath.Join(td, "root.crl"), emptyCRL, "X509 CRL")
				openssl(t, "verify", "-CAfile", rootF, "-untrusted", subF, leafF)
				openssl(t, "crl", "-in", crlF, "-noout", "-CAfile", writeCertsFile(t, filepath.Join(td, "chain.pem"), subCert, rootCert))
				out := opensslFails(t, "verify", "-crl_check_all", "-CAfile", rootF, "-untrusted", subF, "-CRLfile", crlF, "-CRLfile", rootCRL, leafF)
				if !strings.Contains(out, "revoked") {
					t.Errorf("openssl with the CRL: %s", out)
				}
				text := openssl(t, "x509", "-in", leafF, "-noout", "-text")
				for _, want := range []string{"2.5.29.72", "2.5.29.73", "2.5.29.74", "ecdsa-with-SHA384"} {
					if !strings.Contains(text, want) {
						t.Errorf("openssl's view of the leaf lacks %s", want)
					}
				}
			}
		})
	}
}

func equalPub(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// A hybrid or post-quantum profile refuses what it cannot certify.
func TestPQPolicy(t *testing.T) {
	d := t.TempDir()
	cat := newRoot(t, filepath.Join(d, "cat"), "hybrid/catalyst/root-ca", "Catalyst Root")
	ml := newRoot(t, filepath.Join(d, "ml"), "ml/root-ca", "ML Root")
	for _, c := range []struct {
		ca   *CA
		req  IssueRequest
		want string
	}{
		// A Catalyst CSR under a profile that is not catalyst.
		{ml, IssueRequest{Profile: "ec/tls-server", CSR: newCatalystCSR(t, algo.ECDSAP256, algo.MLDSA65, "a.example.com")}, "needs a catalyst profile"},
		{cat, IssueRequest{Profile: "ec/tls-server", CSR: newCatalystCSR(t, algo.ECDSAP256, algo.MLDSA65, "a.example.com")}, "needs a catalyst profile"},
		// An alternative key the catalyst profile does not allow.
		{cat, IssueRequest{Profile: "hybrid/catalyst/tls-server", CSR: newCatalystCSR(t, algo.ECDSAP256, "slh-dsa-sha2-128f", "a.example.com")}, "alternative key algorithm slh-dsa-sha2-128f is not allowed"},
		// A classical CSR under a post-quantum profile.
		{ml, IssueRequest{Profile: "ml/tls-server", CSR: newCSR(t, algo.ECDSAP256, "a.example.com")}, "ecdsa-p256 is not allowed"},
		{ml, IssueRequest{Profile: "hybrid/composite/tls-server", CSR: newCSR(t, algo.MLDSA65, "a.example.com")}, "ml-dsa-65 is not allowed"},
	} {
		if _, err := c.ca.Prepare(c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.req.Profile, err, c.want)
		}
	}
	// A classical key alone under a catalyst leaf profile: the certificate
	// still carries the CA's two signatures, and no alternative key.
	leaf := issue(t, cat, IssueRequest{Profile: "hybrid/catalyst/tls-client", CSR: newCSR(t, algo.ECDSAP384, "bob")})
	if !x509x.IsCatalyst(leaf) {
		t.Error("leaf of a Catalyst CA carries no alternative signature")
	}
	if alt, err := x509x.AltPublicKey(leaf); alt != nil || err != nil {
		t.Errorf("leaf has alternative key %v (%v)", alt, err)
	}
}

// TestRotateAcrossAlgorithms rotates a root from ECDSA to Catalyst to
// ML-DSA with cross-signed links; every version's leaves keep verifying
// under their own version, and under the newest root through the links.
func TestRotateAcrossAlgorithms(t *testing.T) {
	d := t.TempDir()
	c := newRoot(t, filepath.Join(d, "root"), "ec/root-ca", "Rolling Root")
	leaves := map[string]*x509.Certificate{"v1": issue(t, c, IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "v1.example.com")})}
	for _, step := range []struct {
		profile, version, leafProfile string
		csr                           *x509x.CertificateRequest
	}{
		{"hybrid/catalyst/root-ca", "v2", "hybrid/catalyst/tls-server", newCatalystCSR(t, algo.ECDSAP256, algo.MLDSA65, "v2.example.com")},
		{"ml/root-ca", "v3", "ml/tls-server", newCSR(t, algo.MLDSA65, "v3.example.com")},
	} {
		name, err := c.Rotate(RotateOptions{Profile: step.profile, CrossSign: true})
		if err != nil {
			t.Fatalf("rotate to %s: %v", step.profile, err)
		}
		if name != step.version || c.Meta.Active != name {
			t.Fatalf("rotated to %s (active %s), want %s", name, c.Meta.Active, step.version)
		}
		leaves[name] = issue(t, c, IssueRequest{Profile: step.leafProfile, CSR: step.csr})
	}
	wantAlgos := map[string]string{"v1": "ecdsa-p384", "v2": "ecdsa-p384,ml-dsa-87", "v3": "ml-dsa-87"}
	var links []*x509.Certificate
	for _, n := range c.Meta.VersionNames() {
		v := c.Meta.Versions[n]
		if got := strings.Join(v.Algos, ","); got != wantAlgos[n] {
			t.Errorf("%s algos %s, want %s", n, got, wantAlgos[n])
		}
		for _, l := range v.Links {
			certs, err := readCerts(filepath.Join(c.Dir, l))
			if err != nil {
				t.Fatal(err)
			}
			links = append(links, certs...)
		}
	}
	if len(links) != 4 {
		t.Fatalf("%d link certificates, want 4", len(links))
	}
	if c.Meta.Versions["v1"].Status != StatusArchived || c.Meta.Versions["v2"].Status != StatusArchived {
		t.Error("old versions not archived")
	}
	newest := caCert(t, c, "v3")
	for version, leaf := range leaves {
		// Under its own version.
		if _, err := VerifyChain(leaf, VerifyOptions{Roots: []*x509.Certificate{caCert(t, c, version)}}); err != nil {
			t.Errorf("%s leaf under %s: %v", version, version, err)
		}
		// Under the newest root only, through the links.
		chain, err := VerifyChain(leaf, VerifyOptions{Roots: []*x509.Certificate{newest}, Intermediates: links})
		if err != nil {
			t.Errorf("%s leaf under v3 via links: %v", version, err)
			continue
		}
		for _, s := range Signatures(chain) {
			if !s.OK() {
				t.Errorf("%s leaf under v3: %s", version, s)
			}
		}
		// Not under a version that never signed its chain, without links.
		if version != "v3" {
			if _, err := VerifyChain(leaf, VerifyOptions{Roots: []*x509.Certificate{newest}}); err == nil {
				t.Errorf("%s leaf verified under v3 without the links", version)
			}
		}
	}
	// The Catalyst version's leaf shows both of its signatures.
	chain, err := VerifyChain(leaves["v2"], VerifyOptions{Roots: []*x509.Certificate{caCert(t, c, "v2")}})
	if err != nil {
		t.Fatal(err)
	}
	if s := Signatures(chain)[0]; s.AltAlgorithm != "ml-dsa-87" || !s.OK() {
		t.Errorf("v2 leaf: %s", s)
	}
	// The link from v2 keeps v2's alternative key.
	for _, l := range links {
		if bytes.Equal(l.SubjectKeyId, caCert(t, c, "v2").SubjectKeyId) {
			if alt, _ := x509x.AltPublicKey(l); alt == nil {
				t.Errorf("link %s → v2 lost v2's alternative key", l.Issuer)
			}
		}
	}
	// Each version's CRL is signed by that version's key(s).
	for _, n := range []string{"v1", "v2", "v3"} {
		der, err := c.GenerateCRL(CRLOptions{Version: n})
		if err != nil {
			t.Fatal(err)
		}
		crl, _ := x509.ParseRevocationList(der)
		if err := CheckCRLSignature(crl, caCert(t, c, n)); err != nil {
			t.Errorf("%s CRL: %v", n, err)
		}
	}
}

// resignWithBadAlt returns a copy of a Catalyst certificate whose
// alternative signature is corrupted and whose classical signature is made
// again, correctly, by the issuer's classical key: only the alternative
// signature is wrong.
func resignWithBadAlt(t testing.TB, cert *x509.Certificate, classical crypto.Signer) []byte {
	t.Helper()
	tbs := bytes.Clone(cert.RawTBSCertificate)
	// altSignatureValue is the last extension, so the TBS ends with the
	// alternative signature's bits.
	tbs[len(tbs)-20] ^= 0x40
	d := sha512.Sum384(tbs)
	sig, err := classical.Sign(rand.Reader, d[:], crypto.SHA384)
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier([]int{1, 2, 840, 10045, 4, 3, 3}) // ecdsa-with-SHA384
		})
		b.AddASN1BitString(sig)
	})
	return b.BytesOrPanic()
}

// A Catalyst certificate whose alternative signature is wrong fails, and
// the report names that signature, though openssl (classical only) accepts
// the certificate.
func TestCatalystBadAlternativeSignature(t *testing.T) {
	d := t.TempDir()
	root := newRoot(t, filepath.Join(d, "root"), "hybrid/catalyst/root-ca", "Cat Root")
	sub := newSub(t, filepath.Join(d, "sub"), "hybrid/catalyst/issuing-ca", "Cat Issuing", root)
	leaf := issue(t, sub, IssueRequest{Profile: "hybrid/catalyst/tls-server", CSR: newCatalystCSR(t, algo.ECDSAP256, algo.MLDSA65, "bad.example.com")})
	iss, closer, err := sub.Issuer("", KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if _, ok := iss.Signer.Public().(*ecdsa.PublicKey); !ok {
		t.Fatalf("classical key %T", iss.Signer.Public())
	}
	bad, err := x509.ParseCertificate(resignWithBadAlt(t, leaf, iss.Signer))
	if err != nil {
		t.Fatal(err)
	}
	rootCert, subCert := caCert(t, root, ""), caCert(t, sub, "")
	o := VerifyOptions{Roots: []*x509.Certificate{rootCert}, Intermediates: []*x509.Certificate{subCert}}
	_, err = VerifyChain(bad, o)
	if err == nil || !strings.Contains(err.Error(), "alternative signature") {
		t.Fatalf("verify: %v, want an alternative signature error", err)
	}
	sigs := DiagnoseSignatures(bad, o)
	if len(sigs) != 3 {
		t.Fatalf("diagnosis %v", sigs)
	}
	if s := sigs[0].String(); sigs[0].Err != nil || sigs[0].AltErr == nil ||
		!strings.HasPrefix(s, "classical (ecdsa-with-SHA384): OK, alternative (ml-dsa-65): FAILED (") {
		t.Errorf("leaf diagnosis %q", s)
	}
	if !sigs[1].OK() || !sigs[2].OK() || !sigs[2].Anchor {
		t.Errorf("issuing and root: %s; %s", sigs[1], sigs[2])
	}
	// What a classical verifier sees.
	td := t.TempDir()
	openssl(t, "verify", "-CAfile", writeCertsFile(t, filepath.Join(td, "root.pem"), rootCert),
		"-untrusted", writeCertsFile(t, filepath.Join(td, "sub.pem"), subCert), writeCertsFile(t, filepath.Join(td, "bad.pem"), bad))
}

// Composite CAs: a file-key CA has one composite key; a CA whose halves
// are two keys (as in an HSM) signs with them joined.
func TestCompositeCAKeys(t *testing.T) {
	d := t.TempDir()
	root := newRoot(t, filepath.Join(d, "root"), "hybrid/composite/root-ca", "Comp Root")
	_, v, _ := root.Version("")
	if len(v.Keys) != 1 || v.Keys[0].ID != "default" || v.Keys[0].Algorithm != "composite-mldsa87-ecdsa-p384" || v.Mode != "composite" {
		t.Fatalf("composite root keys %+v mode %q", v.Keys, v.Mode)
	}
	priv, err := keyfile.Read(filepath.Join(root.Dir, v.Keys[0].Storage.Path), nil)
	if err != nil {
		t.Fatal(err)
	}
	comp, ok := priv.(*algo.CompositePrivateKey)
	if !ok {
		t.Fatalf("key file holds %T", priv)
	}

	// The same CA key as two component key files.
	split := filepath.Join(d, "split")
	if err := os.MkdirAll(split, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.Write(filepath.Join(split, "classical.key"), comp.Traditional(), nil); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.Write(filepath.Join(split, "pqc.key"), comp.MLDSA(), nil); err != nil {
		t.Fatal(err)
	}
	two := &Version{Mode: "composite", Algos: []string{"composite-mldsa87-ecdsa-p384"}, Keys: []Key{
		{ID: "classical", Algorithm: "ecdsa-p384", Storage: Storage{Type: "software", Path: "classical.key"}},
		{ID: "pqc", Algorithm: "ml-dsa-87", Storage: Storage{Type: "software", Path: "pqc.key"}},
	}}
	iss, closer, err := openIssuer(split, two, KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if iss.AltSigner != nil || iss.Signer.Algorithm() != "composite-mldsa87-ecdsa-p384" {
		t.Fatalf("joined issuer: %s alt %v", iss.Signer.Algorithm(), iss.AltSigner)
	}
	iss.Cert = caCert(t, root, "")
	crlDER, err := SignCRL(mustCRLRequest(), iss)
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := x509.ParseRevocationList(crlDER)
	if err := CheckCRLSignature(crl, iss.Cert); err != nil {
		t.Errorf("CRL signed by the two halves: %v", err)
	}

	// Halves that do not make the version's algorithm are refused.
	wrong := *two
	wrong.Algos = []string{"composite-mldsa65-ecdsa-p384"}
	if _, _, err := openIssuer(split, &wrong, KeyOptions{}); err == nil || !strings.Contains(err.Error(), "ML-DSA component is ml-dsa-87") {
		t.Errorf("mismatched halves: %v", err)
	}
	noAlg := *two
	noAlg.Algos = []string{"ecdsa-p384", "ml-dsa-87"}
	if _, _, err := openIssuer(split, &noAlg, KeyOptions{}); err == nil || !strings.Contains(err.Error(), "names no composite algorithm") {
		t.Errorf("no composite algorithm: %v", err)
	}
}

func mustCRLRequest() *jobspec.CRL {
	return &jobspec.CRL{Number: "1", Validity: time.Hour, ThisUpdate: time.Now().UTC().Truncate(time.Second)}
}

// zlint is run on what zcrypto can check (Catalyst: the classical half)
// and skipped on what it cannot (ML-DSA), where its findings are false.
func TestLintPQ(t *testing.T) {
	d := t.TempDir()
	ml := newRoot(t, filepath.Join(d, "ml"), "ml/root-ca", "ML Root")
	der := caCert(t, ml, "").Raw
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	rfc, _, _ := registries()
	if r := zlint.LintCertificateEx(zc, rfc).Results["e_ext_authority_key_identifier_no_key_identifier"]; r == nil || r.Status != lint.Error {
		t.Logf("zlint no longer misreads ML-DSA roots (%v): the skip may go", r)
	}
	if err := lintCert(der, LintPolicy{Enabled: true}); err != nil {
		t.Errorf("ML-DSA root: %v", err)
	}

	// A Catalyst end-entity certificate with keyCertSign: zlint must see it.
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Bad Catalyst EE"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	cs, alt := newSigner(t, algo.ECDSAP384), newSigner(t, algo.MLDSA65)
	bad, err := x509x.CreateCertificate(rand.Reader, tmpl, cs.Public(), alt.Public(), x509x.Issuer{Signer: cs, AltSigner: alt})
	if err != nil {
		t.Fatal(err)
	}
	var le *LintError
	if err := lintCert(bad, LintPolicy{Enabled: true}); !errors.As(err, &le) || !strings.Contains(err.Error(), "e_ext_key_usage_cert_sign_without_ca") {
		t.Errorf("Catalyst end-entity certificate with keyCertSign: %v", err)
	}
	// The Catalyst root the built-in profile makes lints clean.
	cat := newRoot(t, filepath.Join(d, "cat"), "hybrid/catalyst/root-ca", "Cat Root")
	if err := lintCert(caCert(t, cat, "").Raw, LintPolicy{Enabled: true}); err != nil {
		t.Errorf("Catalyst root: %v", err)
	}
}

// TestKEMCertificates issues ML-KEM certificates from a public key and from
// an RFC 9883 request vouched for by the subject's signature certificate.
func TestKEMCertificates(t *testing.T) {
	d := t.TempDir()
	c := newRoot(t, filepath.Join(d, "ca"), "ml/root-ca", "KEM Root")
	other := newRoot(t, filepath.Join(d, "other"), "ml/root-ca", "Other Root")

	kem, err := algo.GenerateKey(algo.MLKEM768, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kemPub, _ := algo.PublicKey(kem)

	// From the public key alone.
	cert := issue(t, c, IssueRequest{Profile: "ml/encryption", PublicKey: kemPub, Vars: map[string]any{"cn": "alice"}})
	if cert.KeyUsage != x509.KeyUsageKeyEncipherment || len(cert.ExtKeyUsage) != 0 {
		t.Errorf("key usage %b EKU %v, want keyEncipherment only", cert.KeyUsage, cert.ExtKeyUsage)
	}
	if a, err := x509x.KeyAlgorithm(cert); err != nil || a != algo.MLKEM768 {
		t.Errorf("key algorithm %s (%v)", a, err)
	}
	if _, err := VerifyChain(cert, VerifyOptions{Roots: []*x509.Certificate{caCert(t, c, "")}}); err != nil {
		t.Errorf("KEM certificate: %v", err)
	}
	for _, p := range []string{"ml/tls-server", "ml/signing"} {
		if _, err := c.Prepare(IssueRequest{Profile: p, PublicKey: kemPub, Vars: map[string]any{"cn": "alice.example.com"}}); err == nil {
			t.Errorf("%s certified an ML-KEM key", p)
		}
	}

	// RFC 9883: alice's ML-DSA signature certificate vouches for her
	// ML-KEM key.
	alice := newSigner(t, algo.MLDSA65)
	signerCert := issue(t, c, IssueRequest{Profile: "ml/tls-client", PublicKey: alice.Public(), Vars: map[string]any{"cn": "alice", "emails": "alice@example.com"}})
	stmtCSR := func(subject pkix.Name, s algo.Signer, sc *x509.Certificate, include bool) []byte {
		t.Helper()
		der, err := x509x.CreateCertificateRequestWithStatement(rand.Reader,
			&x509.CertificateRequest{Subject: subject, EmailAddresses: []string{"alice@example.com"}}, kemPub, s, sc, include, false)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	for _, include := range []bool{true, false} {
		csr, err := c.CheckStatementRequest(stmtCSR(signerCert.Subject, alice, signerCert, include), nil, time.Time{})
		if err != nil {
			t.Fatalf("statement (certificate included %v): %v", include, err)
		}
		vars, err := c.RequestVars("ml/encryption", csr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if vars["cn"] != "alice" || len(vars["emails"].([]string)) != 1 {
			t.Errorf("vars from the request: %v", vars)
		}
		cert := issue(t, c, IssueRequest{Profile: "ml/encryption", PublicKey: csr.PublicKey, Vars: vars})
		if cert.Subject.CommonName != "alice" || cert.EmailAddresses[0] != "alice@example.com" || cert.KeyUsage != x509.KeyUsageKeyEncipherment {
			t.Errorf("certificate %s %v %b", cert.Subject, cert.EmailAddresses, cert.KeyUsage)
		}
	}
	// The caller's names win; the request may not ask for others.
	csr, _ := c.CheckStatementRequest(stmtCSR(signerCert.Subject, alice, signerCert, true), nil, time.Time{})
	if _, err := c.RequestVars("ml/encryption", csr, map[string]any{"emails": "bob@example.com"}); err == nil {
		t.Error("request names outside the caller's accepted")
	}

	// What must be refused.
	bob := newSigner(t, algo.MLDSA65)
	bobCert := issue(t, c, IssueRequest{Profile: "ml/tls-client", PublicKey: bob.Public(), Vars: map[string]any{"cn": "bob"}})
	strangerCert := issue(t, other, IssueRequest{Profile: "ml/tls-client", PublicKey: alice.Public(), Vars: map[string]any{"cn": "alice"}})
	revokedKey := newSigner(t, algo.MLDSA65)
	revoked := issue(t, c, IssueRequest{Profile: "ml/tls-client", PublicKey: revokedKey.Public(), Vars: map[string]any{"cn": "alice"}})
	if _, err := c.Revoke(revoked.SerialNumber.Text(16), 1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	tampered := stmtCSR(signerCert.Subject, alice, signerCert, true)
	tampered[len(tampered)-3] ^= 1
	for _, bad := range []struct {
		name string
		der  []byte
		want string
	}{
		{"another subject", stmtCSR(pkix.Name{CommonName: "mallory"}, alice, signerCert, true), "is not the signature certificate's"},
		{"bob's certificate for alice's name", stmtCSR(signerCert.Subject, bob, bobCert, true), "is not the signature certificate's"},
		{"another CA", stmtCSR(signerCert.Subject, alice, strangerCert, true), "issued no certificate with serial"},
		{"revoked", stmtCSR(signerCert.Subject, revokedKey, revoked, true), "revoked"},
		{"tampered", tampered, "does not verify"},
	} {
		if _, err := c.CheckStatementRequest(bad.der, nil, time.Time{}); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.name, err, bad.want)
		}
	}
	if _, err := c.CheckStatementRequest(stmtCSR(signerCert.Subject, alice, signerCert, true), nil, signerCert.NotAfter.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "not valid now") {
		t.Errorf("expired signature certificate: %v", err)
	}
	// A lookup that finds the record elsewhere (the server's store).
	st, _ := c.Store()
	calls := 0
	lookup := func(n *big.Int) (*store.Cert, error) { calls++; return st.Cert(n) }
	if _, err := c.CheckStatementRequest(stmtCSR(signerCert.Subject, alice, signerCert, false), lookup, time.Time{}); err != nil || calls != 1 {
		t.Errorf("lookup: %v after %d calls", err, calls)
	}
}

// BenchmarkPQC measures issuing from a CSR through pkg/ca (the CSR's proof
// of possession, Prepare, Sign) with post-quantum and hybrid CA keys, next
// to the raw signature rate of the same CA key(s) over a message of the
// size of a leaf's TBSCertificate: for Catalyst one raw operation is both
// signatures, for composite the composite signature (both halves).
//
//	go test -run '^$' -bench PQC ./pkg/ca/
func BenchmarkPQC(b *testing.B) {
	d := b.TempDir()
	for _, c := range []struct {
		name, root, issuing, leaf string
		csr                       func(testing.TB) *x509x.CertificateRequest
	}{
		{"ml-dsa-65", "ml/root-ca", "ml/issuing-ca", "ml/tls-server",
			func(t testing.TB) *x509x.CertificateRequest {
				return newCSR(t, algo.MLDSA65, "b.example.com", "b.example.com")
			}},
		{"ml-dsa-87", "ml/root-ca", fastProfile(b, d, "ml/issuing-ca", "ml-dsa-87"), "ml/tls-server",
			func(t testing.TB) *x509x.CertificateRequest {
				return newCSR(t, algo.MLDSA65, "b.example.com", "b.example.com")
			}},
		{"slh-dsa-sha2-128f", fastProfile(b, d, "slh/root-ca", "slh-dsa-sha2-128f"), "slh/issuing-ca", "slh/tls-server",
			func(t testing.TB) *x509x.CertificateRequest {
				return newCSR(t, "slh-dsa-sha2-128f", "b.example.com", "b.example.com")
			}},
		{"catalyst-p384+ml-dsa-65", "hybrid/catalyst/root-ca", "hybrid/catalyst/issuing-ca", "hybrid/catalyst/tls-server",
			func(t testing.TB) *x509x.CertificateRequest {
				return newCatalystCSR(t, algo.ECDSAP256, algo.MLDSA65, "b.example.com")
			}},
		{"composite-mldsa65-ecdsa-p256", "hybrid/composite/root-ca", "hybrid/composite/issuing-ca", "hybrid/composite/tls-server",
			func(t testing.TB) *x509x.CertificateRequest {
				return newCSR(t, algo.CompositeMLDSA65ECDSAP256, "b.example.com", "b.example.com")
			}},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchmarkPQCA(b, filepath.Join(d, strings.ReplaceAll(c.name, "+", "-")), c.root, c.issuing, c.leaf, c.csr)
		})
	}
}

// benchmarkPQCA builds a root and an issuing CA, then runs the raw-sign
// and issue sub-benchmarks with the issuing CA's key(s).
func benchmarkPQCA(b *testing.B, dir, rootProfile, issuingProfile, leafProfile string, makeCSR func(testing.TB) *x509x.CertificateRequest) {
	root := newRoot(b, filepath.Join(dir, "root"), rootProfile, "Bench Root")
	sub := newSub(b, filepath.Join(dir, "sub"), issuingProfile, "Bench Issuing", root)
	iss, closer, err := sub.Issuer("", KeyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer closer.Close()
	csr := makeCSR(b)
	p, err := sub.Prepare(IssueRequest{Profile: leafProfile, CSR: csr})
	if err != nil {
		b.Fatal(err)
	}
	serial, _ := NewSerial()
	der, err := Sign(p, serial, iss)
	if err != nil {
		b.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	tbs := leaf.RawTBSCertificate

	b.Run("raw-sign", func(b *testing.B) {
		for b.Loop() {
			for _, s := range []algo.Signer{iss.Signer, iss.AltSigner} {
				if s == nil {
					continue
				}
				if _, err := algo.SignDigest(s, rand.Reader, tbs, false); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signs/s")
	})
	b.Run("issue", func(b *testing.B) {
		for b.Loop() {
			parsed, err := x509x.ParseCertificateRequest(csr.Raw)
			if err != nil {
				b.Fatal(err)
			}
			p, err := sub.Prepare(IssueRequest{Profile: leafProfile, CSR: parsed})
			if err != nil {
				b.Fatal(err)
			}
			serial, _ := NewSerial()
			if _, err := Sign(p, serial, iss); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
	})
}
