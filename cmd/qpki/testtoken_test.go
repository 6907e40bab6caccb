package main

import (
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/testtoken"
)

// Post-quantum keys in the qpki test token (a PKCS#11 3.2 token for
// development and CI), driven through the qpki binary. The binary loads
// the token's client library, which finds the daemon through
// QPKI_TESTTOKEN_SOCKET.

// pqToken returns the --hsm-config of the shared test token and the
// environment the qpki binary needs to reach it.
func pqToken(t *testing.T) (cfg string, env []string) {
	t.Helper()
	d := testtoken.Shared(t)
	return d.Config(t, testtoken.SharedToken),
		[]string{testtoken.SocketEnv + "=" + d.Socket, testtoken.PINEnv + "=" + testtoken.PIN}
}

// okEnv runs qpki with env and fails the test unless it succeeds and
// keeps the PIN to itself.
func okEnv(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	r := run(t, dir, env, args...)
	if r.code != 0 {
		t.Fatalf("qpki %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, testtoken.PIN) {
		t.Fatalf("qpki %s printed the PIN", strings.Join(args, " "))
	}
	return r.stdout
}

// key gen makes ML-DSA, SLH-DSA and ML-KEM keys on the token; key list
// shows them with their algorithms.
func TestTestTokenKeyGenAndList(t *testing.T) {
	cfg, env := pqToken(t)
	d := t.TempDir()
	want := map[string]string{} // label → algorithm
	for _, alg := range []string{"ml-dsa-65", "slh-dsa-sha2-128f", "ml-kem-768"} {
		label := uniqueLabel("cli-" + alg)
		out := okEnv(t, d, env, "key", "gen", "--algorithm", alg, "--hsm-config", cfg, "--key-label", label)
		if !strings.Contains(out, label) {
			t.Errorf("key gen %s: %q does not name the key", alg, out)
		}
		want[label] = alg
	}
	if out := okEnv(t, d, env, "key", "list", "--hsm-config", cfg); !strings.Contains(out, "ml-kem-768") || !strings.Contains(out, "slh-dsa-sha2-128f") {
		t.Errorf("key list: %s", out)
	}
	var keys []hsm.KeyInfo
	if err := json.Unmarshal([]byte(okEnv(t, d, env, "key", "list", "--hsm-config", cfg, "--json")), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if alg, ok := want[k.Label]; ok {
			if k.Algorithm != alg || k.KeyID == "" {
				t.Errorf("key %s: algorithm %q id %q, want %s", k.Label, k.Algorithm, k.KeyID, alg)
			}
			delete(want, k.Label)
		}
	}
	if len(want) != 0 {
		t.Errorf("keys missing from key list --json: %v", want)
	}
}

// An ML-DSA CA on the token enrolls a credential whose ML-DSA key is on
// the token, signs a COSE_Sign1 with it, and signs a CWT with the token
// key named by label; cose verify checks both against the CA.
func TestTestTokenMLDSACredentialAndCWT(t *testing.T) {
	cfg, env := pqToken(t)
	d := t.TempDir()
	caLabel, credLabel := uniqueLabel("cli-ml-ca"), uniqueLabel("cli-ml-cred")

	okEnv(t, d, env, "ca", "init", "--profile", "ml/root-ca", "--var", "cn=Token ML Root", "--ca-dir", "./ca",
		"--hsm-config", cfg, "--key-label", caLabel)
	out := okEnv(t, d, env, "credential", "enroll", "--ca-dir", "./ca", "--profile", "ml/signing", "--var", "cn=token-signer",
		"--hsm-config", cfg, "--key-label", credLabel)
	if !strings.Contains(out, "pkcs11 label="+credLabel) {
		t.Errorf("credential enroll: %s", out)
	}
	var creds []struct {
		ID           string `json:"id"`
		Certificates []struct {
			Storage []map[string]string `json:"storage"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(okEnv(t, d, env, "credential", "list", "--ca-dir", "./ca", "--json")), &creds); err != nil || len(creds) != 1 {
		t.Fatalf("credential list --json: %v %v", creds, err)
	}
	id := creds[0].ID
	if st := creds[0].Certificates[0].Storage; len(st) != 1 || st[0]["type"] != "pkcs11" || st[0]["label"] != credLabel {
		t.Errorf("credential storage: %v", st)
	}
	var keys []hsm.KeyInfo
	if err := json.Unmarshal([]byte(okEnv(t, d, env, "key", "list", "--hsm-config", cfg, "--json")), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Label == credLabel && k.Algorithm != "ml-dsa-65" {
			t.Errorf("credential key on the token is %s", k.Algorithm)
		}
	}
	leaf := filepath.Join(d, "leaf.crt")
	if err := os.WriteFile(leaf, []byte(okEnv(t, d, env, "credential", "show", id, "--ca-dir", "./ca", "--pem")), 0o644); err != nil {
		t.Fatal(err)
	}
	if info := okEnv(t, d, env, "cert", "verify", "leaf.crt", "--ca", "ca/ca.crt"); !strings.Contains(info, "OK") {
		t.Errorf("cert verify: %s", info)
	}

	// A signature with the credential's token key.
	if err := os.WriteFile(filepath.Join(d, "fw.bin"), []byte("firmware image 1.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	okEnv(t, d, env, "cose", "sign", "--type", "sign1", "--credential", id, "--cred-dir", "ca/credentials",
		"--data", "fw.bin", "-o", "fw.cose")
	if out := okEnv(t, d, env, "cose", "verify", "fw.cose", "--ca", "ca/ca.crt", "--type", "sign1"); !strings.Contains(out, "token-signer") {
		t.Errorf("cose verify of the credential's signature: %s", out)
	}

	// A CWT signed with the ML-DSA token key named by its label.
	okEnv(t, d, env, "cose", "sign", "--type", "cwt", "--hsm-config", cfg, "--key-label", credLabel, "--cert", "leaf.crt",
		"--iss", "qpki", "--sub", "device-9", "--aud", "api", "--exp", "1h", "-o", "t.cbor")
	out = okEnv(t, d, env, "cose", "verify", "t.cbor", "--ca", "ca/ca.crt", "--aud", "api", "--type", "cwt")
	if !strings.Contains(out, "device-9") || !strings.Contains(out, "ML-DSA-65") {
		t.Errorf("cose verify of the CWT: %s", out)
	}

	// A tampered token fails: the signature really covers the claims.
	data, err := os.ReadFile(filepath.Join(d, "t.cbor"))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(data), "device-9")
	if i < 0 {
		t.Fatal("the CWT does not carry its subject in the clear")
	}
	data[i+len("device-")] = '8'
	if err := os.WriteFile(filepath.Join(d, "bad.cbor"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, d, env, "cose", "verify", "bad.cbor", "--ca", "ca/ca.crt"); r.code == 0 {
		t.Error("cose verify accepted a tampered CWT")
	}
}

// `qpki ca rotate` of a Catalyst CA whose two keys are on the token, to a
// profile with a stronger post-quantum algorithm: ECDSA P-384 + ML-DSA-65
// in v1, both new keys (ECDSA P-384 + ML-DSA-87) made on the token for v2,
// v1 archived.
func TestTestTokenHybridCARotate(t *testing.T) {
	cfg, env := pqToken(t)
	d := t.TempDir()
	label := uniqueLabel("cli-cat")
	prof, err := profile.Builtin("hybrid/catalyst/root-ca")
	if err != nil {
		t.Fatal(err)
	}
	v1prof := strings.Replace(strings.Replace(string(prof), "name: hybrid/catalyst/root-ca", "name: test/catalyst-root-65", 1),
		"algorithms: [ecdsa-p384, ml-dsa-87]", "algorithms: [ecdsa-p384, ml-dsa-65]", 1)
	if !strings.Contains(v1prof, "ml-dsa-65") {
		t.Fatal("hybrid/catalyst/root-ca changed: update the test's v1 profile")
	}
	if err := os.WriteFile(filepath.Join(d, "cat65.yaml"), []byte(v1prof), 0o644); err != nil {
		t.Fatal(err)
	}
	okEnv(t, d, env, "ca", "init", "--profile", "cat65.yaml", "--var", "cn=Token Catalyst Root", "--ca-dir", "./ca",
		"--hsm-config", cfg, "--key-label", label)
	okEnv(t, d, env, "ca", "rotate", "--ca-dir", "./ca", "--profile", "hybrid/catalyst/root-ca", "--cross-sign")

	var versions map[string]struct {
		Status string `json:"status"`
		Keys   []struct {
			Algorithm string            `json:"algorithm"`
			Storage   map[string]string `json:"storage"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(okEnv(t, d, env, "ca", "versions", "--ca-dir", "./ca", "--json")), &versions); err != nil {
		t.Fatal(err)
	}
	v1, v2 := versions["v1"], versions["v2"]
	if v1.Status != "archived" || v2.Status != "active" {
		t.Errorf("versions: v1 %s, v2 %s", v1.Status, v2.Status)
	}
	ids := map[string]bool{}
	algs := func(v string) string {
		var a []string
		for _, k := range versions[v].Keys {
			if k.Storage["type"] != "pkcs11" || k.Storage["label"] != label || k.Storage["key_id"] == "" {
				t.Errorf("%s key %s storage %v", v, k.Algorithm, k.Storage)
			}
			ids[k.Storage["key_id"]] = true
			a = append(a, k.Algorithm)
		}
		sort.Strings(a)
		return strings.Join(a, ",")
	}
	if got := algs("v1"); got != "ecdsa-p384,ml-dsa-65" {
		t.Errorf("v1 keys %s", got)
	}
	if got := algs("v2"); got != "ecdsa-p384,ml-dsa-87" {
		t.Errorf("v2 keys %s", got)
	}
	if len(ids) != 4 {
		t.Errorf("four keys, %d key ids", len(ids))
	}
	var keys []hsm.KeyInfo
	if err := json.Unmarshal([]byte(okEnv(t, d, env, "key", "list", "--hsm-config", cfg, "--json")), &keys); err != nil {
		t.Fatal(err)
	}
	var onToken []string
	for _, k := range keys {
		if k.Label == label {
			onToken = append(onToken, k.Algorithm)
		}
	}
	sort.Strings(onToken)
	if strings.Join(onToken, ",") != "ecdsa-p384,ecdsa-p384,ml-dsa-65,ml-dsa-87" {
		t.Errorf("keys on the token under %s: %v", label, onToken)
	}
}

// An ML-KEM key in the test token (PKCS#11 3.2, C_DecapsulateKey) opens a
// CMS KEMRecipientInfo and decapsulates with `key decap`.
func TestTestTokenKEMDecrypt(t *testing.T) {
	cfg, env := pqToken(t)
	d := t.TempDir()
	label := uniqueLabel("cli-kem")
	okEnv(t, d, env, "key", "gen", "--algorithm", "ml-kem-768", "--hsm-config", cfg, "--key-label", label)
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	tok, err := hsm.OpenFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tok.FindKey(label, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*algo.MLKEMPublicKey)
	tok.Close()
	der, _ := algo.MarshalPKIX(pub)
	os.WriteFile(filepath.Join(d, "kem.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	ct, ss, err := pub.Encapsulate(nil)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "ct.bin"), ct, 0o600)
	if got := okEnv(t, d, env, "key", "decap", "--hsm-config", cfg, "--key-label", label, "--in", "ct.bin"); strings.TrimSpace(got) != hex.EncodeToString(ss) {
		t.Errorf("key decap in the token: %q, want %x", got, ss)
	}
	ok(t, d, "ca", "init", "--profile", "ml/root-ca", "--var", "cn=KEM Token Root", "--ca-dir", "ca")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "ml/encryption", "--pubkey", "kem.pub", "--var", "cn=token-kem", "-o", "kem.crt")
	os.WriteFile(filepath.Join(d, "doc.txt"), []byte("for the token"), 0o600)
	ok(t, d, "cms", "encrypt", "doc.txt", "--recipient", "kem.crt", "--auth", "-o", "doc.p7m")
	if got := okEnv(t, d, env, "cms", "decrypt", "doc.p7m", "--hsm-config", cfg, "--key-label", label, "--cert", "kem.crt"); got != "for the token" {
		t.Errorf("cms decrypt in the token: %q", got)
	}
	fails(t, d, "not both", "cms", "decrypt", "doc.p7m", "--key", "x.key", "--hsm-config", cfg, "--key-label", label)
}
