package ca

import (
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/x509x"
)

// More CAs whose keys live in the qpki test token: an SLH-DSA root, and
// hybrid roots whose rotation changes the post-quantum algorithm.

// profileVariant writes the built-in profile from, renamed to name, with
// each old string replaced by its new one, and returns the file's path.
func profileVariant(t *testing.T, from, name string, replace ...string) string {
	t.Helper()
	data, err := profile.Builtin(from)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	replace = append([]string{"name: " + from, "name: " + name}, replace...)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			t.Fatalf("%s has no %q", from, replace[i])
		}
		s = strings.Replace(s, replace[i], replace[i+1], 1)
	}
	path := filepath.Join(t.TempDir(), strings.ReplaceAll(name, "/", "-")+".yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// An SLH-DSA root on the token (slh/root-ca with the fast 128f set, so
// that the test takes milliseconds rather than seconds per signature)
// issues a leaf, revokes it in a CRL and rotates to a new token key.
func TestTestTokenSLHRoot(t *testing.T) {
	cfg := pqToken(t)
	label := uniqueLabel("slh-root")
	prof := profileVariant(t, "slh/root-ca", "test/slh-root-ca",
		"algorithm: slh-dsa-sha2-256s", "algorithm: slh-dsa-sha2-128f")
	root := hsmInit(t, filepath.Join(t.TempDir(), "root"), prof, "Token SLH Root", KeySpec{HSMConfig: cfg, Label: label}, nil)
	noKeyFiles(t, root.Dir)
	if got := keyAlgorithms(t, cfg, label); strings.Join(got, ",") != "slh-dsa-sha2-128f" {
		t.Fatalf("root keys on the token: %v", got)
	}
	st1 := metaStorage(t, root.Dir, "v1")
	if st1.Type != "pkcs11" || st1.Label != label || st1.KeyID == "" {
		t.Errorf("v1 storage %+v", st1)
	}
	rootCert := caCert(t, root, "")
	if sig, _ := x509x.SignatureAlgorithms(rootCert); sig != "slh-dsa-sha2-128f" {
		t.Errorf("root self-signed with %s", sig)
	}

	leaf := issue(t, root, IssueRequest{Profile: "slh/tls-server", CSR: newCSR(t, algo.SLHDSASHA2128f, "slh.token.example", "slh.token.example")})
	if sig, _ := x509x.SignatureAlgorithms(leaf); sig != "slh-dsa-sha2-128f" {
		t.Errorf("leaf signed with %s", sig)
	}
	if _, err := VerifyChain(leaf, VerifyOptions{Roots: []*x509.Certificate{rootCert}}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if _, err := root.Revoke(leaf.SerialNumber.Text(16), 1, leaf.NotBefore); err != nil {
		t.Fatal(err)
	}
	crlDER, err := root.GenerateCRL(CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCRLSignature(crl, rootCert); err != nil {
		t.Fatalf("CRL: %v", err)
	}
	if !crlLists(crl, leaf.SerialNumber) {
		t.Error("the CRL does not list the revoked leaf")
	}

	// Rotation: a new token key under a new id, the old one kept.
	v2, err := root.Rotate(RotateOptions{CrossSign: true})
	if err != nil {
		t.Fatal(err)
	}
	st2 := metaStorage(t, root.Dir, v2)
	if st2.Type != "pkcs11" || st2.Label != label || st2.KeyID == st1.KeyID {
		t.Errorf("rotated storage %+v (v1 %+v)", st2, st1)
	}
	if got := keyAlgorithms(t, cfg, label); strings.Join(got, ",") != "slh-dsa-sha2-128f,slh-dsa-sha2-128f" {
		t.Errorf("root keys on the token after rotation: %v", got)
	}
	leaf2 := issue(t, root, IssueRequest{Profile: "slh/tls-server", CSR: newCSR(t, algo.SLHDSASHA2128f, "slh2.token.example", "slh2.token.example")})
	if _, err := VerifyChain(leaf2, VerifyOptions{Roots: []*x509.Certificate{caCert(t, root, v2)}}); err != nil {
		t.Fatalf("verify after rotation: %v", err)
	}
	if _, err := VerifyChain(leaf2, VerifyOptions{Roots: []*x509.Certificate{rootCert}}); err == nil {
		t.Error("a leaf of v2 verified under v1's key")
	}
}

func crlLists(crl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

// Rotating a hybrid HSM CA to a profile with a stronger post-quantum
// algorithm generates both new keys on the token: ECDSA P-384 + ML-DSA-65
// in v1, ECDSA P-384 + ML-DSA-87 in v2, v1 archived with its keys kept.
func TestTestTokenHybridRotateUpgrade(t *testing.T) {
	cfg := pqToken(t)
	for _, tc := range []struct {
		mode, builtin, leafProfile string
		csr                        func(t *testing.T, cn string) *x509x.CertificateRequest
		sig1, alt1, sig2, alt2     string // the CA certificates' signature algorithms
	}{
		{"catalyst", "hybrid/catalyst/root-ca", "hybrid/catalyst/tls-server",
			func(t *testing.T, cn string) *x509x.CertificateRequest {
				return newCatalystCSR(t, algo.ECDSAP256, algo.MLDSA65, cn)
			}, "ecdsa-with-SHA384", "ml-dsa-65", "ecdsa-with-SHA384", "ml-dsa-87"},
		{"composite", "hybrid/composite/root-ca", "hybrid/composite/tls-server",
			func(t *testing.T, cn string) *x509x.CertificateRequest {
				return newCSR(t, algo.CompositeMLDSA65ECDSAP256, cn, cn)
			}, string(algo.CompositeMLDSA65ECDSAP384), "", string(algo.CompositeMLDSA87ECDSAP384), ""},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			label := uniqueLabel(tc.mode + "-up")
			v1prof := profileVariant(t, tc.builtin, "test/"+tc.mode+"-root-65",
				"algorithms: [ecdsa-p384, ml-dsa-87]", "algorithms: [ecdsa-p384, ml-dsa-65]")
			root := hsmInit(t, filepath.Join(t.TempDir(), "root"), v1prof, "Token "+tc.mode+" Root", KeySpec{HSMConfig: cfg, Label: label}, nil)
			noKeyFiles(t, root.Dir)
			if got := keyAlgorithms(t, cfg, label); strings.Join(got, ",") != "ecdsa-p384,ml-dsa-65" {
				t.Fatalf("v1 keys on the token: %v", got)
			}
			_, v1, _ := root.Version("v1")
			v1Cert := caCert(t, root, "v1")
			if sig, alt := x509x.SignatureAlgorithms(v1Cert); sig != tc.sig1 || alt != tc.alt1 {
				t.Errorf("v1 signed with %s + %q", sig, alt)
			}

			v2, err := root.Rotate(RotateOptions{Profile: tc.builtin, CrossSign: true})
			if err != nil {
				t.Fatalf("rotate to %s: %v", tc.builtin, err)
			}
			if got := keyAlgorithms(t, cfg, label); strings.Join(got, ",") != "ecdsa-p384,ecdsa-p384,ml-dsa-65,ml-dsa-87" {
				t.Errorf("token keys after rotation: %v", got)
			}
			noKeyFiles(t, root.Dir)

			_, a1, err := root.Version("v1")
			if err != nil {
				t.Fatal(err)
			}
			active, a2, err := root.Version("")
			if err != nil {
				t.Fatal(err)
			}
			if active != v2 || a2.Status != StatusActive || a1.Status != StatusArchived || a1.Archived == nil {
				t.Errorf("after rotation: active %s (%s), v1 %s", active, a2.Status, a1.Status)
			}
			if len(a2.Keys) != 2 || len(v1.Keys) != 2 {
				t.Fatalf("keys: v1 %+v, v2 %+v", v1.Keys, a2.Keys)
			}
			if k0, k1 := a2.Keys[0].Algorithm, a2.Keys[1].Algorithm; a2.Mode != tc.mode || k0+","+k1 != "ecdsa-p384,ml-dsa-87" && k0+","+k1 != "ml-dsa-87,ecdsa-p384" {
				t.Errorf("v2 mode %q keys %s, %s", a2.Mode, k0, k1)
			}
			ids := map[string]bool{}
			for _, k := range append(append([]Key(nil), v1.Keys...), a2.Keys...) {
				if k.Storage.Type != "pkcs11" || k.Storage.Label != label || k.Storage.KeyID == "" {
					t.Errorf("key %s storage %+v", k.ID, k.Storage)
				}
				ids[k.Storage.KeyID] = true
			}
			if len(ids) != 4 {
				t.Errorf("four keys but %d key ids", len(ids))
			}

			v2Cert := caCert(t, root, v2)
			if sig, alt := x509x.SignatureAlgorithms(v2Cert); sig != tc.sig2 || alt != tc.alt2 {
				t.Errorf("v2 signed with %s + %q", sig, alt)
			}
			leaf := issue(t, root, IssueRequest{Profile: tc.leafProfile, CSR: tc.csr(t, tc.mode+".up.token.example")})
			if _, err := VerifyChain(leaf, VerifyOptions{Roots: []*x509.Certificate{v2Cert}}); err != nil {
				t.Fatalf("verify a leaf of v2: %v", err)
			}
			if _, err := VerifyChain(leaf, VerifyOptions{Roots: []*x509.Certificate{v1Cert}}); err == nil {
				t.Error("a leaf of v2 verified under v1's keys")
			}
		})
	}
}
