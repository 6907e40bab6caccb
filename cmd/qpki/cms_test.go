package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCMSCLI: Bouncy Castle's CMS decrypts and verifies through the CLI;
// qpki signs with a CA-issued ML-DSA key and verifies with and without the
// anchor; encrypts to a composite ML-KEM and an ECDSA certificate and
// decrypts; broken input and wrong keys fail with one clear line.
func TestCMSCLI(t *testing.T) {
	d := t.TempDir()
	vec, err := filepath.Abs("../../../shared/interop/pqc-certificates-r5/bc-cms")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(vec, "expected_plaintext.txt"))
	if err != nil {
		t.Fatal(err)
	}
	key, cert := filepath.Join(vec, "ml-kem-768-2.16.840.1.101.3.4.4.2_priv.der"), filepath.Join(vec, "ml-kem-768-2.16.840.1.101.3.4.4.2_ee.der")
	envs, _ := filepath.Glob(filepath.Join(vec, "*_kemri_*.der"))
	if len(envs) != 4 {
		t.Fatalf("%d KEMRI vectors", len(envs))
	}
	for _, f := range envs {
		out := filepath.Join(d, filepath.Base(f)+".txt")
		ok(t, d, "cms", "decrypt", f, "--key", key, "--cert", cert, "-o", out)
		if got, _ := os.ReadFile(out); string(got) != string(want) {
			t.Errorf("%s: decrypted %q", filepath.Base(f), got)
		}
		if got := ok(t, d, "cms", "decrypt", f, "--key", key); got != string(want) {
			t.Errorf("%s without --cert: %q", filepath.Base(f), got)
		}
	}
	if info := ok(t, d, "cms", "info", envs[0]); !strings.Contains(info, "kemri (ml-kem-768)") {
		t.Errorf("cms info:\n%s", info)
	}
	signed, _ := filepath.Glob(filepath.Join(vec, "*_signed_attrs.der"))
	for _, f := range signed {
		out := ok(t, d, "cms", "verify", f)
		if !strings.Contains(out, ": OK") || !strings.Contains(out, "no chain was checked") {
			t.Errorf("cms verify %s:\n%s", filepath.Base(f), out)
		}
	}

	// qpki's own: an ML-DSA signer certified by an ECDSA root.
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=CMS Root", "--ca-dir", "ca")
	ok(t, d, "csr", "gen", "--algorithm", "ml-dsa-65", "--keyout", "signer.key", "--cn", "signer", "--out", "signer.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "ml/signing", "--csr", "signer.csr", "--var", "cn=signer", "-o", "signer.crt")
	os.WriteFile(filepath.Join(d, "doc.txt"), []byte("document"), 0o600)
	ok(t, d, "cms", "sign", "doc.txt", "--cert", "signer.crt", "--key", "signer.key", "-o", "doc.p7s")
	out := ok(t, d, "cms", "verify", "doc.p7s", "--ca", "ca/ca.crt")
	if !strings.Contains(out, "ml-dsa-65 signature OK") || !strings.Contains(out, "1: CN=CMS Root") || strings.Contains(out, "no chain") {
		t.Errorf("cms verify --ca:\n%s", out)
	}
	ok(t, d, "cms", "sign", "doc.txt", "--cert", "signer.crt", "--key", "signer.key", "--detached", "--pem", "-o", "doc.det.pem")
	ok(t, d, "cms", "verify", "doc.det.pem", "--data", "doc.txt", "--ca", "ca/ca.crt")
	os.WriteFile(filepath.Join(d, "other.txt"), []byte("documenT"), 0o600)
	fails(t, d, "messageDigest", "cms", "verify", "doc.det.pem", "--data", "other.txt", "--ca", "ca/ca.crt")
	fails(t, d, "detached", "cms", "verify", "doc.det.pem")
	// Another anchor: the chain fails.
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=Other Root", "--ca-dir", "other")
	fails(t, d, "no issuer found", "cms", "verify", "doc.p7s", "--ca", "other/ca.crt")
	// Truncated.
	b, _ := os.ReadFile(filepath.Join(d, "doc.p7s"))
	os.WriteFile(filepath.Join(d, "cut.p7s"), b[:len(b)/2], 0o600)
	fails(t, d, "cms:", "cms", "verify", "cut.p7s")

	// Encryption to a composite ML-KEM certificate and an ECDSA one.
	ok(t, d, "key", "gen", "--algorithm", "composite-mlkem768-x25519", "--out", "kem.key")
	ok(t, d, "key", "pub", "--key", "kem.key", "--out", "kem.pub")
	ok(t, d, "ca", "init", "--profile", "hybrid/composite/root-ca", "--var", "cn=Composite Root", "--ca-dir", "comp")
	ok(t, d, "cert", "issue", "--ca-dir", "comp", "--profile", "hybrid/composite/encryption", "--pubkey", "kem.pub", "--var", "cn=alice", "-o", "kem.crt")
	ok(t, d, "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "ec.key", "--cn", "bob", "--out", "ec.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "ec/tls-client", "--csr", "ec.csr", "--var", "cn=bob", "-o", "ec.crt")
	for _, auth := range []bool{false, true} {
		args := []string{"cms", "encrypt", "doc.txt", "--recipient", "kem.crt", "--recipient", "ec.crt", "-o", "doc.p7m"}
		if auth {
			args = append(args, "--auth")
		}
		os.Remove(filepath.Join(d, "doc.p7m"))
		ok(t, d, args...)
		for _, k := range [][]string{{"--key", "kem.key", "--cert", "kem.crt"}, {"--key", "kem.key"}, {"--key", "ec.key", "--cert", "ec.crt"}} {
			if got := ok(t, d, append([]string{"cms", "decrypt", "doc.p7m"}, k...)...); got != "document" {
				t.Errorf("decrypt %v: %q", k, got)
			}
		}
		fails(t, d, "no recipient", "cms", "decrypt", "doc.p7m", "--key", "signer.key")
		fails(t, d, "not the certificate's", "cms", "decrypt", "doc.p7m", "--key", "kem.key", "--cert", "ec.crt")
	}
	if info := ok(t, d, "cms", "info", "doc.p7m"); !strings.Contains(info, "authEnvelopedData") || !strings.Contains(info, "kemri (composite-mlkem768-x25519)") || !strings.Contains(info, "kari") {
		t.Errorf("cms info:\n%s", info)
	}
}
