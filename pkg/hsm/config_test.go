package hsm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodConfig = `type: pkcs11
pkcs11:
  lib: /usr/lib/softhsm/libsofthsm2.so
  token: "CA-Token"
  pin_env: HSM_PIN
  logout_after_use: false
`

func TestLoadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hsm.yaml")
	if err := os.WriteFile(p, []byte(goodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path() != p {
		t.Errorf("Path() = %q, want %q", c.Path(), p)
	}
	if string(c.Bytes()) != goodConfig {
		t.Error("Bytes() differs from the file")
	}
	pk := c.PKCS11
	if pk.Lib != "/usr/lib/softhsm/libsofthsm2.so" || pk.Token != "CA-Token" || pk.PINEnv != "HSM_PIN" || pk.LogoutAfterUse || pk.Slot != nil {
		t.Errorf("parsed %+v", pk)
	}
	tab, err := c.MechanismTable()
	if err != nil || tab.Name != DefaultMechanisms {
		t.Errorf("default mechanism table = %v, %v", tab, err)
	}

	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	os.WriteFile(big, []byte(goodConfig+"#"+strings.Repeat("x", MaxConfigSize)+"\n"), 0o600)
	if _, err := LoadConfig(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
}

func TestParseConfigSelectors(t *testing.T) {
	c, err := ParseConfig([]byte("type: pkcs11\npkcs11:\n  lib: x.so\n  slot: 0\n  token_serial: ABC123\n  logout_after_use: true\n  mechanisms: thales-luna-pqc-fm\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.PKCS11.Slot == nil || *c.PKCS11.Slot != 0 {
		t.Errorf("slot 0 not kept: %v", c.PKCS11.Slot)
	}
	if c.PKCS11.TokenSerial != "ABC123" || !c.PKCS11.LogoutAfterUse || c.PKCS11.Mechanisms != "thales-luna-pqc-fm" {
		t.Errorf("parsed %+v", c.PKCS11)
	}
	if got := c.TokenDescription(); got != `serial "ABC123", slot 0` {
		t.Errorf("TokenDescription() = %q", got)
	}
}

func TestParseConfigErrors(t *testing.T) {
	const secret = "s3cr3t-4242"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"pin", "type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n  pin: " + secret + "\n", "pin_env"},
		{"pin upper case", "type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n  PIN: " + secret + "\n", "refused"},
		{"pin at top", "type: pkcs11\npin: " + secret + "\npkcs11:\n  lib: x.so\n  token: T\n", "refused"},
		{"so_pin", "type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n  so_pin: " + secret + "\n", "refused"},
		{"unknown key", "type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n  tokn: U\n", "tokn"},
		{"unknown top key", "type: pkcs11\nextra: 1\npkcs11:\n  lib: x.so\n  token: T\n", "extra"},
		{"no type", "pkcs11:\n  lib: x.so\n  token: T\n", "type: pkcs11"},
		{"wrong type", "type: kms\npkcs11:\n  lib: x.so\n  token: T\n", "unsupported type"},
		{"no lib", "type: pkcs11\npkcs11:\n  token: T\n", "lib"},
		{"no selector", "type: pkcs11\npkcs11:\n  lib: x.so\n  pin_env: HSM_PIN\n", "token_serial"},
		{"pin in pin_env", "type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n  pin_env: \"" + secret + "\"\n", "not a PIN"},
		{"unknown table", "type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n  mechanisms: acme-hsm\n", "unknown mechanism table"},
		{"negative slot", "type: pkcs11\npkcs11:\n  lib: x.so\n  slot: -1\n", "invalid"},
		{"label too long", "type: pkcs11\npkcs11:\n  lib: x.so\n  token: " + strings.Repeat("L", 33) + "\n", "32 bytes"},
		{"two documents", goodConfig + "---\n" + goodConfig, "more than one"},
		{"empty", "", "empty"},
		{"not yaml", "type: [pkcs11\n", "malformed"},
		{"sign_nice too low", "type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n  sign_nice: -21\n", "sign_nice"},
		{"sign_nice positive", "type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n  sign_nice: 5\n", "sign_nice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestSignNice(t *testing.T) {
	for yaml, want := range map[string]int{"": DefaultSignNice, "  sign_nice: 0\n": 0, "  sign_nice: -20\n": -20} {
		c, err := ParseConfig([]byte("type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n" + yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.PKCS11.signNice(); got != want {
			t.Errorf("%q: sign_nice %d, want %d", yaml, got, want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("type: pkcs11\npkcs11:\n  lib: x.so\n  slot: 3\n"))
	f.Add([]byte("type: pkcs11\npkcs11:\n  lib: x.so\n  token: T\n  pin: 1234\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		p := c.PKCS11
		if c.Type != "pkcs11" || p.Lib == "" || (p.Token == "" && p.TokenSerial == "" && p.Slot == nil) {
			t.Fatalf("accepted an invalid configuration: %+v", c)
		}
	})
}

// The vendor examples must stay valid configurations.
func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob("../../examples/hsm/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d example configurations, want softhsm2, thales-luna, utimaco and yubihsm", len(files))
	}
	for _, f := range files {
		c, err := LoadConfig(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if c.PKCS11.PINEnv != "HSM_PIN" {
			t.Errorf("%s: pin_env %q", f, c.PKCS11.PINEnv)
		}
	}
}
