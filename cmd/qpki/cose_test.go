package main

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/hsm/hsmtest"
	"github.com/qpki/qpki/pkg/profile"
)

// writeProfile writes a built-in profile changed by the replacements
// (regexp → text) to dir/file.
func writeProfile(t *testing.T, dir, builtin, file string, repl ...string) string {
	t.Helper()
	raw, err := profile.Builtin(builtin)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(repl); i += 2 {
		raw = regexp.MustCompile(repl[i]).ReplaceAll(raw, []byte(repl[i+1]))
	}
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// mlDSAProfiles writes an ML-DSA-65 root CA profile and an ML-DSA-65
// signing profile. Linting is off: the linter has no post-quantum support.
func mlDSAProfiles(t *testing.T, d string) (root, signing string) {
	noLint := []string{`(?m)^  enabled: true$`, "  enabled: false"}
	root = writeProfile(t, d, "ec/root-ca", "ml-root.yaml", append([]string{`(?m)^algorithm: .*$`, "algorithm: ml-dsa-65", `(?m)^name: .*$`, "name: test/ml-root"}, noLint...)...)
	signing = writeProfile(t, d, "ec/signing", "ml-signing.yaml", append([]string{`(?m)^algorithm: .*$`, "algorithm: ml-dsa-65",
		`(?m)^allowedAlgorithms: .*$`, "allowedAlgorithms: [ml-dsa-65]", `(?m)^name: .*$`, "name: test/ml-signing"}, noLint...)...)
	return root, signing
}

func TestCOSESignVerifyInfo(t *testing.T) {
	d := t.TempDir()
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=EC Root", "--ca-dir", "ec")
	ok(t, d, "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "ec.key", "--cn", "EC Signer", "--out", "ec.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "ec", "--profile", "ec/signing", "--csr", "ec.csr", "--var", "cn=EC Signer", "-o", "ec.crt")

	// A CWT with claims.
	ok(t, d, "cose", "sign", "--type", "cwt", "--cert", "ec.crt", "--key", "ec.key", "--iss", "qpki", "--sub", "device-7",
		"--aud", "api", "--exp", "24h", "--claim", "role=reader", "--claim", "n:=42", "--kid", "k1", "-o", "t.cbor")
	out := ok(t, d, "cose", "verify", "t.cbor", "--ca", "ec/ca.crt", "--aud", "api", "--type", "cwt")
	for _, want := range []string{"t.cbor: OK (CWT, 1 signature(s))", "ES256: CN=EC Signer <- CN=EC Root", "sub: device-7"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	info := ok(t, d, "cose", "info", "t.cbor")
	for _, want := range []string{"CWT (COSE_Sign1 in tag 61)", `role         "reader"`, "n            42", "iat", "cti", `kid=6b31 ("k1")`} {
		if !strings.Contains(info, want) {
			t.Errorf("info lacks %q:\n%s", want, info)
		}
	}
	var desc struct {
		Type       string
		Claims     struct{ Sub string }
		Signatures []struct {
			Alg     string
			KID     string
			X5Chain []struct{ Subject, Key string }
		}
	}
	if err := json.Unmarshal([]byte(ok(t, d, "cose", "info", "--json", "t.cbor")), &desc); err != nil {
		t.Fatal(err)
	}
	if desc.Type != "CWT" || desc.Claims.Sub != "device-7" || len(desc.Signatures) != 1 || desc.Signatures[0].Alg != "ES256" ||
		desc.Signatures[0].KID != "6b31" || len(desc.Signatures[0].X5Chain) == 0 || desc.Signatures[0].X5Chain[0].Key != "ecdsa-p256" {
		t.Errorf("info --json: %+v", desc)
	}
	fails(t, d, "audience", "cose", "verify", "t.cbor", "--ca", "ec/ca.crt", "--aud", "other")
	fails(t, d, "expired", "cose", "verify", "t.cbor", "--ca", "ec/ca.crt", "--at", time.Now().Add(48*time.Hour).UTC().Format(time.RFC3339))
	ok(t, d, "cose", "sign", "--cert", "ec.crt", "--key", "ec.key", "--nbf", "2h", "--exp", "3h", "-o", "later.cbor")
	fails(t, d, "not yet valid", "cose", "verify", "later.cbor", "--ca", "ec/ca.crt")
	ok(t, d, "cose", "verify", "later.cbor", "--ca", "ec/ca.crt", "--at", time.Now().Add(150*time.Minute).UTC().Format(time.RFC3339))

	// An untrusted chain.
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=Other Root", "--ca-dir", "other")
	fails(t, d, "not trusted", "cose", "verify", "t.cbor", "--ca", "other/ca.crt")

	// A COSE_Sign1 over a file, attached and detached; a tampered payload.
	os.WriteFile(filepath.Join(d, "fw.bin"), []byte("firmware image v1"), 0o644)
	ok(t, d, "cose", "sign", "--type", "sign1", "--cert", "ec.crt", "--key", "ec.key", "--data", "fw.bin", "--content-type", "application/octet-stream", "-o", "fw.cose")
	ok(t, d, "cose", "verify", "fw.cose", "--ca", "ec/ca.crt", "--type", "sign1")
	ok(t, d, "cose", "sign", "--cert", "ec.crt", "--key", "ec.key", "--data", "fw.bin", "--detached", "-o", "fw.sig")
	ok(t, d, "cose", "verify", "fw.sig", "--ca", "ec/ca.crt", "--data", "fw.bin")
	fails(t, d, "detached", "cose", "verify", "fw.sig", "--ca", "ec/ca.crt")
	os.WriteFile(filepath.Join(d, "fw2.bin"), []byte("firmware image v2"), 0o644)
	fails(t, d, "signature does not verify", "cose", "verify", "fw.sig", "--ca", "ec/ca.crt", "--data", "fw2.bin")
	msg, _ := os.ReadFile(filepath.Join(d, "fw.cose"))
	i := strings.Index(string(msg), "firmware image v1")
	tampered := append([]byte(nil), msg...)
	tampered[i] ^= 1
	os.WriteFile(filepath.Join(d, "tampered.cose"), tampered, 0o644)
	fails(t, d, "signature does not verify", "cose", "verify", "tampered.cose", "--ca", "ec/ca.crt")

	// Bad input: one clear line, never a panic.
	os.WriteFile(filepath.Join(d, "garbage"), []byte("not cbor at all"), 0o644)
	os.WriteFile(filepath.Join(d, "truncated"), msg[:len(msg)/2], 0o644)
	for _, f := range []string{"garbage", "truncated"} {
		fails(t, d, "malformed", "cose", "verify", f, "--ca", "ec/ca.crt")
		fails(t, d, "malformed", "cose", "info", f)
	}
	fails(t, d, "give one signing key source", "cose", "sign", "--sub", "x", "-o", "x.cbor")
	fails(t, d, "give one signing key source", "cose", "sign", "--key", "ec.key", "--ca-dir", "ec", "--sub", "x", "-o", "x.cbor")
	fails(t, d, `no credential "alice"`, "cose", "sign", "--credential", "alice", "--cred-dir", "ca/credentials", "--sub", "x", "-o", "x.cbor")
	fails(t, d, "need --type cwt", "cose", "sign", "--type", "sign1", "--key", "ec.key", "--data", "fw.bin", "--sub", "x", "-o", "x.cbor")
	fails(t, d, "payload is its claims", "cose", "sign", "--type", "cwt", "--key", "ec.key", "--data", "fw.bin", "-o", "x.cbor")
	fails(t, d, "not in the future", "cose", "sign", "--key", "ec.key", "--exp", "-1h", "-o", "x.cbor")
	fails(t, d, "unknown message type", "cose", "sign", "--type", "mac0", "--key", "ec.key", "-o", "x.cbor")
	fails(t, d, "one certificate per key", "cose", "sign", "--cert", "ec.crt", "--cert", "ec.crt", "--key", "ec.key", "-o", "x.cbor")
	fails(t, d, "not for the signing key", "cose", "sign", "--cert", "ec/ca.crt", "--key", "ec.key", "-o", "x.cbor")
	fails(t, d, "P-384", "cose", "sign", "--cert", "ec.crt", "--key", "ec.key", "--alg", "ES384", "-o", "x.cbor")
	if _, err := os.Stat(filepath.Join(d, "x.cbor")); err == nil {
		t.Error("a failed sign wrote its output")
	}
}

// A hybrid COSE_Sign token: an ECDSA and an ML-DSA-65 signature, each
// with its own chain; verification needs both.
func TestCOSEHybrid(t *testing.T) {
	d := t.TempDir()
	mlRoot, mlSigning := mlDSAProfiles(t, d)
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=EC Root", "--ca-dir", "ec")
	ok(t, d, "csr", "gen", "--algorithm", "ecdsa-p256", "--keyout", "ec.key", "--cn", "EC Signer", "--out", "ec.csr")
	ok(t, d, "cert", "issue", "--ca-dir", "ec", "--profile", "ec/signing", "--csr", "ec.csr", "--var", "cn=EC Signer", "-o", "ec.crt")
	ok(t, d, "ca", "init", "--profile", mlRoot, "--var", "cn=ML Root", "--ca-dir", "ml")
	ok(t, d, "key", "gen", "--algorithm", "ml-dsa-65", "--out", "ml.key")
	ok(t, d, "key", "pub", "--key", "ml.key", "--out", "ml.pub")
	ok(t, d, "cert", "issue", "--ca-dir", "ml", "--profile", mlSigning, "--pubkey", "ml.pub", "--var", "cn=ML Signer", "-o", "ml.crt")

	ok(t, d, "cose", "sign", "--type", "cwt", "--cert", "ec.crt", "--key", "ec.key", "--cert", "ml.crt", "--key", "ml.key",
		"--sub", "hybrid", "--exp", "1h", "-o", "h.cbor")
	out := ok(t, d, "cose", "verify", "h.cbor", "--ca", "ec/ca.crt", "--ca", "ml/ca.crt", "--min-signatures", "2")
	for _, want := range []string{"OK (CWT, 2 signature(s))", "[1] ES256: CN=EC Signer <- CN=EC Root", "[2] ML-DSA-65: CN=ML Signer <- CN=ML Root"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	if info := ok(t, d, "cose", "info", "h.cbor"); !strings.Contains(info, "CWT (COSE_Sign in tag 61)") || !strings.Contains(info, "ML-DSA-65 (-49)") {
		t.Errorf("info:\n%s", info)
	}
	if info := ok(t, d, "cose", "info", "--json", "h.cbor"); !strings.Contains(info, `"structure": "COSE_Sign"`) || !strings.Contains(info, `"alg_id": -49`) {
		t.Errorf("info --json:\n%s", info)
	}
	// Every signature must hold: trusting only one CA is not enough.
	fails(t, d, "signer 2", "cose", "verify", "h.cbor", "--ca", "ec/ca.crt")
	// A post-quantum COSE_Sign1 alone.
	ok(t, d, "cose", "sign", "--cert", "ml.crt", "--key", "ml.key", "--sub", "pq", "-o", "pq.cbor")
	if out := ok(t, d, "cose", "verify", "pq.cbor", "--ca", "ml/ca.crt"); !strings.Contains(out, "ML-DSA-65: CN=ML Signer") {
		t.Errorf("pq verify:\n%s", out)
	}
	fails(t, d, "2 required", "cose", "verify", "pq.cbor", "--ca", "ml/ca.crt", "--min-signatures", "2")
}

// Tokens signed with the CA's own key go through its pipeline: in process
// when no server runs, else as a job on the server's queue.
func TestCOSEWithCAKey(t *testing.T) {
	d := t.TempDir()
	tokenCA := writeProfile(t, d, "ec/root-ca", "token-ca.yaml",
		`(?m)^algorithm: .*$`, "algorithm: ecdsa-p256", `(?m)^name: .*$`, "name: test/token-ca",
		`values: \[keyCertSign, cRLSign\]`, "values: [digitalSignature, keyCertSign, cRLSign]")
	ok(t, d, "ca", "init", "--profile", tokenCA, "--var", "cn=Token CA", "--ca-dir", "tca")

	ok(t, d, "cose", "sign", "--ca-dir", "tca", "--sub", "in-process", "--exp", "1h", "-o", "a.cbor")
	if out := ok(t, d, "cose", "verify", "a.cbor", "--ca", "tca/ca.crt"); !strings.Contains(out, "ES256: CN=Token CA") || !strings.Contains(out, "sub: in-process") {
		t.Errorf("verify:\n%s", out)
	}
	fails(t, d, "after the CA certificate", "cose", "sign", "--ca-dir", "tca", "--exp", "15000d", "-o", "x.cbor")
	fails(t, d, "leave out --cert", "cose", "sign", "--ca-dir", "tca", "--cert", "tca/ca.crt", "-o", "x.cbor")
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=Cert Root", "--ca-dir", "certonly")
	fails(t, d, "digitalSignature", "cose", "sign", "--ca-dir", "certonly", "--sub", "x", "-o", "x.cbor")

	// With a server holding the CA, the token is a job on its queue.
	serve := exec.Command(qpkiBin, "serve", "--ca-dir", "tca", "--data-dir", "data", "--listen", "127.0.0.1:0", "--workers", "1")
	serve.Dir = d
	logf, _ := os.Create(filepath.Join(d, "serve.log"))
	serve.Stdout, serve.Stderr = logf, logf
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	queued := func() uint64 {
		r := run(t, d, nil, "queue", "status", "--json", "--over", "1ms", "--ca-dir", "tca")
		var st struct {
			ResultsSeq uint64 `json:"results_seq"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
			return 0
		}
		return st.ResultsSeq + 1 // +1: up
	}
	deadline := time.Now().Add(30 * time.Second)
	for queued() == 0 {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(d, "serve.log"))
			t.Fatalf("serve did not come up:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// serve signs work of its own at start (its listener certificate, OCSP
	// responses for it): wait until the results stream stands still, so
	// that the token's result is the one that moves it.
	before := queued()
	for still := time.Now(); time.Since(still) < time.Second; {
		time.Sleep(100 * time.Millisecond)
		if n := queued(); n != before {
			before, still = n, time.Now()
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatal("serve's own jobs did not settle")
		}
	}
	ok(t, d, "cose", "sign", "--ca-dir", "tca", "--class", "batch", "--sub", "queued", "--claim", "n:=1", "-o", "b.cbor")
	if after := queued(); after <= before {
		t.Errorf("results on the queue: %d before, %d after; the token did not go through the server", before-1, after-1)
	}
	if out := ok(t, d, "cose", "verify", "b.cbor", "--ca", "tca/ca.crt"); !strings.Contains(out, "sub: queued") {
		t.Errorf("verify:\n%s", out)
	}
	fails(t, d, "after the CA certificate", "cose", "sign", "--ca-dir", "tca", "--exp", "15000d", "-o", "x.cbor")
}

// A key in an HSM (SoftHSM2) signs with its certificate, or with
// --algorithm and no certificate, and so does a CA whose key is in the
// HSM; the PIN comes from pin_env only.
func TestCOSEWithHSMKey(t *testing.T) {
	env := hsmtest.Get(t)
	d := t.TempDir()
	cfg := env.Config(t, "qpki-test")
	tok, err := hsm.OpenFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	label := uniqueLabel("cose-signer") // the token outlives one run of the test
	key, err := tok.GenerateKey(algo.ECDSAP256, label, nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := algo.MarshalPKIX(key.Public())
	tok.Close()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "hsm.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=HSM Root", "--ca-dir", "ca")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "ec/signing", "--pubkey", "hsm.pub", "--var", "cn=HSM Signer", "-o", "hsm.crt")

	ok(t, d, "cose", "sign", "--hsm-config", cfg, "--key-label", label, "--cert", "hsm.crt", "--sub", "hsm", "-o", "h.cbor")
	if out := ok(t, d, "cose", "verify", "h.cbor", "--ca", "ca/ca.crt"); !strings.Contains(out, "ES256: CN=HSM Signer <- CN=HSM Root") {
		t.Errorf("verify:\n%s", out)
	}
	ok(t, d, "cose", "sign", "--hsm-config", cfg, "--key-label", label, "--algorithm", "ecdsa-p256", "--data", "hsm.pub", "-o", "k.cose")
	if out := ok(t, d, "cose", "verify", "k.cose", "--pubkey", "hsm.pub"); !strings.Contains(out, "a trusted public key") {
		t.Errorf("verify with a public key:\n%s", out)
	}
	fails(t, d, "needs its certificate", "cose", "sign", "--hsm-config", cfg, "--key-label", label, "--sub", "x", "-o", "x.cbor")
	fails(t, d, "needs --hsm-config", "cose", "sign", "--key-label", label, "--algorithm", "ecdsa-p256", "-o", "x.cbor")
	// A CA whose key is in the HSM signs tokens through its pipeline.
	tokenCA := writeProfile(t, d, "ec/root-ca", "token-ca.yaml",
		`(?m)^algorithm: .*$`, "algorithm: ecdsa-p256", `(?m)^name: .*$`, "name: test/token-ca",
		`values: \[keyCertSign, cRLSign\]`, "values: [digitalSignature, keyCertSign, cRLSign]")
	ok(t, d, "ca", "init", "--profile", tokenCA, "--var", "cn=HSM Token CA", "--ca-dir", "htca", "--hsm-config", cfg, "--key-label", "cose-ca")
	ok(t, d, "cose", "sign", "--ca-dir", "htca", "--sub", "from-hsm-ca", "-o", "c.cbor")
	if out := ok(t, d, "cose", "verify", "c.cbor", "--ca", "htca/ca.crt"); !strings.Contains(out, "ES256: CN=HSM Token CA") {
		t.Errorf("verify:\n%s", out)
	}
	r := run(t, d, []string{hsmtest.PINEnv + "=wrong-pin-4f1e"}, "cose", "sign", "--hsm-config", cfg, "--key-label", label, "--cert", "hsm.crt", "-o", "x.cbor")
	if r.code == 0 || strings.Contains(r.stderr, "wrong-pin-4f1e") || strings.Contains(r.stderr, hsmtest.PIN) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("wrong PIN: exit %d, stderr %q", r.code, r.stderr)
	}
}
