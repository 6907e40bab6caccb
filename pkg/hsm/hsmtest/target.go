package hsmtest

import (
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
)

// `make test-hsm` points the HSM suites at an operator's token:
//
//	HSM_CONFIG=/etc/qpki/hsm.yaml HSM_PIN=... make test-hsm
//
// HSM_CONFIG names an --hsm-config; the PIN is read from HSM_PIN whatever
// the file's pin_env says. HSM_PQC_ENABLED=1 adds the post-quantum cases.
// Without HSM_CONFIG, the suites use throw-away SoftHSM2 tokens.
const (
	ConfigEnv      = "HSM_CONFIG"
	ExternalPINEnv = "HSM_PIN"
	PQCEnv         = "HSM_PQC_ENABLED"
)

// External reports whether HSM_CONFIG names an operator's token.
func External() bool { return os.Getenv(ConfigEnv) != "" }

// PQCEnabled reports whether HSM_PQC_ENABLED asks for the post-quantum
// cases.
func PQCEnabled() bool { v := os.Getenv(PQCEnv); return v == "1" || v == "true" }

// Target is the token a test runs against.
type Target struct {
	Config   string // an --hsm-config file
	PINEnv   string // the variable holding the PIN
	PIN      string // the PIN, so that tests can check it never leaks
	External bool   // an operator's token: leave no keys behind, never try a wrong PIN
}

// Use returns the operator's token when HSM_CONFIG is set, and otherwise
// the SoftHSM2 test token with the given label (declared in Main). Like
// Get, it fails under CI=true when SoftHSM2 is missing and skips
// otherwise.
func Use(t testing.TB, label string) Target {
	t.Helper()
	if !External() {
		env := Get(t)
		env.Token(t, label)
		return Target{Config: env.Config(t, label), PINEnv: PINEnv, PIN: PIN}
	}
	pin := os.Getenv(ExternalPINEnv)
	if pin == "" {
		t.Fatalf("hsmtest: %s is set but %s (the token's user PIN) is not", ConfigEnv, ExternalPINEnv)
	}
	data, err := os.ReadFile(os.Getenv(ConfigEnv))
	if err != nil {
		t.Fatalf("hsmtest: %s: %v", ConfigEnv, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("hsmtest: %s: %v", ConfigEnv, err)
	}
	p, ok := doc["pkcs11"].(map[string]any)
	if !ok {
		t.Fatalf("hsmtest: %s has no pkcs11 section", ConfigEnv)
	}
	p["pin_env"] = ExternalPINEnv
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Config: WriteFile(t, "hsm.yaml", string(out)), PINEnv: ExternalPINEnv, PIN: pin, External: true}
}

// SoftHSMOnly skips a test that needs SoftHSM2 itself (several tokens, a
// wrong PIN) when the suite runs against an operator's token.
func SoftHSMOnly(t testing.TB) {
	t.Helper()
	if External() {
		t.Skipf("needs throw-away SoftHSM2 tokens; %s points at an operator's token", ConfigEnv)
	}
}
