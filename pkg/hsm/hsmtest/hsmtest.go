// Package hsmtest gives tests a real SoftHSM2 with throw-away tokens.
//
// A PKCS#11 module is initialised once per process and SoftHSM2 reads
// SOFTHSM2_CONF when it is, so one SoftHSM2 configuration serves a whole
// test binary: list every token the package's tests need in TestMain.
//
//	func TestMain(m *testing.M) { hsmtest.Main(m, "ca-token", "other-token") }
//
//	func TestX(t *testing.T) {
//		env := hsmtest.Get(t)           // fails under CI=true without SoftHSM2, skips otherwise
//		cfgPath := env.Config(t, "ca-token")
//		...
//	}
package hsmtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The user PIN of every test token, exported in PINEnv by Get. Tests check
// that errors never contain it, so it is distinctive.
const (
	PINEnv = "QPKI_TEST_HSM_PIN"
	PIN    = "pin-7f3c9e-qpki"
	SOPIN  = "so-pin-51d2a8-qpki"
)

// LibEnv overrides where the SoftHSM2 module is looked for.
const LibEnv = "QPKI_SOFTHSM2_LIB"

// ErrNoSoftHSM says SoftHSM2 (module or softhsm2-util) is not installed.
var ErrNoSoftHSM = errors.New("SoftHSM2 is not installed (Debian: apt-get install softhsm2)")

var libCandidates = []string{
	"/usr/lib/softhsm/libsofthsm2.so", // Debian, Ubuntu
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so", // Fedora
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// Lib returns the SoftHSM2 module path, or "" when none is installed.
func Lib() string {
	if p := os.Getenv(LibEnv); p != "" {
		return p
	}
	for _, p := range libCandidates {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Token is one initialised test token.
type Token struct {
	Label  string
	Serial string
	Slot   uint
}

// Env is the process's SoftHSM2: its directory, configuration and tokens.
type Env struct {
	Dir    string // holds softhsm2.conf and the token directory
	Conf   string // the SOFTHSM2_CONF file
	Lib    string // the module
	Tokens []Token
}

var (
	labels   = []string{"qpki-test"}
	once     sync.Once
	shared   *Env
	setupErr error
)

// Main runs the package's tests with the given token labels (a label may
// repeat, for ambiguity tests) and removes the SoftHSM2 directory after.
// Call it from TestMain.
func Main(m *testing.M, tokenLabels ...string) {
	os.Exit(Run(m, tokenLabels...))
}

// Run is Main for a TestMain that does more: it runs the tests, removes
// the SoftHSM2 directory and returns the exit code.
func Run(m *testing.M, tokenLabels ...string) int {
	if len(tokenLabels) > 0 {
		labels = tokenLabels
	}
	code := m.Run()
	if shared != nil {
		os.RemoveAll(shared.Dir)
	}
	return code
}

// Get returns the SoftHSM2 environment, setting it up on first use. Without
// SoftHSM2 it fails the test when CI=true and skips it otherwise.
func Get(t testing.TB) *Env {
	t.Helper()
	once.Do(func() { shared, setupErr = setup(labels) })
	if setupErr != nil {
		if errors.Is(setupErr, ErrNoSoftHSM) && os.Getenv("CI") != "true" {
			t.Skip(setupErr)
		}
		t.Fatal(setupErr)
	}
	return shared
}

func setup(labels []string) (*Env, error) {
	lib := Lib()
	if lib == "" {
		return nil, ErrNoSoftHSM
	}
	if _, err := os.Stat(lib); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoSoftHSM, err)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoSoftHSM, err)
	}
	dir, err := os.MkdirTemp("", "qpki-softhsm-")
	if err != nil {
		return nil, err
	}
	env := &Env{Dir: dir, Conf: filepath.Join(dir, "softhsm2.conf"), Lib: lib}
	tokenDir := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokenDir, 0o700); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokenDir)
	if err := os.WriteFile(env.Conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	os.Setenv("SOFTHSM2_CONF", env.Conf)
	os.Setenv(PINEnv, PIN)
	for _, l := range labels {
		cmd := exec.Command(util, "--init-token", "--free", "--label", l, "--so-pin", SOPIN, "--pin", PIN)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+env.Conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("softhsm2-util --init-token %q: %v\n%s", l, err, out)
		}
	}
	cmd := exec.Command(util, "--show-slots")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+env.Conf)
	out, err := cmd.Output()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("softhsm2-util --show-slots: %v", err)
	}
	env.Tokens = parseSlots(out)
	if len(env.Tokens) != len(labels) {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("softhsm2-util shows %d initialised tokens, want %d", len(env.Tokens), len(labels))
	}
	return env, nil
}

// parseSlots reads the initialised tokens from softhsm2-util --show-slots.
func parseSlots(out []byte) []Token {
	var toks []Token
	var cur *Token
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "Slot "); ok {
			if n, err := strconv.ParseUint(rest, 10, 64); err == nil {
				toks = append(toks, Token{Slot: uint(n)})
				cur = &toks[len(toks)-1]
			}
			continue
		}
		if cur == nil {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "Serial number":
			cur.Serial = strings.TrimSpace(val)
		case "Label":
			cur.Label = strings.TrimSpace(val)
		}
	}
	var inited []Token
	for _, t := range toks {
		if t.Label != "" {
			inited = append(inited, t)
		}
	}
	return inited
}

// Token returns the first token with the given label.
func (e *Env) Token(t testing.TB, label string) Token {
	t.Helper()
	for _, tok := range e.Tokens {
		if tok.Label == label {
			return tok
		}
	}
	t.Fatalf("hsmtest: no test token %q (declare it in hsmtest.Main)", label)
	return Token{}
}

// ConfigYAML returns an --hsm-config selecting the token by label.
func (e *Env) ConfigYAML(label string) string {
	return fmt.Sprintf("type: pkcs11\npkcs11:\n  lib: %s\n  token: %q\n  pin_env: %s\n", e.Lib, label, PINEnv)
}

// Config writes ConfigYAML(label) to a file in t.TempDir and returns its path.
func (e *Env) Config(t testing.TB, label string) string {
	t.Helper()
	return WriteFile(t, "hsm.yaml", e.ConfigYAML(label))
}

// WriteFile writes content to name in a new t.TempDir and returns the path.
func WriteFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
