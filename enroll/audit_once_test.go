package enroll_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/audit/jsaudit"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
	"github.com/qpki/qpki/queue"
)

// A recorder killed between its audit append and its store commit: each
// result's first delivery is audited as the recorder does, then not
// stored, and the redelivered result is recorded (with the file log, by
// the same recorder, alternately one by one and in batches; with the
// JetStream log and store, by another front-end's Service, whose log was
// opened before the append). Each job has exactly one cert.issue entry,
// the log verifies, and every stored certificate is in it.
func TestCrashBetweenAuditAndCommitAuditsOnce(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "file", true: "jetstream"}[shared], func(t *testing.T) {
			testAuditOnce(t, shared)
		})
	}
}

func testAuditOnce(t *testing.T, shared bool) {
	var (
		mu      sync.Mutex
		audited = map[string]bool{}
		other   *enroll.Service // the front-end that records redeliveries
		batches int
	)
	var useStore func(*ca.CA, *queue.Queue)
	if shared {
		useStore = func(c *ca.CA, q *queue.Queue) { useJetStream(t, c, q) }
	}
	p := startPipelineOn(t, 2, 0, func(svc *enroll.Service, rs []queue.Result) error {
		mu.Lock()
		defer mu.Unlock()
		crashed := false
		for _, r := range rs {
			if audited[r.JobID] || !r.OK {
				continue
			}
			var res jobspec.IssueResult
			if err := jobspec.Decode(r.Payload, &res); err != nil {
				return err
			}
			rec, err := ca.CertRecord(res.DER, "ec/tls-server", res.CAVersion, r.JobID)
			if err != nil {
				return err
			}
			if err := svc.CA.Audit(audit.EventIssue, ca.IssueFields(rec)); err != nil {
				return err
			}
			audited[r.JobID], crashed = true, true
		}
		if crashed {
			return errors.New("killed before the store commit") // redelivered
		}
		rec := svc
		if other != nil {
			rec = other
		}
		if batches++; batches%2 == 0 {
			for _, r := range rs {
				if err := rec.Record(r); err != nil {
					return err
				}
			}
			return nil
		}
		return errors.Join(rec.RecordBatch(rs)...)
	}, useStore)
	waiter := p.svc
	if shared {
		c2, err := ca.Open(p.ca.Dir)
		if err != nil {
			t.Fatal(err)
		}
		useJetStream(t, c2, p.q)
		svc2, err := enroll.New(c2, p.q)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c2.Close() })
		mu.Lock()
		other, waiter = svc2, svc2
		mu.Unlock()
	}
	const n = 12
	ids := make([]string, n)
	for i := range ids {
		name := fmt.Sprintf("crash%d.example.com", i)
		id, err := p.svc.Submit(context.Background(), enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, name), Key: name})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	for _, id := range ids {
		if res := waitFor(t, waiter, id); res.State != store.JobDone {
			t.Fatalf("job %s: %+v", id, res)
		}
	}
	var log []byte
	if shared {
		var buf bytes.Buffer
		if _, err := jsaudit.Export(context.Background(), p.q.JetStream(), enroll.QueueName(p.ca), &buf); err != nil {
			t.Fatal(err)
		}
		log = buf.Bytes()
	} else {
		var err error
		if log, err = os.ReadFile(filepath.Join(p.ca.Dir, audit.FileName)); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := audit.Verify(bytes.NewReader(log))
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	perJob := map[string]int{}
	for line := range bytes.SplitSeq(bytes.TrimSpace(log), []byte("\n")) {
		e, err := audit.ParseEntry(line)
		if err != nil {
			t.Fatal(err)
		}
		if e.Event == audit.EventIssue {
			job, _ := e.Fields["job_id"].(string)
			perJob[job]++
		}
	}
	for _, id := range ids {
		if perJob[id] != 1 {
			t.Errorf("job %s: %d cert.issue entries, want 1", id, perJob[id])
		}
	}
	st, err := waiter.CA.Store()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := st.List(store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != n {
		t.Errorf("store has %d certificates for %d jobs", len(certs), n)
	}
	for _, c := range certs {
		if !rep.Serials[c.Serial] {
			t.Errorf("certificate %s stored without its audit entry", c.Serial)
		}
	}
}

// useJetStream points c at the queue's JetStream key-value store and
// audit stream, as `qpki serve --store jetstream` does: each CA instance
// (front-end) has a log of its own.
func useJetStream(t testing.TB, c *ca.CA, q *queue.Queue) {
	t.Helper()
	ctx := context.Background()
	name := enroll.QueueName(c)
	st, err := jskv.Open(ctx, q.JetStream(), jskv.Options{CA: name, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	log, err := jsaudit.Open(ctx, q.JetStream(), name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UseStore(st, log); err != nil {
		t.Fatal(err)
	}
}
