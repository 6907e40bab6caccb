package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/hsm/hsmtest"
)

func uniqueLabel(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// destroyLabels removes the test's keys from the token at the end, for an
// operator's HSM (make test-hsm).
func destroyLabels(t *testing.T, cfg string, labels ...string) {
	t.Cleanup(func() {
		tok, err := hsm.OpenFile(cfg)
		if err != nil {
			return
		}
		defer tok.Close()
		keys, _ := tok.ListKeys()
		for _, k := range keys {
			for _, l := range labels {
				if k.Label == l {
					id, _ := hsm.ParseKeyID(k.KeyID)
					if key, err := tok.FindKey(l, id); err == nil {
						tok.DestroyKey(key)
					}
				}
			}
		}
	})
}

// failsWith checks that a command fails with one clear error line that
// mentions every part of want and never the PIN.
func failsWith(t *testing.T, dir string, env []string, pin string, want []string, args ...string) result {
	t.Helper()
	r := run(t, dir, env, args...)
	if r.code == 0 {
		t.Fatalf("qpki %s succeeded, want failure", strings.Join(args, " "))
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	if len(lines) != 1 || !strings.HasPrefix(last, "qpki: error: ") {
		t.Errorf("qpki %s: stderr %q, want one error line", strings.Join(args, " "), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("qpki %s: error %q does not mention %q", strings.Join(args, " "), last, w)
		}
	}
	if pin != "" && strings.Contains(r.stdout+r.stderr, pin) {
		t.Errorf("qpki %s printed the PIN", strings.Join(args, " "))
	}
	return r
}

// The HSM commands, keys in the HSM, an HSM root and issuing CA, issuance,
// a CRL, rotation and a credential, all through the CLI.
func TestHSMCLITour(t *testing.T) {
	tgt := hsmtest.Use(t, "cli-hsm")
	cfg := tgt.Config
	d := t.TempDir()
	keyLabel, rootLabel, subLabel, credLabel := uniqueLabel("gen"), uniqueLabel("root"), uniqueLabel("sub"), uniqueLabel("server-key")
	destroyLabels(t, cfg, keyLabel, rootLabel, subLabel, credLabel)

	// hsm list / info / mechanisms / test.
	conf, err := hsm.LoadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := ok(t, d, "hsm", "list", "--lib", conf.PKCS11.Lib)
	if !strings.Contains(out, "slot") || !strings.Contains(out, "serial") {
		t.Errorf("hsm list: %s", out)
	}
	var slots hsm.SlotsReport
	if err := json.Unmarshal([]byte(ok(t, d, "hsm", "list", "--hsm-config", cfg, "--json")), &slots); err != nil || len(slots.Slots) == 0 {
		t.Errorf("hsm list --json: %+v %v", slots, err)
	}
	var info hsm.InfoReport
	if err := json.Unmarshal([]byte(ok(t, d, "hsm", "info", "--hsm-config", cfg, "--json")), &info); err != nil || info.Token.Label == "" {
		t.Errorf("hsm info --json: %+v %v", info, err)
	}
	if out := ok(t, d, "hsm", "mechanisms", "--hsm-config", cfg, "--filter", "ecdsa"); !strings.Contains(out, "CKM_ECDSA") || strings.Contains(out, "CKM_RSA_PKCS_KEY_PAIR_GEN") {
		t.Errorf("hsm mechanisms --filter ecdsa: %s", out)
	}
	ok(t, d, "hsm", "mechanisms", "--hsm-config", cfg, "--filter", "ML")
	out = ok(t, d, "hsm", "test", "--hsm-config", cfg)
	for _, step := range []string{"[1/7] load module", "[2/7] find token", "[3/7] open session", "[4/7] log in", "[5/7] generate a session key", "[6/7] sign and verify", "[7/7] log out"} {
		if !strings.Contains(out, step) {
			t.Errorf("hsm test does not print %q:\n%s", step, out)
		}
	}
	if strings.Contains(out, "FAILED") || strings.Contains(out, tgt.PIN) {
		t.Errorf("hsm test:\n%s", out)
	}

	// key gen / key list; a label and id that exist are refused.
	ok(t, d, "key", "gen", "--algorithm", "ecdsa-p384", "--hsm-config", cfg, "--key-label", keyLabel, "--key-id", "c0ffee")
	failsWith(t, d, nil, tgt.PIN, []string{"c0ffee"}, "key", "gen", "--algorithm", "ecdsa-p384", "--hsm-config", cfg, "--key-label", keyLabel, "--key-id", "c0ffee")
	if out := ok(t, d, "key", "list", "--hsm-config", cfg); !strings.Contains(out, keyLabel) || !strings.Contains(out, "c0ffee") || !strings.Contains(out, "ecdsa-p384") {
		t.Errorf("key list --hsm-config: %s", out)
	}
	var keys []hsm.KeyInfo
	if err := json.Unmarshal([]byte(ok(t, d, "key", "list", "--hsm-config", cfg, "--json")), &keys); err != nil {
		t.Fatal(err)
	}

	// An HSM root with a key made by key gen, an issuing CA generated in
	// the HSM, a leaf and a CRL.
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=CLI HSM Root", "--ca-dir", "./root",
		"--hsm-config", cfg, "--key-label", keyLabel, "--key-id", "c0ffee", "--use-existing-key")
	ok(t, d, "ca", "init", "--profile", "ec/issuing-ca", "--parent", "./root", "--var", "cn=CLI HSM Issuing", "--ca-dir", "./sub",
		"--hsm-config", cfg, "--key-label", subLabel)
	var ci struct {
		Version struct {
			Keys []struct {
				Storage map[string]string `json:"storage"`
			} `json:"keys"`
		} `json:"version"`
	}
	if err := json.Unmarshal([]byte(ok(t, d, "ca", "info", "--ca-dir", "./sub", "--json")), &ci); err != nil || len(ci.Version.Keys) != 1 {
		t.Fatalf("ca info --json: %v", err)
	}
	if st := ci.Version.Keys[0].Storage; st["type"] != "pkcs11" || st["config"] != "./hsm.yaml" || st["label"] != subLabel || st["key_id"] == "" {
		t.Errorf("sub storage: %v", st)
	}
	ok(t, d, "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "leaf.key", "--cn", "leaf.example.com", "--dns", "leaf.example.com", "--out", "leaf.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "./sub", "--profile", "ec/tls-server", "--csr", "leaf.csr", "--out", "leaf.crt")
	if out := ok(t, d, "cert", "verify", "leaf.crt", "--ca", "root/ca.crt", "--untrusted", "sub/ca.crt"); !strings.Contains(out, "OK") {
		t.Errorf("cert verify: %s", out)
	}
	ok(t, d, "crl", "gen", "--ca-dir", "./sub", "--out", "sub.crl")

	// Rotation keeps the root's key in the HSM.
	v1Root, _ := os.ReadFile(filepath.Join(d, "root", "ca.crt"))
	os.WriteFile(filepath.Join(d, "root-v1.crt"), v1Root, 0o644)
	ok(t, d, "ca", "rotate", "--ca-dir", "./root", "--cross-sign")
	var versions map[string]struct {
		Keys []struct {
			Storage map[string]string `json:"storage"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(ok(t, d, "ca", "versions", "--ca-dir", "./root", "--json")), &versions); err != nil {
		t.Fatal(err)
	}
	v1, v2 := versions["v1"].Keys[0].Storage, versions["v2"].Keys[0].Storage
	if v2["type"] != "pkcs11" || v2["label"] != keyLabel || v2["key_id"] == v1["key_id"] || v2["key_id"] == "" {
		t.Errorf("rotated root: v1 %v, v2 %v", v1, v2)
	}

	// A credential with its key in the HSM: enroll, list, show, rotate, revoke.
	out = ok(t, d, "credential", "enroll", "--ca-dir", "./sub", "--profile", "ec/tls-server", "--var", "cn=server.example.com",
		"--var", "dns_names=server.example.com", "--hsm-config", cfg, "--key-label", credLabel)
	if !strings.Contains(out, "pkcs11 label="+credLabel) {
		t.Errorf("credential enroll: %s", out)
	}
	var creds []struct {
		ID           string `json:"id"`
		Status       string `json:"status"`
		Certificates []struct {
			Serial  string              `json:"serial"`
			Storage []map[string]string `json:"storage"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(ok(t, d, "credential", "list", "--ca-dir", "./sub", "--json")), &creds); err != nil || len(creds) != 1 {
		t.Fatalf("credential list --json: %v %v", creds, err)
	}
	id := creds[0].ID
	if st := creds[0].Certificates[0].Storage; len(st) != 1 || st[0]["type"] != "pkcs11" || st[0]["label"] != credLabel {
		t.Errorf("credential storage: %v", st)
	}
	if _, err := os.Stat(filepath.Join(d, "sub", "credentials", id, "credential.meta.json")); err != nil {
		t.Error(err)
	}
	if out := ok(t, d, "credential", "show", id, "--ca-dir", "./sub"); !strings.Contains(out, "server.example.com") || !strings.Contains(out, "active") {
		t.Errorf("credential show: %s", out)
	}
	os.WriteFile(filepath.Join(d, "cred.pem"), []byte(ok(t, d, "credential", "show", id, "--ca-dir", "./sub", "--pem")), 0o644)
	ok(t, d, "cert", "verify", "cred.pem", "--ca", "root-v1.crt", "--untrusted", "sub/ca.crt")
	ok(t, d, "credential", "rotate", id, "--ca-dir", "./sub")
	if out := ok(t, d, "credential", "show", id, "--ca-dir", "./sub"); !strings.Contains(out, "archived") {
		t.Errorf("credential show after rotate: %s", out)
	}
	ok(t, d, "credential", "revoke", id, "--ca-dir", "./sub", "--reason", "keyCompromise")
	if out := ok(t, d, "cert", "list", "--ca-dir", "./sub", "--status", "revoked", "--json"); strings.Count(out, `"serial"`) != 2 {
		t.Errorf("revoked certificates: %s", out)
	}
	failsWith(t, d, nil, tgt.PIN, []string{"already revoked"}, "credential", "revoke", id, "--ca-dir", "./sub")
}

// Wrong PIN, missing token, wrong module path, unknown label, ambiguous
// label, a PIN in the config: each a one-line error that says what is
// wrong, and never shows the PIN; `hsm test` stops at the step that fails.
func TestHSMCLIErrors(t *testing.T) {
	tgt := hsmtest.Use(t, "cli-hsm")
	cfg := tgt.Config
	d := t.TempDir()
	conf, err := hsm.LoadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dup, ec := uniqueLabel("dup"), uniqueLabel("ec")
	destroyLabels(t, cfg, dup, ec)
	write := func(name, yaml string) string {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noModule := write("nomodule.yaml", "type: pkcs11\npkcs11:\n  lib: /nonexistent/libpkcs11.so\n  token: x\n  pin_env: "+tgt.PINEnv+"\n")
	noToken := write("notoken.yaml", "type: pkcs11\npkcs11:\n  lib: "+conf.PKCS11.Lib+"\n  token: no-such-token\n  pin_env: "+tgt.PINEnv+"\n")
	withPIN := write("pin.yaml", "type: pkcs11\npkcs11:\n  lib: "+conf.PKCS11.Lib+"\n  token: x\n  pin: \"1234\"\n")

	failsWith(t, d, nil, tgt.PIN, []string{"/nonexistent/libpkcs11.so", "does not exist"}, "hsm", "info", "--hsm-config", noModule)
	failsWith(t, d, nil, tgt.PIN, []string{"no token", "no-such-token"}, "hsm", "info", "--hsm-config", noToken)
	failsWith(t, d, nil, tgt.PIN, []string{"PIN in the configuration file is refused"}, "hsm", "info", "--hsm-config", withPIN)
	failsWith(t, d, nil, tgt.PIN, []string{"does not exist"}, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=x", "--ca-dir", "./x",
		"--hsm-config", noModule, "--key-label", "k")

	// hsm test prints each step and stops at the one that fails.
	for _, tc := range []struct {
		cfg, step string
	}{{noModule, "step 1 (load module"}, {noToken, "step 2 (find token"}} {
		r := failsWith(t, d, nil, tgt.PIN, []string{tc.step}, "hsm", "test", "--hsm-config", tc.cfg)
		if !strings.Contains(r.stdout, "FAILED") || strings.Contains(r.stdout, "[3/7]") {
			t.Errorf("hsm test output:\n%s", r.stdout)
		}
	}

	// Unknown and ambiguous labels.
	ok(t, d, "key", "gen", "--algorithm", "ecdsa-p384", "--hsm-config", cfg, "--key-label", dup, "--key-id", "d1")
	ok(t, d, "key", "gen", "--algorithm", "ecdsa-p384", "--hsm-config", cfg, "--key-label", dup, "--key-id", "d2")
	failsWith(t, d, nil, tgt.PIN, []string{"2 private keys", dup, "d1", "d2"}, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=x",
		"--ca-dir", "./amb", "--hsm-config", cfg, "--key-label", dup, "--use-existing-key")
	missing := uniqueLabel("missing")
	failsWith(t, d, nil, tgt.PIN, []string{"no private key", missing}, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=x",
		"--ca-dir", "./unk", "--hsm-config", cfg, "--key-label", missing, "--use-existing-key")
	for _, dir := range []string{"amb", "unk", "x"} {
		if _, err := os.Stat(filepath.Join(d, dir)); err == nil {
			t.Errorf("a failed init left %s", dir)
		}
	}
	// A key whose type does not fit the profile's algorithm.
	ok(t, d, "key", "gen", "--algorithm", "ecdsa-p256", "--hsm-config", cfg, "--key-label", ec)
	failsWith(t, d, nil, tgt.PIN, []string{"ecdsa-p384"}, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=x",
		"--ca-dir", "./type", "--hsm-config", cfg, "--key-label", ec, "--use-existing-key")
}

// A wrong PIN fails `hsm test` at the login step and every command that
// signs, in one line, without the PIN. Only on a throw-away token: a real
// HSM may lock the PIN after a few failures.
func TestHSMCLIWrongPIN(t *testing.T) {
	hsmtest.SoftHSMOnly(t)
	env := hsmtest.Get(t)
	cfg := env.Config(t, "cli-pin")
	d := t.TempDir()
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=PIN Root", "--ca-dir", "./ca", "--hsm-config", cfg, "--key-label", "pin-root")
	ok(t, d, "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "l.key", "--cn", "l.example.com", "--out", "l.csr")

	wrong := []string{hsmtest.PINEnv + "=not-the-pin-4711"}
	r := failsWith(t, d, wrong, hsmtest.PIN, []string{"step 4 (log in)", "wrong PIN", "$" + hsmtest.PINEnv}, "hsm", "test", "--hsm-config", cfg)
	if !strings.Contains(r.stdout, "[3/7] open session ... ok") || strings.Contains(r.stdout, "[5/7]") || strings.Contains(r.stdout+r.stderr, "not-the-pin-4711") {
		t.Errorf("hsm test output:\n%s%s", r.stdout, r.stderr)
	}
	r = failsWith(t, d, wrong, hsmtest.PIN, []string{"wrong PIN"}, "cert", "issue", "--ca-dir", "./ca", "--profile", "ec/tls-server", "--csr", "l.csr", "--out", "l.crt")
	if strings.Contains(r.stderr, "not-the-pin-4711") {
		t.Error("the error shows the wrong PIN")
	}
	failsWith(t, d, []string{hsmtest.PINEnv + "="}, hsmtest.PIN, []string{hsmtest.PINEnv, "empty"}, "crl", "gen", "--ca-dir", "./ca")
	// The right PIN still works: nothing got locked.
	ok(t, d, "cert", "issue", "--ca-dir", "./ca", "--profile", "ec/tls-server", "--csr", "l.csr", "--out", "l.crt")
}
