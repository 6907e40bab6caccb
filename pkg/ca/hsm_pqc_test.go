package ca

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/testtoken"
)

// Post-quantum and hybrid CAs whose keys live in the qpki test token, a
// PKCS#11 3.2 token for development and CI (SoftHSM2 has no post-quantum
// mechanisms).

func pqToken(t *testing.T) string {
	t.Helper()
	return testtoken.Shared(t).Config(t, testtoken.SharedToken)
}

func keyAlgorithms(t *testing.T, cfg, label string) []string {
	t.Helper()
	var algs []string
	for _, k := range hsmKeys(t, cfg, label) {
		algs = append(algs, k.Algorithm)
	}
	sort.Strings(algs)
	return algs
}

// An ML-DSA root on the token signs an ML-DSA issuing CA on the token,
// which issues a leaf and a CRL; the root rotates to a new key on the
// token, and the daemon restarts in the middle of a batch of issuances.
func TestTestTokenMLDSAHierarchy(t *testing.T) {
	cfg := pqToken(t)
	d := testtoken.Shared(t)
	rootLabel, subLabel := uniqueLabel("ml-root"), uniqueLabel("ml-sub")
	dir := t.TempDir()

	root := hsmInit(t, filepath.Join(dir, "root"), "ml/root-ca", "Token ML Root", KeySpec{HSMConfig: cfg, Label: rootLabel}, nil)
	sub := hsmInit(t, filepath.Join(dir, "sub"), "ml/issuing-ca", "Token ML Issuing", KeySpec{HSMConfig: cfg, Label: subLabel}, root)
	for _, c := range []*CA{root, sub} {
		noKeyFiles(t, c.Dir)
		if st := metaStorage(t, c.Dir, "v1"); st.Type != "pkcs11" || st.KeyID == "" {
			t.Errorf("%s storage %+v", c.Dir, st)
		}
	}
	if got := keyAlgorithms(t, cfg, subLabel); strings.Join(got, ",") != "ml-dsa-65" {
		t.Errorf("issuing CA keys on the token: %v", got)
	}

	verify := func(leaf *x509.Certificate) {
		t.Helper()
		o := VerifyOptions{Roots: []*x509.Certificate{caCert(t, root, "")}, Intermediates: []*x509.Certificate{caCert(t, sub, "")}}
		if _, err := VerifyChain(leaf, o); err != nil {
			t.Fatalf("verify: %v", err)
		}
	}
	leaf := issue(t, sub, IssueRequest{Profile: "ml/tls-server", CSR: newCSR(t, algo.MLDSA44, "ml.token.example", "ml.token.example")})
	if sig, _ := x509x.SignatureAlgorithms(leaf); sig != "ml-dsa-65" {
		t.Errorf("leaf signed with %s", sig)
	}
	verify(leaf)
	crlDER, err := sub.GenerateCRL(CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCRLSignature(crl, caCert(t, sub, "")); err != nil {
		t.Fatalf("CRL: %v", err)
	}

	// A batch with the daemon killed and restarted half way: every
	// issuance succeeds and verifies.
	for i := 0; i < 8; i++ {
		if i == 4 {
			if err := d.Restart(); err != nil {
				t.Fatal(err)
			}
		}
		name := fmt.Sprintf("batch-%d.token.example", i)
		verify(issue(t, sub, IssueRequest{Profile: "ml/tls-server", CSR: newCSR(t, algo.MLDSA44, name, name)}))
	}

	// Rotation makes a new key on the token under a new id; v1's stays.
	v2, err := root.Rotate(RotateOptions{CrossSign: true})
	if err != nil {
		t.Fatal(err)
	}
	st1, st2 := metaStorage(t, root.Dir, "v1"), metaStorage(t, root.Dir, v2)
	if st2.Type != "pkcs11" || st2.Label != rootLabel || st2.KeyID == st1.KeyID {
		t.Errorf("rotated storage %+v (v1 %+v)", st2, st1)
	}
	if ks := hsmKeys(t, cfg, rootLabel); len(ks) != 2 {
		t.Errorf("root keys on the token after rotation: %+v", ks)
	}
}

// A Catalyst and a composite root, each with two keys on the token under
// one label, told apart by their type; the composite signature is built
// from two token signatures, the ML-DSA half under its context.
func TestTestTokenHybridCAs(t *testing.T) {
	cfg := pqToken(t)
	dir := t.TempDir()

	t.Run("catalyst", func(t *testing.T) {
		label := uniqueLabel("cat-root")
		root := hsmInit(t, filepath.Join(dir, "cat"), "hybrid/catalyst/root-ca", "Token Catalyst Root", KeySpec{HSMConfig: cfg, Label: label}, nil)
		noKeyFiles(t, root.Dir)
		_, v, _ := root.Version("")
		if len(v.Keys) != 2 {
			t.Fatalf("catalyst root keys %+v", v.Keys)
		}
		ids := map[string]bool{}
		for _, k := range v.Keys {
			if k.Storage.Type != "pkcs11" || k.Storage.Label != label || k.Storage.KeyID == "" {
				t.Errorf("key %s storage %+v", k.ID, k.Storage)
			}
			ids[k.Storage.KeyID] = true
		}
		if len(ids) != 2 {
			t.Errorf("the two keys share a key_id: %+v", v.Keys)
		}
		if got := keyAlgorithms(t, cfg, label); strings.Join(got, ",") != strings.Join(sortedCopy(v.Algos), ",") {
			t.Errorf("token keys %v, version algorithms %v", got, v.Algos)
		}
		csr := newCatalystCSR(t, algo.ECDSAP256, algo.MLDSA65, "cat.token.example")
		leaf := issue(t, root, IssueRequest{Profile: "hybrid/catalyst/tls-server", CSR: csr})
		if _, alt := x509x.SignatureAlgorithms(leaf); alt == "" {
			t.Error("the leaf has no alternative signature")
		}
		if _, err := VerifyChain(leaf, VerifyOptions{Roots: []*x509.Certificate{caCert(t, root, "")}}); err != nil {
			t.Fatalf("verify: %v", err)
		}
	})

	t.Run("composite", func(t *testing.T) {
		label := uniqueLabel("comp-root")
		root := hsmInit(t, filepath.Join(dir, "comp"), "hybrid/composite/root-ca", "Token Composite Root", KeySpec{HSMConfig: cfg, Label: label}, nil)
		noKeyFiles(t, root.Dir)
		_, v1, _ := root.Version("")
		if v1.Mode != "composite" || len(v1.Keys) != 2 {
			t.Fatalf("composite root: mode %q keys %+v", v1.Mode, v1.Keys)
		}
		if got := keyAlgorithms(t, cfg, label); strings.Join(got, ",") != "ecdsa-p384,ml-dsa-87" {
			t.Errorf("token keys %v", got)
		}
		rootCert := caCert(t, root, "")
		if sig, _ := x509x.SignatureAlgorithms(rootCert); sig != "composite-mldsa87-ecdsa-p384" {
			t.Errorf("root self-signed with %s", sig)
		}
		leaf := issue(t, root, IssueRequest{Profile: "hybrid/composite/tls-server",
			CSR: newCSR(t, algo.CompositeMLDSA65ECDSAP256, "comp.token.example", "comp.token.example")})
		if _, err := VerifyChain(leaf, VerifyOptions{Roots: []*x509.Certificate{rootCert}}); err != nil {
			t.Fatalf("verify a leaf signed by two token keys: %v", err)
		}
		crlDER, err := root.GenerateCRL(CRLOptions{})
		if err != nil {
			t.Fatal(err)
		}
		crl, _ := x509.ParseRevocationList(crlDER)
		if err := CheckCRLSignature(crl, rootCert); err != nil {
			t.Errorf("composite CRL: %v", err)
		}

		// Rotation generates both new keys on the token; v1 stays usable.
		v2, err := root.Rotate(RotateOptions{CrossSign: true})
		if err != nil {
			t.Fatal(err)
		}
		if ks := hsmKeys(t, cfg, label); len(ks) != 4 {
			t.Errorf("token keys after rotating a hybrid CA: %+v", ks)
		}
		_, nv, _ := root.Version(v2)
		for i, k := range nv.Keys {
			if k.Storage.Type != "pkcs11" || k.Storage.KeyID == v1.Keys[i].Storage.KeyID {
				t.Errorf("%s key %s storage %+v", v2, k.ID, k.Storage)
			}
		}
		leaf2 := issue(t, root, IssueRequest{Profile: "hybrid/composite/tls-server",
			CSR: newCSR(t, algo.CompositeMLDSA65ECDSAP256, "comp2.token.example", "comp2.token.example")})
		if _, err := VerifyChain(leaf2, VerifyOptions{Roots: []*x509.Certificate{caCert(t, root, v2)}}); err != nil {
			t.Fatalf("verify after rotation: %v", err)
		}
	})
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
