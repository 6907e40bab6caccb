// Package nobletest finds the independent @noble/post-quantum verifier
// (interop/noble) for tests: node and pq.mjs, installed with npm ci into
// the user cache when interop/noble has no node_modules of its own.
package nobletest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// nobleFail fails under CI and skips elsewhere.
func fail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// Script returns the node binary and the path of pq.mjs next to an
// installed @noble/post-quantum: interop/noble/node_modules when `npm ci`
// ran there, otherwise a per-lockfile directory in the user cache, which
// the first run fills with `npm ci`.
func Script(t testing.TB, nobleDir string) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		fail(t, "node not found (required when CI=true)")
	}
	if _, err := os.Stat(filepath.Join(nobleDir, "node_modules", "@noble", "post-quantum", "package.json")); err == nil {
		abs, _ := filepath.Abs(filepath.Join(nobleDir, "pq.mjs"))
		return node, abs
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		fail(t, "npm not found (required when CI=true)")
	}
	files := []string{"package.json", "package-lock.json", "pq.mjs"}
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(nobleDir, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "qpki", "noble-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@noble", "post-quantum", "package.json")); err != nil {
		tmp, err := os.MkdirTemp(filepath.Dir(dir), "noble-install-")
		if err != nil {
			if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
				t.Fatal(err)
			}
			if tmp, err = os.MkdirTemp(filepath.Dir(dir), "noble-install-"); err != nil {
				t.Fatal(err)
			}
		}
		defer os.RemoveAll(tmp)
		for _, f := range files {
			b, _ := os.ReadFile(filepath.Join(nobleDir, f))
			if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			fail(t, "npm ci: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, os.ErrExist) {
			if _, statErr := os.Stat(dir); statErr != nil {
				t.Fatal(err)
			}
		}
	}
	return node, filepath.Join(dir, "pq.mjs")
}
