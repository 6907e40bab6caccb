package ca

import (
	"os"
	"path/filepath"
	"testing"
)

// TestInitDirOwnerOnly: a new CA directory is its owner's alone (it holds
// the store, the audit log, file keys and serve's local API socket).
func TestInitDirOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Mode Root")
	defer root.Close()
	sub := newSub(t, filepath.Join(dir, "sub"), "ec/issuing-ca", "Mode Sub", root)
	defer sub.Close()
	for _, d := range []string{root.Dir, sub.Dir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != DirMode {
			t.Errorf("%s: mode %v, want %v", d, fi.Mode().Perm(), DirMode)
		}
	}
}
