package ca

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
)

// TestOpenSSLVerifiesEveryBuiltinProfile issues from every built-in
// profile and has openssl verify the chain, read the extensions and
// verify the CRL.
func TestOpenSSLVerifiesEveryBuiltinProfile(t *testing.T) {
	for _, fam := range []struct {
		name, root, issuing string
		key                 algo.Algorithm
		leaves              []string
		rootWant            []string
	}{
		{"ec", "ec/root-ca", "ec/issuing-ca", algo.ECDSAP256, []string{"tls-server", "tls-client", "signing"}, []string{"ecdsa-with-SHA384", "CA:TRUE"}},
		{"rsa", "rsa/root-ca", "rsa/issuing-ca", algo.RSA2048, []string{"tls-server", "tls-client", "signing"}, []string{"CA:TRUE"}},
		{"ed", "ed/root-ca", "", algo.Ed25519, []string{"signing"}, []string{"ED25519", "CA:TRUE"}},
	} {
		t.Run(fam.name, func(t *testing.T) {
			dir := t.TempDir()
			root := newRoot(t, filepath.Join(dir, "root"), fam.root, fam.name+" Test Root")
			rootPEM := filepath.Join(root.Dir, CertFile)
			text := openssl(t, "x509", "-in", rootPEM, "-noout", "-text")
			for _, w := range append(fam.rootWant, "Certificate Sign, CRL Sign", "X509v3 Subject Key Identifier") {
				if !strings.Contains(text, w) {
					t.Errorf("root: openssl x509 -text lacks %q", w)
				}
			}
			openssl(t, "verify", "-CAfile", rootPEM, rootPEM)

			issuer, untrusted := root, []string{}
			if fam.issuing != "" {
				issuer = newSub(t, filepath.Join(dir, "sub"), fam.issuing, fam.name+" Test Issuing CA", root)
				subPEM := filepath.Join(issuer.Dir, CertFile)
				openssl(t, "verify", "-CAfile", rootPEM, subPEM)
				if txt := openssl(t, "x509", "-in", subPEM, "-noout", "-text"); !strings.Contains(txt, "pathlen:0") {
					t.Errorf("issuing CA lacks pathlen:0:\n%s", txt)
				}
				untrusted = []string{"-untrusted", subPEM}
			}
			var serials []string
			for _, leaf := range fam.leaves {
				prof := fam.name + "/" + leaf
				csr := newCSR(t, fam.key, "leaf.example.com")
				if leaf == "tls-server" {
					csr = newCSR(t, fam.key, "leaf.example.com", "leaf.example.com")
				}
				vars := map[string]any{}
				if leaf != "tls-server" {
					vars["cn"] = "leaf.example.com"
				}
				rec, err := issuer.Issue(context.Background(), IssueRequest{Profile: prof, CSR: csr, Vars: vars}, KeyOptions{})
				if err != nil {
					t.Fatalf("issue %s: %v", prof, err)
				}
				serials = append(serials, rec.Serial)
				// Leaf built-ins do not lint by default; they must pass anyway.
				if err := lintCert(rec.DER, LintPolicy{Enabled: true}); err != nil {
					t.Errorf("%s: %v", prof, err)
				}
				leafPEM := writePEM(t, filepath.Join(dir, leaf+".crt"), rec.DER, "CERTIFICATE")
				args := append([]string{"verify", "-CAfile", rootPEM}, untrusted...)
				out := openssl(t, append(args, leafPEM)...)
				if !strings.Contains(out, ": OK") {
					t.Errorf("%s: openssl verify: %s", prof, out)
				}
				text := openssl(t, "x509", "-in", leafPEM, "-noout", "-text")
				for _, w := range leafWants(leaf) {
					if !strings.Contains(text, w) {
						t.Errorf("%s: openssl x509 -text lacks %q:\n%s", prof, w, text)
					}
				}
			}

			// Revoke the first leaf; openssl must accept the CRL's
			// signature and see the revocation.
			if _, err := issuer.Revoke(serials[0], 1, nowUTC()); err != nil {
				t.Fatal(err)
			}
			if _, err := issuer.GenerateCRL(CRLOptions{}); err != nil {
				t.Fatal(err)
			}
			crlPEM := filepath.Join(issuer.Dir, CRLDir, "ca.crl")
			issuerPEM := filepath.Join(issuer.Dir, CertFile)
			out := openssl(t, "crl", "-in", crlPEM, "-CAfile", issuerPEM, "-noout", "-verify")
			if !strings.Contains(out, "verify OK") {
				t.Errorf("openssl crl -verify: %s", out)
			}
			crlText := openssl(t, "crl", "-in", crlPEM, "-noout", "-text")
			for _, w := range []string{"X509v3 CRL Number", "X509v3 Authority Key Identifier", "Key Compromise", "Next Update", strings.ToUpper(serials[0])} {
				if !strings.Contains(strings.ToUpper(crlText), strings.ToUpper(w)) {
					t.Errorf("CRL text lacks %q:\n%s", w, crlText)
				}
			}
			chain := filepath.Join(dir, "chain.pem")
			rootCert, _ := root.Certificate("")
			issuerCert, _ := issuer.Certificate("")
			if issuer == root {
				writeCertsFile(t, chain, rootCert)
			} else {
				writeCertsFile(t, chain, issuerCert, rootCert)
			}
			revoked := filepath.Join(dir, fam.leaves[0]+".crt")
			out = opensslFails(t, "verify", "-crl_check", "-CAfile", chain, "-CRLfile", crlPEM, revoked)
			if !strings.Contains(out, "certificate revoked") {
				t.Errorf("openssl verify -crl_check on a revoked leaf: %s", out)
			}
		})
	}
}

