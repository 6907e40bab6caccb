package jsaudit_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/internal/natstest"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/audit/jsaudit"
)

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	return natstest.Connect(t, url)
}

func export(t *testing.T, js jetstream.JetStream, ca string) (*audit.Report, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := jsaudit.Export(context.Background(), js, ca, &buf); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("the exported log does not verify: %v", err)
	}
	return rep, buf.Bytes()
}

// Two writers on two connections (two front-ends) to different nodes of
// an R3 stream append at once: the chain never forks, nothing is lost.
func TestTwoWritersOneChain(t *testing.T) {
	cl := natstest.StartCluster(t, 3)
	ctx := context.Background()
	urls := cl.URLs()
	var logs []*jsaudit.Log
	for i := range 2 {
		l, err := jsaudit.Open(ctx, connect(t, urls[i]), "issuing", 3)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	const perWriter, goroutines = 60, 4
	var wg sync.WaitGroup
	for w, l := range logs {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter / goroutines {
					serial := fmt.Sprintf("%d-%d-%d", w, g, i)
					var err error
					if i%3 == 0 {
						err = l.AppendMany([]audit.Event{
							{Event: audit.EventIssue, Fields: map[string]any{"serial": serial}},
							{Event: audit.EventIssue, Fields: map[string]any{"serial": serial + "b"}},
						})
					} else {
						err = l.Append(audit.EventIssue, map[string]any{"serial": serial})
					}
					if err != nil {
						t.Error(err)
					}
				}
			}()
		}
	}
	wg.Wait()
	rep, _ := export(t, connect(t, urls[2]), "issuing")
	want := 0
	for range 2 * goroutines {
		for i := range perWriter / goroutines {
			want++
			if i%3 == 0 {
				want++
			}
		}
	}
	if rep.Entries != want || len(rep.Serials) != want {
		t.Fatalf("%d entries (%d serials), want %d", rep.Entries, len(rep.Serials), want)
	}
	st, err := connect(t, urls[0]).Stream(ctx, jsaudit.StreamName("issuing"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; cfg.Replicas != 3 || !cfg.DenyDelete || !cfg.DenyPurge {
		t.Fatalf("stream config: replicas %d, deny delete %v, deny purge %v", cfg.Replicas, cfg.DenyDelete, cfg.DenyPurge)
	}
	if err := st.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("an audit message was deleted")
	}
}

// A batch larger than one message is split; a reopened log chains on;
// the export is the JSONL a file log would hold.
func TestLargeBatchAndReopen(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	ctx := context.Background()
	js := connect(t, url)
	l, err := jsaudit.Open(ctx, js, "big", 1)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 2000)
	events := make([]audit.Event, 400) // ~800 KB: several messages
	for i := range events {
		events[i] = audit.Event{Event: audit.EventIssue, Fields: map[string]any{"serial": fmt.Sprint(i), "pad": pad}}
	}
	if err := l.AppendMany(events); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := l.Append(audit.EventCRL, nil); err == nil {
		t.Fatal("append after Close")
	}
	l2, err := jsaudit.Open(ctx, connect(t, url), "big", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Append(audit.EventRevoke, map[string]any{"serial": "7"}); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, jsaudit.StreamName("big"))
	info, _ := st.Info(ctx)
	if info.State.Msgs < 4 {
		t.Fatalf("%d messages: the batch was not split", info.State.Msgs)
	}
	rep, data := export(t, js, "big")
	if rep.Entries != 401 || rep.Last.Event != audit.EventRevoke || rep.Events[audit.EventIssue] != 400 {
		t.Fatalf("report %+v", rep)
	}
	if bytes.Count(data, []byte("\n")) != 401 {
		t.Fatal("not one line per entry")
	}
}

func TestBadInput(t *testing.T) {
	js := connect(t, natstest.StartCluster(t, 1).URL())
	for _, ca := range []string{"", "a.b", "a b", strings.Repeat("a", 65)} {
		if _, err := jsaudit.Open(context.Background(), js, ca, 1); err == nil {
			t.Errorf("Open(%q) accepted", ca)
		}
	}
	if _, err := jsaudit.Export(context.Background(), js, "none", &bytes.Buffer{}); err == nil {
		t.Error("export of a missing stream")
	}
	l, err := jsaudit.Open(context.Background(), js, "empty", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendMany(nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if n, err := jsaudit.Export(context.Background(), js, "empty", &buf); err != nil || n != 0 || buf.Len() != 0 {
		t.Fatalf("empty export: %d %v %q", n, err, buf.String())
	}
}

// Front-end A audits an issuance and dies before storing it; its result
// is recorded by front-end B (a writer opened before A's append, which
// learns of it when its publish is refused) and by C (opened after, on a
// restart): the stream holds one entry for it, and the chain verifies.
func TestRedeliveredIssuanceAuditedOnce(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	ctx := context.Background()
	open := func() *jsaudit.Log {
		l, err := jsaudit.Open(ctx, connect(t, url), "redeliver", 1)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	issue := func(job string) audit.Event {
		return audit.Event{Event: audit.EventIssue, Fields: map[string]any{"job_id": job, "sha256": "ab" + job, "serial": job}}
	}
	a, b := open(), open()
	if err := a.AppendMany([]audit.Event{issue("j1"), issue("j2")}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := b.AppendMany([]audit.Event{issue("j2"), issue("j3"), issue("j3")}); err != nil {
		t.Fatal(err)
	}
	c := open()
	if err := c.AppendMany([]audit.Event{issue("j1"), issue("j4")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Append(audit.EventIssue, issue("j4").Fields); err != nil {
		t.Fatal(err)
	}
	rep, _ := export(t, connect(t, url), "redeliver")
	if rep.Events[audit.EventIssue] != 4 || rep.Entries != 4 {
		t.Fatalf("want one entry for each of j1 to j4, got %+v", rep.Events)
	}
}
