package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/keyfile"
)

// opensslPath finds openssl; under CI it must be there.
func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not found (install the Debian openssl package)")
		}
		t.Skip("openssl not found")
	}
	return p
}

func opensslRun(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(opensslPath(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPQKeysAndCSRs makes a key and a CSR with every post-quantum and
// composite algorithm name, reads each CSR back (proof of possession
// checked), and refuses a CSR for an ML-KEM key without a statement of
// possession.
func TestPQKeysAndCSRs(t *testing.T) {
	d := t.TempDir()
	var names, verifyOnly []string
	for _, a := range algo.All() {
		switch {
		case a.IsClassical():
		case a.VerifyOnly(), strings.Contains(string(a), "brainpool"):
			verifyOnly = append(verifyOnly, string(a))
		default:
			names = append(names, string(a))
		}
	}
	if len(names) != 3+12+3+16+10 || len(verifyOnly) != 15+2+2 {
		t.Fatalf("%d post-quantum and composite algorithms: %v; %d verify-only: %v", len(names), names, len(verifyOnly), verifyOnly)
	}
	// Pre-hash and brainpool algorithms are verified (or encapsulated to),
	// never made: key gen says why.
	for _, name := range verifyOnly {
		want := "signs only with pure"
		if strings.Contains(name, "brainpool") {
			want = "constant-time"
		}
		fails(t, d, want, "key", "gen", "--algorithm", name, "--out", name+".key")
	}
	var mu sync.Mutex
	seen := map[algo.Family]int{}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := algo.Algorithm(name)
			key := name + ".key"
			ok(t, d, "key", "gen", "--algorithm", name, "--out", key)
			if pub := ok(t, d, "key", "pub", "--key", key); !strings.Contains(pub, "BEGIN PUBLIC KEY") {
				t.Errorf("key pub: %s", pub)
			}
			mu.Lock()
			seen[a.Family()]++
			mu.Unlock()
			if !a.CanSign() {
				fails(t, d, "--sign-cert", "csr", "gen", "--key", key, "--cn", "kem", "--out", name+".csr")
				return
			}
			ok(t, d, "csr", "gen", "--key", key, "--cn", "pq.example.com", "--dns", "pq.example.com", "--out", name+".csr")
			out := ok(t, d, "csr", "show", name+".csr")
			if !strings.Contains(out, "Key algorithm:  "+name) || !strings.Contains(out, "proof of possession checked") {
				t.Errorf("csr show:\n%s", out)
			}
			// A new key straight from csr gen, as an operator would.
			if a.Family() == algo.FamilyMLDSA || name == "composite-mldsa65-ecdsa-p256" {
				ok(t, d, "csr", "gen", "--algorithm", name, "--keyout", name+".new.key", "--cn", "n.example.com", "--out", name+".new.csr")
				ok(t, d, "csr", "show", name+".new.csr")
			}
			// A flipped bit in the signature is caught.
			der, err := readPEMFile(filepath.Join(d, name+".csr"))
			if err != nil {
				t.Fatal(err)
			}
			der[len(der)-4] ^= 1
			writePEMFile(t, filepath.Join(d, name+".bad.csr"), "CERTIFICATE REQUEST", der)
			fails(t, d, "signature", "csr", "show", name+".bad.csr")
		})
	}
	t.Cleanup(func() {
		if seen[algo.FamilyMLDSA] != 3 || seen[algo.FamilySLHDSA] != 12 || seen[algo.FamilyMLKEM] != 3 || seen[algo.FamilyComposite] != 16 || seen[algo.FamilyCompositeKEM] != 10 {
			t.Errorf("families covered: %v", seen)
		}
	})
}

func readPEMFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, os.ErrInvalid
	}
	return b.Bytes, nil
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCatalystCSR(t *testing.T) {
	d := t.TempDir()
	ok(t, d, "csr", "gen", "--algorithm", "ecdsa-p384", "--keyout", "ec.key", "--catalyst", "ml-dsa-65", "--pqc-keyout", "pqc.key",
		"--cn", "hybrid.example.com", "--dns", "hybrid.example.com", "--out", "hybrid.csr")
	out := ok(t, d, "csr", "show", "hybrid.csr")
	for _, want := range []string{"Key algorithm:      ecdsa-p384", "Alt key algorithm:  ml-dsa-65"} {
		if !strings.Contains(out, want) {
			t.Errorf("csr show lacks %q:\n%s", want, out)
		}
	}
	if k := ok(t, d, "key", "list", "--dir", "."); !strings.Contains(k, "pqc.key") || !strings.Contains(k, "ml-dsa-65") {
		t.Errorf("key list: %s", k)
	}
	// The same two keys again.
	ok(t, d, "csr", "gen", "--key", "ec.key", "--pqc-key", "pqc.key", "--cn", "hybrid.example.com", "--out", "again.csr")
	var js struct {
		KeyAlgorithm string `json:"key_algorithm"`
		AltKey       string `json:"alt_key_algorithm"`
	}
	if err := json.Unmarshal([]byte(ok(t, d, "csr", "show", "again.csr", "--json")), &js); err != nil || js.KeyAlgorithm != "ecdsa-p384" || js.AltKey != "ml-dsa-65" {
		t.Errorf("csr show --json: %+v %v", js, err)
	}
	// openssl sees an ordinary ECDSA CSR with three extra attributes.
	if out, err := opensslRun(t, d, "req", "-in", "hybrid.csr", "-noout", "-verify"); err != nil || !strings.Contains(out, "verify OK") {
		t.Errorf("openssl req -verify: %v\n%s", err, out)
	}

	fails(t, d, "--pqc-keyout", "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "a.key", "--catalyst", "ml-dsa-65", "--cn", "a")
	fails(t, d, "post-quantum signature key", "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "b.key", "--catalyst", "ml-kem-768", "--pqc-keyout", "b.pqc", "--cn", "b")
	fails(t, d, "classical key with a post-quantum one", "csr", "gen", "--algorithm", "ml-dsa-44", "--keyout", "c.key", "--catalyst", "ml-dsa-65", "--pqc-keyout", "c.pqc", "--cn", "c")
	fails(t, d, "--catalyst", "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "e.key", "--pqc-keyout", "e.pqc", "--cn", "e")
	fails(t, d, "unknown algorithm", "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "f.key", "--catalyst", "ml-dsa-99", "--pqc-keyout", "f.pqc", "--cn", "f")
	for _, f := range []string{"a.key", "b.key", "b.pqc", "c.key", "c.pqc", "e.key", "e.pqc", "f.key", "f.pqc"} {
		if _, err := os.Stat(filepath.Join(d, f)); err == nil {
			t.Errorf("a failed csr gen left %s", f)
		}
	}
}

// TestPQHierarchiesCLI runs root → issuing → leaf, revocation and CRL for
// each post-quantum and hybrid family through the CLI.
func TestPQHierarchiesCLI(t *testing.T) {
	d := t.TempDir()
	slhRoot := writeProfile(t, d, "slh/root-ca", "slh-root-fast.yaml", `(?m)^algorithm: .*$`, "algorithm: slh-dsa-sha2-128f", `(?m)^name: .*$`, "name: test/slh-root-fast")
	for _, tc := range []struct {
		name, root, issuing, leaf string
		csr                       []string
		sigs                      []string // what cert verify reports, leaf first
		openssl                   bool
	}{
		{"ml", "ml/root-ca", "ml/issuing-ca", "ml/tls-server", []string{"--algorithm", "ml-dsa-65"},
			[]string{"ml-dsa-65: OK", "ml-dsa-87: OK", "trust anchor, self-signed ml-dsa-87: OK"}, false},
		{"slh", slhRoot, "slh/issuing-ca", "slh/tls-server", []string{"--algorithm", "slh-dsa-sha2-128f"},
			[]string{"slh-dsa-sha2-128f: OK", "slh-dsa-sha2-128f: OK", "trust anchor, self-signed slh-dsa-sha2-128f: OK"}, false},
		{"catalyst", "hybrid/catalyst/root-ca", "hybrid/catalyst/issuing-ca", "hybrid/catalyst/tls-server",
			[]string{"--algorithm", "ecdsa-p256", "--catalyst", "ml-dsa-44", "--pqc-keyout", "leaf.pqc.key"},
			[]string{"classical (ecdsa-with-SHA384): OK, alternative (ml-dsa-65): OK", "classical (ecdsa-with-SHA384): OK, alternative (ml-dsa-87): OK",
				"trust anchor, self-signed classical (ecdsa-with-SHA384): OK, alternative (ml-dsa-87): OK"}, true},
		{"composite", "hybrid/composite/root-ca", "hybrid/composite/issuing-ca", "hybrid/composite/tls-server", []string{"--algorithm", "composite-mldsa65-ecdsa-p256"},
			[]string{"composite-mldsa65-ecdsa-p256: OK", "composite-mldsa87-ecdsa-p384: OK", "trust anchor, self-signed composite-mldsa87-ecdsa-p384: OK"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := filepath.Join(d, tc.name)
			if err := os.MkdirAll(w, 0o755); err != nil {
				t.Fatal(err)
			}
			ok(t, w, "ca", "init", "--profile", tc.root, "--var", "cn="+tc.name+" Root", "--ca-dir", "root")
			ok(t, w, "ca", "init", "--profile", tc.issuing, "--parent", "root", "--var", "cn="+tc.name+" Issuing", "--ca-dir", "sub")
			ok(t, w, append([]string{"csr", "gen", "--keyout", "leaf.key", "--cn", "leaf.example.com", "--dns", "leaf.example.com", "--out", "leaf.csr"}, tc.csr...)...)
			ok(t, w, "cert", "issue", "--ca-dir", "sub", "--profile", tc.leaf, "--csr", "leaf.csr", "-o", "leaf.crt")
			out := ok(t, w, "cert", "verify", "leaf.crt", "--ca", "root/ca.crt", "--untrusted", "sub/ca.crt")
			if !strings.Contains(out, "leaf.crt: OK") {
				t.Errorf("verify:\n%s", out)
			}
			for _, want := range tc.sigs {
				if !strings.Contains(out, "     "+want+"\n") {
					t.Errorf("verify output lacks %q:\n%s", want, out)
				}
			}
			show := ok(t, w, "cert", "show", "--ca-dir", "sub", serialOf(t, w, "sub"))
			if tc.name == "catalyst" && (!strings.Contains(show, "Alt key algorithm:  ml-dsa-44") || !strings.Contains(show, "Alt signature:      ml-dsa-65")) {
				t.Errorf("cert show:\n%s", show)
			}
			if tc.name == "composite" && !strings.Contains(show, "composite-mldsa65-ecdsa-p256 (draft-ietf-lamps-pq-composite-sigs-19)") {
				t.Errorf("cert show:\n%s", show)
			}
			// Another root of the same name is no anchor for this chain.
			ok(t, w, "ca", "init", "--profile", tc.root, "--var", "cn="+tc.name+" Root", "--ca-dir", "impostor")
			fails(t, w, "verification failed", "cert", "verify", "leaf.crt", "--ca", "impostor/ca.crt", "--untrusted", "sub/ca.crt")

			ok(t, w, "crl", "gen", "--ca-dir", "sub", "--out", "sub-empty.crl")
			ok(t, w, "cert", "verify", "leaf.crt", "--ca", "root/ca.crt", "--untrusted", "sub/ca.crt", "--crl", "sub-empty.crl")
			ok(t, w, "cert", "revoke", serialOf(t, w, "sub"), "--reason", "keyCompromise", "--ca-dir", "sub")
			ok(t, w, "crl", "gen", "--ca-dir", "sub", "--out", "sub.crl")
			fails(t, w, "revoked", "cert", "verify", "leaf.crt", "--ca", "root/ca.crt", "--untrusted", "sub/ca.crt", "--crl", "sub.crl")

			if tc.openssl {
				ok(t, w, "crl", "gen", "--ca-dir", "root", "--out", "root.crl")
				if out, err := opensslRun(t, w, "verify", "-CAfile", "root/ca.crt", "-untrusted", "sub/ca.crt", "leaf.crt"); err != nil {
					t.Errorf("openssl verify: %v\n%s", err, out)
				}
				if out, err := opensslRun(t, w, "crl", "-in", "sub.crl", "-noout", "-CAfile", "sub/ca.crt"); err != nil || !strings.Contains(out, "verify OK") {
					t.Errorf("openssl crl: %v\n%s", err, out)
				}
				out, err := opensslRun(t, w, "verify", "-crl_check_all", "-CAfile", "root/ca.crt", "-untrusted", "sub/ca.crt", "-CRLfile", "sub.crl", "-CRLfile", "root.crl", "leaf.crt")
				if err == nil || !strings.Contains(out, "revoked") {
					t.Errorf("openssl verify with the CRL: %v\n%s", err, out)
				}
			}
		})
	}
}

// serialOf returns the serial of the one certificate a CA issued.
func serialOf(t *testing.T, dir, caDir string) string {
	t.Helper()
	var list []struct{ Serial string }
	if err := json.Unmarshal([]byte(ok(t, dir, "cert", "list", "--ca-dir", caDir, "--json")), &list); err != nil || len(list) == 0 {
		t.Fatalf("cert list: %v %v", list, err)
	}
	return list[len(list)-1].Serial
}

// TestKEMCLI certifies ML-KEM keys from a public key and from an RFC 9883
// request signed by the subject's ML-DSA key.
func TestKEMCLI(t *testing.T) {
	d := t.TempDir()
	ok(t, d, "ca", "init", "--profile", "ml/root-ca", "--var", "cn=KEM Root", "--ca-dir", "ca")
	ok(t, d, "key", "gen", "--algorithm", "ml-kem-768", "--out", "kem.key")
	ok(t, d, "key", "pub", "--key", "kem.key", "--out", "kem.pub")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "ml/encryption", "--pubkey", "kem.pub", "--var", "cn=alice", "-o", "kem.crt")
	out := ok(t, d, "cert", "show", "--ca-dir", "ca", serialOf(t, d, "ca"))
	for _, want := range []string{"Key algorithm:     ml-kem-768", "Key usage:         keyEncipherment\n", "Signature:         ml-dsa-87"} {
		if !strings.Contains(out, want) {
			t.Errorf("cert show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Ext key usage") {
		t.Errorf("an ML-KEM certificate with extended key usage:\n%s", out)
	}
	ok(t, d, "cert", "verify", "kem.crt", "--ca", "ca/ca.crt")
	fails(t, d, "ml-kem-768 is not allowed", "cert", "issue", "--ca-dir", "ca", "--profile", "ml/tls-client", "--pubkey", "kem.pub", "--var", "cn=alice")

	// RFC 9883: alice's signature certificate vouches for her KEM key.
	ok(t, d, "csr", "gen", "--algorithm", "ml-dsa-65", "--keyout", "alice.key", "--cn", "alice", "--email", "alice@example.com", "--out", "alice.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "ml/tls-client", "--csr", "alice.csr", "-o", "alice.crt")
	ok(t, d, "csr", "gen", "--algorithm", "ml-kem-768", "--keyout", "alice-kem.key", "--sign-cert", "alice.crt", "--sign-key", "alice.key",
		"--email", "alice@example.com", "--out", "alice-kem.csr")
	show := ok(t, d, "csr", "show", "alice-kem.csr")
	for _, want := range []string{"Key algorithm:  ml-kem-768", "Subject:        CN=alice", "RFC 9883", "signature certificate CN=alice"} {
		if !strings.Contains(show, want) {
			t.Errorf("csr show lacks %q:\n%s", want, show)
		}
	}
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "ml/encryption", "--csr", "alice-kem.csr", "-o", "alice-kem.crt")
	crt := ok(t, d, "cert", "show", "--ca-dir", "ca", serialOf(t, d, "ca"))
	for _, want := range []string{"Subject:           CN=alice", "Emails:            alice@example.com", "Key algorithm:     ml-kem-768", "Key usage:         keyEncipherment\n"} {
		if !strings.Contains(crt, want) {
			t.Errorf("certificate from the RFC 9883 request lacks %q:\n%s", want, crt)
		}
	}
	// The certificate is for the KEM key of the request.
	kemPub := ok(t, d, "key", "pub", "--key", "alice-kem.key")
	certDER, _ := readPEMFile(filepath.Join(d, "alice-kem.crt"))
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := pem.Decode([]byte(kemPub)); want == nil || !bytes.Equal(want.Bytes, cert.RawSubjectPublicKeyInfo) {
		t.Error("the certificate does not hold the request's ML-KEM key")
	}
	// Without the certificate in the statement the CA finds it itself.
	ok(t, d, "csr", "gen", "--algorithm", "ml-kem-1024", "--keyout", "k2.key", "--sign-cert", "alice.crt", "--sign-key", "alice.key", "--no-include-cert", "--out", "k2.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "ml/encryption", "--csr", "k2.csr", "-o", "k2.crt")

	// Refused: another subject, a revoked signature certificate, and a
	// KEM request with no statement.
	ok(t, d, "csr", "gen", "--algorithm", "ml-kem-768", "--keyout", "m.key", "--sign-cert", "alice.crt", "--sign-key", "alice.key", "--cn", "mallory", "--out", "mallory.csr")
	fails(t, d, "is not the signature certificate's", "cert", "issue", "--ca-dir", "ca", "--profile", "ml/encryption", "--csr", "mallory.csr")
	var list []struct{ Serial, Subject, Profile string }
	if err := json.Unmarshal([]byte(ok(t, d, "cert", "list", "--ca-dir", "ca", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.Profile == "ml/tls-client" {
			ok(t, d, "cert", "revoke", c.Serial, "--ca-dir", "ca")
		}
	}
	fails(t, d, "revoked", "cert", "issue", "--ca-dir", "ca", "--profile", "ml/encryption", "--csr", "alice-kem.csr")
	fails(t, d, "--sign-cert", "csr", "gen", "--algorithm", "ml-kem-512", "--keyout", "x.key", "--cn", "x")
	fails(t, d, "sign their own request", "csr", "gen", "--algorithm", "ml-dsa-44", "--keyout", "y.key", "--sign-cert", "alice.crt", "--sign-key", "alice.key", "--cn", "y")
}

// TestRotateAcrossAlgorithmsCLI rotates ec/root-ca → hybrid/catalyst/root-ca
// → ml/root-ca; each version's leaf verifies under its version, and under
// the newest through the cross-signed links.
func TestRotateAcrossAlgorithmsCLI(t *testing.T) {
	d := t.TempDir()
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=Rolling Root", "--ca-dir", "ca")
	issueLeaf := func(version, profile string, csrArgs ...string) {
		ok(t, d, append([]string{"csr", "gen", "--keyout", version + ".key", "--cn", version + ".example.com", "--dns", version + ".example.com", "--out", version + ".csr"}, csrArgs...)...)
		ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", profile, "--csr", version+".csr", "-o", version+".crt")
	}
	issueLeaf("v1", "ec/tls-server", "--algorithm", "ecdsa-p256")
	if out := ok(t, d, "ca", "rotate", "--ca-dir", "ca", "--profile", "hybrid/catalyst/root-ca", "--cross-sign"); !strings.Contains(out, "v2 (ecdsa-p384+ml-dsa-87") {
		t.Errorf("rotate to v2: %s", out)
	}
	issueLeaf("v2", "hybrid/catalyst/tls-server", "--algorithm", "ecdsa-p256", "--catalyst", "ml-dsa-65", "--pqc-keyout", "v2.pqc.key")
	if out := ok(t, d, "ca", "rotate", "--ca-dir", "ca", "--profile", "ml/root-ca", "--cross-sign"); !strings.Contains(out, "v3 (ml-dsa-87") {
		t.Errorf("rotate to v3: %s", out)
	}
	issueLeaf("v3", "ml/tls-server", "--algorithm", "ml-dsa-65")
	versions := ok(t, d, "ca", "versions", "--ca-dir", "ca")
	for _, want := range []string{"ecdsa-p384+ml-dsa-87", "ml-dsa-87"} {
		if !strings.Contains(versions, want) {
			t.Errorf("ca versions lacks %q:\n%s", want, versions)
		}
	}
	links, _ := filepath.Glob(filepath.Join(d, "ca", "versions", "*", "links", "*.crt"))
	if len(links) != 4 {
		t.Fatalf("links %v", links)
	}
	args := []string{}
	for _, l := range links {
		args = append(args, "--untrusted", l)
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		out := ok(t, d, "cert", "verify", v+".crt", "--ca", "ca/versions/"+v+"/ca.crt")
		if v == "v2" && !strings.Contains(out, "classical (ecdsa-with-SHA384): OK, alternative (ml-dsa-87): OK") {
			t.Errorf("v2 leaf:\n%s", out)
		}
		ok(t, d, append([]string{"cert", "verify", v + ".crt", "--ca", "ca/ca.crt"}, args...)...)
		if v != "v3" {
			fails(t, d, "verification failed", "cert", "verify", v+".crt", "--ca", "ca/ca.crt")
		}
	}
	// The classical leaf of v1 is still a plain ECDSA chain for openssl.
	if out, err := opensslRun(t, d, "verify", "-CAfile", "ca/versions/v1/ca.crt", "v1.crt"); err != nil {
		t.Errorf("openssl v1: %v\n%s", err, out)
	}
	if out, err := opensslRun(t, d, "verify", "-CAfile", "ca/versions/v2/ca.crt", "v2.crt"); err != nil {
		t.Errorf("openssl v2 (classical view): %v\n%s", err, out)
	}
}

// A Catalyst certificate whose alternative signature is wrong: cert verify
// fails and says which signature, while openssl, which sees only the
// classical one, accepts it.
func TestCatalystBadAltCLI(t *testing.T) {
	d := t.TempDir()
	ok(t, d, "ca", "init", "--profile", "hybrid/catalyst/root-ca", "--var", "cn=Cat Root", "--ca-dir", "root")
	ok(t, d, "ca", "init", "--profile", "hybrid/catalyst/issuing-ca", "--parent", "root", "--var", "cn=Cat Issuing", "--ca-dir", "sub")
	ok(t, d, "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "leaf.key", "--catalyst", "ml-dsa-65", "--pqc-keyout", "leaf.pqc",
		"--cn", "bad.example.com", "--dns", "bad.example.com", "--out", "leaf.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "sub", "--profile", "hybrid/catalyst/tls-server", "--csr", "leaf.csr", "-o", "leaf.crt")

	der, err := readPEMFile(filepath.Join(d, "leaf.crt"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(d, "sub", "versions", "v1", "keys", "ca.classical.*.key"))
	if len(keys) != 1 {
		t.Fatalf("classical key files %v", keys)
	}
	priv, err := keyfile.Read(keys[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt the alternative signature (the TBS's last bytes) and sign
	// the classical signature again, correctly.
	tbs := bytes.Clone(leaf.RawTBSCertificate)
	tbs[len(tbs)-16] ^= 0x10
	h := sha512.Sum384(tbs)
	sig, err := priv.(crypto.Signer).Sign(rand.Reader, h[:], crypto.SHA384)
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier([]int{1, 2, 840, 10045, 4, 3, 3}) })
		b.AddASN1BitString(sig)
	})
	writePEMFile(t, filepath.Join(d, "bad.crt"), "CERTIFICATE", b.BytesOrPanic())

	r := run(t, d, nil, "cert", "verify", "bad.crt", "--ca", "root/ca.crt", "--untrusted", "sub/ca.crt")
	if r.code == 0 {
		t.Fatalf("bad alternative signature accepted:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "bad.crt: FAILED") || !strings.Contains(r.stdout, "classical (ecdsa-with-SHA384): OK, alternative (ml-dsa-65): FAILED (") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "alternative signature") {
		t.Errorf("stderr: %q", r.stderr)
	}
	if out, err := opensslRun(t, d, "verify", "-CAfile", "root/ca.crt", "-untrusted", "sub/ca.crt", "bad.crt"); err != nil {
		t.Errorf("openssl (classical view) refused it: %v\n%s", err, out)
	}
	ok(t, d, "cert", "verify", "leaf.crt", "--ca", "root/ca.crt", "--untrusted", "sub/ca.crt")
}

// TestCompositeKEMCLI: a composite ML-KEM key is generated, certified from
// its public key and through an RFC 9883 statement under
// hybrid/composite/encryption, and `key decap` recovers Bouncy Castle's
// shared secrets from its keys (DER) and ours (PEM).
func TestCompositeKEMCLI(t *testing.T) {
	d := t.TempDir()
	interopDir, err := filepath.Abs("../../../shared/interop/pqc-certificates-r5")
	if err != nil {
		t.Fatal(err)
	}
	ok(t, d, "ca", "init", "--profile", "hybrid/composite/root-ca", "--var", "cn=Composite Root", "--ca-dir", "ca")
	ok(t, d, "key", "gen", "--algorithm", "composite-mlkem768-x25519", "--out", "kem.key")
	ok(t, d, "key", "pub", "--key", "kem.key", "--out", "kem.pub")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "hybrid/composite/encryption", "--pubkey", "kem.pub", "--var", "cn=alice", "-o", "kem.crt")
	out := ok(t, d, "cert", "show", "--ca-dir", "ca", serialOf(t, d, "ca"))
	for _, want := range []string{"Key algorithm:     composite-mlkem768-x25519", "Key usage:         keyEncipherment\n", "Signature:         composite-mldsa87-ecdsa-p384"} {
		if !strings.Contains(out, want) {
			t.Errorf("cert show lacks %q:\n%s", want, out)
		}
	}
	ok(t, d, "cert", "verify", "kem.crt", "--ca", "ca/ca.crt")
	fails(t, d, "is not allowed", "cert", "issue", "--ca-dir", "ca", "--profile", "hybrid/composite/tls-client", "--pubkey", "kem.pub", "--var", "cn=alice")

	// RFC 9883 with a composite signature key vouching for it.
	ok(t, d, "csr", "gen", "--algorithm", "composite-mldsa65-ecdsa-p256", "--keyout", "alice.key", "--cn", "alice", "--out", "alice.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "hybrid/composite/tls-client", "--csr", "alice.csr", "-o", "alice.crt")
	ok(t, d, "csr", "gen", "--algorithm", "composite-mlkem1024-ecdh-p384", "--keyout", "alice-kem.key", "--sign-cert", "alice.crt", "--sign-key", "alice.key", "--out", "alice-kem.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "hybrid/composite/encryption", "--csr", "alice-kem.csr", "-o", "alice-kem.crt")
	if crt := ok(t, d, "cert", "show", "--ca-dir", "ca", serialOf(t, d, "ca")); !strings.Contains(crt, "composite-mlkem1024-ecdh-p384") {
		t.Errorf("certificate from the RFC 9883 request:\n%s", crt)
	}

	// key decap with Bouncy Castle's keys (PKCS#8 DER) and ciphertexts.
	for _, stem := range []string{"MLKEM768-X25519-SHA3-256-1.3.6.1.5.5.7.6.58", "MLKEM1024-ECDH-P384-SHA3-256-1.3.6.1.5.5.7.6.63"} {
		dir := filepath.Join(interopDir, "bc")
		want, err := os.ReadFile(filepath.Join(dir, stem+"_ss.bin"))
		if err != nil {
			t.Fatal(err)
		}
		got := ok(t, d, "key", "decap", "--key", filepath.Join(dir, stem+"_priv.der"), "--in", filepath.Join(dir, stem+"_ciphertext.bin"))
		if strings.TrimSpace(got) != hex.EncodeToString(want) {
			t.Errorf("%s: key decap printed %q, want %x", stem, got, want)
		}
	}
	// An ML-KEM key (OpenSSL's, DER) works too; a signature key does not.
	ml := filepath.Join(interopDir, "ossl35")
	kemKeys, _ := filepath.Glob(filepath.Join(ml, "ml-kem-768-*_seed_priv.der"))
	cts, _ := filepath.Glob(filepath.Join(ml, "ml-kem-768-*_ciphertext.bin"))
	sss, _ := filepath.Glob(filepath.Join(ml, "ml-kem-768-*_ss.bin"))
	if len(kemKeys) != 1 || len(cts) != 1 || len(sss) != 1 {
		t.Fatalf("ossl35 ML-KEM-768 files: %v %v %v", kemKeys, cts, sss)
	}
	want, _ := os.ReadFile(sss[0])
	if got := ok(t, d, "key", "decap", "--key", kemKeys[0], "--in", cts[0]); strings.TrimSpace(got) != hex.EncodeToString(want) {
		t.Errorf("ML-KEM key decap printed %q, want %x", got, want)
	}
	fails(t, d, "cannot decapsulate", "key", "decap", "--key", "alice.key", "--in", cts[0])
	fails(t, d, "ciphertext is", "key", "decap", "--key", "kem.key", "--in", cts[0])
}
