package ca

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/store"
)

func TestAuditLogRecordsEveryEvent(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Audited Root")
	var serials []string
	for i := 0; i < 3; i++ {
		rec, err := root.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "a.example.com", "a.example.com")}, KeyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, rec.Serial)
	}
	if _, err := root.Revoke(serials[0], 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := root.GenerateCRL(CRLOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Rotate(RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	st, _ := root.Store()
	certs, _ := st.List(store.Filter{})
	rep, err := root.VerifyAudit(certs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{audit.EventInit: 1, audit.EventKeyGen: 2, audit.EventIssue: 3, audit.EventRevoke: 1, audit.EventCRL: 1, audit.EventRotate: 1}
	for ev, n := range want {
		if rep.Events[ev] != n {
			t.Errorf("%s: %d entries, want %d (all: %v)", ev, rep.Events[ev], n, rep.Events)
		}
	}
	root.Close()

	// Cutting the last issuance off the log is caught by the cross-check
	// with the store, even though the chain itself still holds.
	path := filepath.Join(root.Dir, audit.FileName)
	orig, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(orig, []byte("\n"))
	var kept [][]byte
	cut := false
	for i := len(lines) - 1; i >= 0; i-- {
		if !cut && bytes.Contains(lines[i], []byte(serials[2])) && bytes.Contains(lines[i], []byte(audit.EventIssue)) {
			kept = lines[:i]
			cut = true
		}
	}
	os.WriteFile(path, bytes.Join(kept, nil), 0o640)
	re, _ := Open(root.Dir)
	defer re.Close()
	st2, _ := re.Store()
	certs, _ = st2.List(store.Filter{})
	if _, err := re.VerifyAudit(certs); err == nil || !strings.Contains(err.Error(), serials[2]) {
		t.Fatalf("truncated log: %v", err)
	}
}
