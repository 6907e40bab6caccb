package main

import (
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
