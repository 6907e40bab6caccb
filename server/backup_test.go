package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A backup taken while serve runs restores into new directories, and the
// restored CA issues, with its revocations and audit log intact.
func TestBackupRestoreWhileServing(t *testing.T) {
	e := newEnv(t)
	e.startServe(1)
	reqs := e.writeBatch(5)
	out := filepath.Join(e.dir, "certs")
	e.run("batch", "submit", reqs, "--ca-dir", e.caDir, "--out", out)
	var list []struct{ Serial, Subject, Status string }
	json.Unmarshal([]byte(e.run("cert", "list", "--ca-dir", e.caDir, "--json")), &list)
	revoked := list[0].Serial
	e.run("cert", "revoke", revoked, "--reason", "keyCompromise", "--ca-dir", e.caDir)
	bak := filepath.Join(e.dir, "backup.tar.gz")
	e.run("backup", "--ca-dir", e.caDir, "--data-dir", e.data, "--out", bak)
	if fi, err := os.Stat(bak); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	e.stopAll(t)

	newCA, newData := filepath.Join(e.dir, "restored", "ca"), filepath.Join(e.dir, "restored", "data")
	if out := e.run("restore", "--in", bak, "--ca-dir", newCA, "--data-dir", newData); !strings.Contains(out, "audit log intact") {
		t.Fatalf("restore: %s", out)
	}
	// The restore refuses to overwrite.
	if _, err := runQ("restore", "--in", bak, "--ca-dir", newCA); err == nil {
		t.Fatal("restore over an existing CA succeeded")
	}
	var restored []struct{ Serial, Status string }
	json.Unmarshal([]byte(e.run("cert", "list", "--ca-dir", newCA, "--json")), &restored)
	if len(restored) != len(list) {
		t.Fatalf("restored %d certificates, had %d", len(restored), len(list))
	}
	found := false
	for _, c := range restored {
		if c.Serial == revoked {
			found = c.Status == "revoked"
		}
	}
	if !found {
		t.Fatal("revocation lost in the restore")
	}
	csr := filepath.Join(e.dir, "n.csr")
	e.run("csr", "gen", "--keyout", filepath.Join(e.dir, "n.key"), "--cn", "new.example.com", "--dns", "new.example.com", "--out", csr)
	e.run("cert", "issue", "--ca-dir", newCA, "--profile", "ec/tls-server", "--csr", csr, "--out", filepath.Join(e.dir, "n.crt"))
	e.run("crl", "gen", "--ca-dir", newCA)
	if out := e.run("audit", "verify", "--ca-dir", newCA); !strings.Contains(out, "audit log OK") {
		t.Fatalf("audit verify: %s", out)
	}
}

func runQ(args ...string) (string, error) {
	out, err := execCommand(qpkiBin, args...).CombinedOutput()
	return string(out), err
}
