package audit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Append(EventIssue, map[string]any{"serial": fmt.Sprintf("%x", i+1)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l.Close()
	return path
}

func verifyFile(t *testing.T, path string) (*Report, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Verify(f)
}

func TestConcurrentAppendsChain(t *testing.T) {
	path := writeLog(t, 200)
	rep, err := verifyFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 200 || len(rep.Serials) != 200 {
		t.Fatalf("entries %d serials %d", rep.Entries, len(rep.Serials))
	}
	// Reopening continues the chain.
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(EventRevoke, map[string]any{"serial": "1", "reason": 1}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep, err := verifyFile(t, path); err != nil || rep.Entries != 201 || rep.Last.Event != EventRevoke {
		t.Fatalf("after reopen: %v %+v", err, rep)
	}
}

func TestTamperingDetected(t *testing.T) {
	path := writeLog(t, 10)
	orig, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(orig, []byte("\n"))
	lines = lines[:len(lines)-1] // trailing empty
	cases := map[string][]byte{
		"edit":    bytes.Join(append(append(append([][]byte{}, lines[:2]...), bytes.Replace(lines[2], []byte(EventIssue), []byte(EventRevoke), 1)), lines[3:]...), nil),
		"field":   []byte(strings.Replace(string(orig), `"serial":"`, `"serial":"f`, 1)),
		"delete":  bytes.Join(append(append([][]byte{}, lines[:4]...), lines[5:]...), nil),
		"reorder": bytes.Join(append(append(append([][]byte{}, lines[:3]...), lines[4], lines[3]), lines[5:]...), nil),
	}
	for name, data := range cases {
		os.WriteFile(path, data, 0o640)
		if _, err := verifyFile(t, path); err == nil {
			t.Errorf("%s not detected", name)
		}
	}
	// Deleting the head is caught by the chain too.
	os.WriteFile(path, bytes.Join(lines[1:], nil), 0o640)
	if _, err := verifyFile(t, path); err == nil {
		t.Error("deleting the first entry not detected")
	}
}

func TestOpenRefusesBrokenTail(t *testing.T) {
	path := writeLog(t, 3)
	data, _ := os.ReadFile(path)
	os.WriteFile(path, data[:len(data)-10], 0o640)
	if _, err := Open(path); err == nil {
		t.Fatal("opened a log whose last line was cut")
	}
}

// TestFieldsOfEveryKindVerify appends fields that are hashed as given
// (strings, names, times, small integers) and fields that need the JSON
// round trip (a struct, a large integer, a float), and checks that Verify,
// which hashes what it reads back, accepts every entry.
func TestFieldsOfEveryKindVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 11, 27, 6, 30, 0, 123456789, time.FixedZone("CET", 3600))
	events := []Event{
		{EventIssue, map[string]any{"serial": "0a", "names": []string{"a.example", "b.example"}, "not_after": when, "ok": true, "n": 42}},
		{EventCRL, map[string]any{"big": 1<<60 + 1, "ratio": 0.5, "nested": struct {
			Z string `json:"z"`
			A int    `json:"a"`
		}{"last", 1}}},
		{EventRevoke, nil},
	}
	if err := l.AppendMany(events); err != nil {
		t.Fatal(err)
	}
	l.Close()
	rep, err := verifyFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != len(events) {
		t.Fatalf("verified %d entries, want %d", rep.Entries, len(events))
	}
	if l, err = Open(path); err != nil { // reopening checks the last line's hash too
		t.Fatal(err)
	}
	l.Close()
}

// A recorder killed between its audit append and its store commit: the
// result comes again, to the same log or after a restart to the log
// reopened. The issuance is audited once; another certificate of the same
// job (signed twice), events without a job and a batch mixing old and new
// entries are all appended.
func TestIssuanceAuditedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	issue := func(job, sum string) Event {
		return Event{Event: EventIssue, Fields: map[string]any{"job_id": job, "sha256": sum, "serial": job + sum}}
	}
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendMany([]Event{issue("j1", "aa"), issue("j2", "bb"), issue("j1", "aa")}); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendMany([]Event{issue("j2", "bb"), issue("j3", "cc")}); err != nil { // j2 redelivered
		t.Fatal(err)
	}
	l.Close() // the crash: restarted, the log is read again
	l, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, ev := range []Event{issue("j1", "aa"), issue("j3", "cc"), issue("j1", "dd"), {Event: EventRotate}, {Event: EventRotate}} {
		if err := l.Append(ev.Event, ev.Fields); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := verifyFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events[EventIssue] != 4 || rep.Events[EventRotate] != 2 || rep.Entries != 6 {
		t.Fatalf("want 4 issuances (j1/aa, j2, j3, j1/dd) and 2 rotations, got %v", rep.Events)
	}
}
