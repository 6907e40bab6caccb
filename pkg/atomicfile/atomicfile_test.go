package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWritersReplaceWholeFiles(t *testing.T) {
	for name, write := range map[string]func(string, []byte, os.FileMode) error{
		"Write": Write, "WriteUnsynced": WriteUnsynced,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "a.crt")
			for _, content := range []string{"first", "second, longer than the first"} {
				if err := write(path, []byte(content), 0o640); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(path)
				if err != nil || string(got) != content {
					t.Fatalf("read %q, %v; want %q", got, err, content)
				}
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640", fi.Mode().Perm())
			}
			if err := SyncFS(dir); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("%d entries in the directory, want only the file (no temporary file left)", len(ents))
			}
			if err := write(filepath.Join(dir, "missing", "b.crt"), []byte("x"), 0o644); err == nil {
				t.Error("writing into a missing directory succeeded")
			}
		})
	}
}

func TestSyncFSMissingDirectory(t *testing.T) {
	if err := SyncFS(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("SyncFS of a missing directory succeeded")
	}
}
