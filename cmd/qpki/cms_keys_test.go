package main

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/hsm/hsmtest"
)

// cms sign with a key in SoftHSM2 (the algorithm from its certificate)
// and with a credential's key; both verify to the CA.
func TestCMSSignWithHSMKeyAndCredential(t *testing.T) {
	env := hsmtest.Get(t)
	d := t.TempDir()
	cfg := env.Config(t, "qpki-test")
	tok, err := hsm.OpenFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	label := uniqueLabel("cms-signer")
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
	os.WriteFile(filepath.Join(d, "doc.txt"), []byte("signed in the HSM"), 0o600)
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=CMS HSM Root", "--ca-dir", "ca")
	ok(t, d, "cert", "issue", "--ca-dir", "ca", "--profile", "ec/signing", "--pubkey", "hsm.pub", "--var", "cn=HSM Signer", "-o", "hsm.crt")
	ok(t, d, "cms", "sign", "doc.txt", "--hsm-config", cfg, "--key-label", label, "--cert", "hsm.crt", "-o", "h.p7s")
	if out := ok(t, d, "cms", "verify", "h.p7s", "--ca", "ca/ca.crt"); !strings.Contains(out, "signer CN=HSM Signer: ecdsa-with-SHA256 signature OK") {
		t.Errorf("verify:\n%s", out)
	}
	fails(t, d, "needs --hsm-config", "cms", "sign", "doc.txt", "--key-label", label, "--cert", "hsm.crt")

	ok(t, d, "credential", "enroll", "--ca-dir", "ca", "--profile", "ec/signing", "--var", "cn=cms-cred")
	var creds []struct{ ID string }
	if err := json.Unmarshal([]byte(ok(t, d, "credential", "list", "--ca-dir", "ca", "--json")), &creds); err != nil || len(creds) != 1 {
		t.Fatalf("credential list: %v %v", creds, err)
	}
	ok(t, d, "cms", "sign", "doc.txt", "--credential", creds[0].ID, "--cred-dir", "ca/credentials", "-o", "c.p7s")
	if out := ok(t, d, "cms", "verify", "c.p7s", "--ca", "ca/ca.crt"); !strings.Contains(out, "signer CN=cms-cred") {
		t.Errorf("verify:\n%s", out)
	}
}
