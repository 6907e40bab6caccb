package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func archive(t *testing.T, files map[string]string) []byte {
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))})
		tw.Write([]byte(content))
	}
	tw.Close()
	gz.Close()
	return b.Bytes()
}

func TestRestoreRefusesBadArchives(t *testing.T) {
	for name, data := range map[string][]byte{
		"not gzip":  []byte("hello"),
		"traversal": archive(t, map[string]string{"ca/ca.meta.json": "{}", "../evil": "x"}),
		"absolute":  archive(t, map[string]string{"ca/ca.meta.json": "{}", "/etc/evil": "x"}),
		"no meta":   archive(t, map[string]string{"ca/ca.crt": "x"}),
		"stray":     archive(t, map[string]string{"ca/ca.meta.json": "{}", "other/x": "x"}),
	} {
		dir := t.TempDir()
		err := Restore(bytes.NewReader(data), filepath.Join(dir, "ca"), filepath.Join(dir, "data"))
		if err == nil {
			t.Errorf("%s: restored", name)
			continue
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 0 {
			t.Errorf("%s: left %v behind", name, entries)
		}
	}
}

func TestRoundTripSkipsSocketsAndQueue(t *testing.T) {
	src := t.TempDir()
	ca, data := filepath.Join(src, "ca"), filepath.Join(src, "data")
	os.MkdirAll(filepath.Join(ca, "versions/v1/keys"), 0o755)
	os.MkdirAll(filepath.Join(data, "queue/nats"), 0o755)
	os.WriteFile(filepath.Join(ca, "ca.meta.json"), []byte(`{"x":1}`), 0o644)
	os.WriteFile(filepath.Join(ca, "versions/v1/keys/ca.key"), []byte("key"), 0o600)
	os.WriteFile(filepath.Join(ca, "qpki.sock"), []byte(""), 0o600)
	os.WriteFile(filepath.Join(data, "queue/nats/x"), []byte("q"), 0o600)
	os.WriteFile(filepath.Join(data, "est-users.json"), []byte("[]"), 0o600)
	var b bytes.Buffer
	if err := Write(&b, Sources{CADir: ca, DataDir: data}); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := Restore(&b, filepath.Join(dst, "ca"), filepath.Join(dst, "data")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "ca")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("restored CA dir (0755 in the archive): %v %v, want 0700", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "ca/versions/v1/keys/ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	for _, gone := range []string{"ca/qpki.sock", "data/queue"} {
		if _, err := os.Stat(filepath.Join(dst, gone)); err == nil {
			t.Errorf("%s was backed up", gone)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dst, "data/est-users.json")); !strings.Contains(string(data), "[]") {
		t.Error("data dir state missing")
	}
}
