package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A PIN flag is refused with the reason, and its value is not echoed.
func TestPINFlagRefused(t *testing.T) {
	d := t.TempDir()
	for _, args := range [][]string{
		{"key", "gen", "--pin", "s3cret-pin", "--hsm-config", "hsm.yaml", "--key-label", "k"},
		{"ca", "init", "--hsm-pin=s3cret-pin", "--profile", "ec/root-ca"},
		{"hsm", "test", "--so-pin", "s3cret-pin"},
	} {
		fails(t, d, "a PIN is never taken from a flag", args...)
		if r := run(t, d, nil, args...); strings.Contains(r.stdout+r.stderr, "s3cret-pin") {
			t.Errorf("qpki %v echoed the PIN: %q", args, r.stderr)
		}
	}
	fails(t, d, "unknown flag: --colour", "key", "gen", "--colour", "red")
}

// A multi-line error (a YAML decoder lists one problem per line) is
// printed on one line with its details, not cut after its first line.
func TestMultiLineErrorKeepsDetails(t *testing.T) {
	got := oneLine("yaml: unmarshal errors:\n  line 2: field listne not found\n  line 3: field x not found\n")
	if want := "yaml: unmarshal errors: line 2: field listne not found line 3: field x not found"; got != want {
		t.Errorf("oneLine = %q, want %q", got, want)
	}
	if got := oneLine(strings.Repeat("x", 5000)); len(got) != 1003 {
		t.Errorf("oneLine kept %d characters of 5000", len(got))
	}
	// A bad setting in serve's config names its line.
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "qpki.yaml"), []byte("ca-dir: ./ca\nlistne: 127.0.0.1:0\n"), 0o644)
	fails(t, d, `line 2: unknown setting "listne"`, "serve", "--config", "qpki.yaml")
}
