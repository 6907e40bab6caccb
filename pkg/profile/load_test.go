package profile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeProfile(t *testing.T, caDir, name, content string) string {
	t.Helper()
	path := filepath.Join(caDir, ProfilesDir, filepath.FromSlash(name)+".yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCADirOverridesBuiltin(t *testing.T) {
	caDir := t.TempDir()
	data, _ := Builtin("ec/tls-server")
	custom := strings.Replace(string(data), "validity: 365d", "validity: 90d", 1)
	custom = strings.Replace(custom, "description: TLS server", "description: Short-lived TLS server", 1)
	path := writeProfile(t, caDir, "ec/tls-server", custom)

	p, err := Load("ec/tls-server", caDir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Validity != 90*day || p.Source != path {
		t.Fatalf("validity %s source %s: the override lost", p.Validity, p.Source)
	}
	// Without the CA dir the built-in applies.
	if p := mustLoad(t, "ec/tls-server"); p.Validity != 365*day || p.Source != SourceBuiltin {
		t.Fatalf("built-in validity %s source %s", p.Validity, p.Source)
	}
	// Other built-ins still load through the CA dir.
	if p, err := Load("ec/root-ca", caDir); err != nil || p.Source != SourceBuiltin {
		t.Fatalf("root: %v", err)
	}
}

func TestCADirOnlyProfile(t *testing.T) {
	caDir := t.TempDir()
	writeProfile(t, caDir, "corp/vpn", strings.Replace(minimal, "algorithm:", "name: corp/vpn\nalgorithm:", 1))
	p, err := Load("corp/vpn", caDir)
	if err != nil || p.Name != "corp/vpn" {
		t.Fatalf("%v %v", p, err)
	}
	if _, err := Load("corp/vpn", ""); err == nil {
		t.Fatal("a CA-dir profile found without the CA dir")
	}
}

func TestLoadRefuses(t *testing.T) {
	caDir := t.TempDir()
	writeProfile(t, caDir, "ec/tls-client", "algorithm: ecdsa-p256\nvalidity: 1d\nbogus: 1\n")
	writeProfile(t, caDir, "corp/misnamed", "name: corp/other\n"+minimal)
	for name, fragment := range map[string]string{
		"ec/tls-client":       "bogus",      // a broken override never falls back to the built-in
		"corp/misnamed":       "corp/other", // the name field must match the path
		"ec/nonexistent":      "unknown profile",
		"../etc/passwd":       "profile name",
		"/abs/path":           "profile name",
		"ec/../rsa/x":         "profile name",
		"ec/tls-server.yaml/": "profile name",
		"":                    "profile name",
	} {
		_, err := Load(name, caDir)
		wantErr(t, err, fragment)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "my-profile.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadFile(path)
	if err != nil || p.Name != "my-profile" || p.Source != path || string(p.Raw) != minimal {
		t.Fatalf("%+v %v", p, err)
	}
	_, err = LoadFile(filepath.Join(dir, "missing.yaml"))
	wantErr(t, err, "missing.yaml")
	_, err = LoadFile(dir)
	wantErr(t, err, "directory")
	big := filepath.Join(dir, "big.yaml")
	_ = os.WriteFile(big, make([]byte, MaxProfileSize+1), 0o644)
	_, err = LoadFile(big)
	wantErr(t, err, "larger than")
}

func TestList(t *testing.T) {
	caDir := t.TempDir()
	data, _ := Builtin("ec/tls-server")
	override := writeProfile(t, caDir, "ec/tls-server", string(data))
	writeProfile(t, caDir, "corp/vpn", minimal)
	writeProfile(t, caDir, "corp/broken", "algorithm: nope\n")
	_ = os.WriteFile(filepath.Join(caDir, ProfilesDir, "README.txt"), []byte("ignored"), 0o644)

	list, err := List(caDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(BuiltinNames())+2 {
		t.Fatalf("%d summaries: %+v", len(list), list)
	}
	byName := map[string]Summary{}
	for i, s := range list {
		if i > 0 && list[i-1].Name >= s.Name {
			t.Errorf("not sorted at %s", s.Name)
		}
		byName[s.Name] = s
	}
	if s := byName["ec/tls-server"]; s.Source != override || !s.Overrides || s.Error != "" {
		t.Errorf("override %+v", s)
	}
	if s := byName["ec/root-ca"]; s.Source != SourceBuiltin || !s.CA || s.Algorithms[0] != "ecdsa-p384" {
		t.Errorf("root %+v", s)
	}
	if s := byName["corp/vpn"]; s.Overrides || s.Error != "" {
		t.Errorf("vpn %+v", s)
	}
	if s := byName["corp/broken"]; !strings.Contains(s.Error, "nope") {
		t.Errorf("broken %+v", s)
	}

	// No CA dir, or one without a profiles folder: the built-ins.
	for _, dir := range []string{"", t.TempDir()} {
		list, err := List(dir)
		if err != nil || len(list) != len(BuiltinNames()) {
			t.Errorf("List(%q): %d %v", dir, len(list), err)
		}
	}
}
