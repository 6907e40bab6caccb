package testtoken_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/testtoken"
)

// pkcs11Tool returns OpenSC's pkcs11-tool; a test that needs it fails
// under CI=true when it is missing (make deps installs it) and skips
// otherwise.
func pkcs11Tool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("pkcs11-tool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("pkcs11-tool is not installed (Debian: apt-get install opensc)")
		}
		t.Skip("pkcs11-tool is not installed")
	}
	return p
}

// TestPKCS11Tool drives the token with OpenSC's pkcs11-tool, an
// independent PKCS#11 application.
func TestPKCS11Tool(t *testing.T) {
	d := testtoken.Get(t)
	tool := pkcs11Tool(t)
	slot, _ := d.Slot(toolToken)
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		args = append([]string{"--module", d.Lib}, args...)
		out, err := exec.Command(tool, args...).CombinedOutput()
		if wantOK && err != nil {
			t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args[2:], " "), err, out)
		}
		if !wantOK && err == nil {
			t.Fatalf("pkcs11-tool %s succeeded:\n%s", strings.Join(args[2:], " "), out)
		}
		return string(out)
	}
	contains := func(out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Fatalf("output lacks %q:\n%s", w, out)
			}
		}
	}
	s := fmt.Sprint(slot)

	contains(run(true, "-I"), "Cryptoki version 3.2", "qpki test token (dev/CI only)")
	contains(run(true, "-L"), "qpki test token — development and CI only", toolToken, "qpki (development and CI only)")

	// Re-initialise the token (the SO PIN must match) and set a user PIN.
	contains(run(true, "--slot", s, "--init-token", "--label", toolToken, "--so-pin", testtoken.SOPIN), "Token successfully initialized")
	run(false, "--slot", s, "--init-token", "--label", toolToken, "--so-pin", "wrong-so-pin")
	userPIN := "tool-pin-1234"
	contains(run(true, "--slot", s, "--init-pin", "--so-pin", testtoken.SOPIN, "--pin", userPIN), "User PIN successfully initialized")

	// The PKCS#11 3.2 mechanisms appear under their numbers; the EC ones by name.
	contains(run(true, "--slot", s, "-M"),
		"mechtype-0xF,", "mechtype-0x17,", "mechtype-0x1C,", "mechtype-0x1D,", "mechtype-0x2D,", "mechtype-0x2E,",
		"ECDSA-KEY-PAIR-GEN", "ECDSA, keySize={256,384}, sign, verify")

	login := []string{"--slot", s, "--login", "--pin", userPIN}
	for _, kt := range []struct{ curve, label, id string }{
		{"EC:prime256v1", "tool-p256", "a1"}, {"EC:secp384r1", "tool-p384", "a2"},
	} {
		out := run(true, append(login, "--keypairgen", "--key-type", kt.curve, "--label", kt.label, "--id", kt.id)...)
		contains(out, "Key pair generated", "label:      "+kt.label, "sensitive, always sensitive, never extractable, local")
	}
	objs := run(true, append(login, "-O")...)
	contains(objs, "Private Key Object; EC", "Public Key Object; EC  EC_POINT 256 bits", "EC_POINT 384 bits", "tool-p256", "tool-p384")
	// Without a login only the public keys show.
	if pub := run(true, "--slot", s, "-O"); strings.Contains(pub, "Private Key Object") || !strings.Contains(pub, "tool-p384") {
		t.Fatalf("objects without login:\n%s", pub)
	}

	// Sign on the token, verify on the token.
	dir := t.TempDir()
	data, sig := filepath.Join(dir, "data"), filepath.Join(dir, "sig")
	if err := os.WriteFile(data, []byte("signed through pkcs11-tool"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(true, append(login, "--sign", "--mechanism", "ECDSA", "--id", "a2", "-i", data, "-o", sig)...)
	if st, err := os.Stat(sig); err != nil || st.Size() != 96 {
		t.Fatalf("P-384 signature: %v, %v", st, err)
	}
	contains(run(true, append(login, "--verify", "--mechanism", "ECDSA", "--id", "a2", "-i", data, "--signature-file", sig)...),
		"Signature is valid")

	contains(run(false, "--slot", s, "--login", "--pin", "wrong-pin-000", "-O"), "CKR_PIN_INCORRECT")
	// The failure above counts; a good login resets the counter.
	run(true, append(login, "-O")...)
}