func leafWants(leaf string) []string {
	switch leaf {
	case "tls-server":
		return []string{"TLS Web Server Authentication", "DNS:leaf.example.com", "Digital Signature", "CA:FALSE", "X509v3 Authority Key Identifier"}
	case "tls-client":
		return []string{"TLS Web Client Authentication", "Digital Signature"}
	case "signing":
		return []string{"Digital Signature"}
	}
	return nil
}

// TestOpenSSLCSRAccepted issues from a CSR that openssl req made.
func TestOpenSSLCSRAccepted(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Root")
	sub := newSub(t, filepath.Join(dir, "sub"), "ec/issuing-ca", "Sub", root)
	csrPath := filepath.Join(dir, "req.csr")
	openssl(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", filepath.Join(dir, "req.key"), "-subj", "/CN=www.example.com",
		"-addext", "subjectAltName=DNS:www.example.com,DNS:example.com", "-out", csrPath)
	csr := readTestCSR(t, csrPath)
	rec, err := sub.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: csr}, KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf := writePEM(t, filepath.Join(dir, "leaf.crt"), rec.DER, "CERTIFICATE")
	openssl(t, "verify", "-CAfile", filepath.Join(root.Dir, CertFile), "-untrusted", filepath.Join(sub.Dir, CertFile), leaf)
	// The certificate certifies openssl's key.
	certPub := openssl(t, "x509", "-in", leaf, "-noout", "-pubkey")
	keyPub := openssl(t, "pkey", "-in", filepath.Join(dir, "req.key"), "-pubout")
	if certPub != keyPub {
		t.Error("certificate key differs from the openssl key")
	}
	if text := openssl(t, "x509", "-in", leaf, "-noout", "-text"); !strings.Contains(text, "DNS:example.com") {
		t.Error("SAN from the openssl CSR missing")
	}
}

func TestOpenSSLReadsEncryptedCAKey(t *testing.T) {
	dir := t.TempDir()
	c, err := Init(InitOptions{Dir: filepath.Join(dir, "ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Enc Root"},
		Key: KeySpec{Passphrase: []byte("correct horse")}})
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(c.Dir, c.Meta.Versions["v1"].Keys[0].Storage.Path)
	out, err := exec.Command(opensslBin(t), "pkey", "-in", keyPath, "-passin", "pass:correct horse", "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "NIST CURVE: P-384") {
		t.Fatalf("openssl could not open the encrypted key: %v\n%s", err, out)
	}
}
