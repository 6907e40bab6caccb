package enroll_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/ocspx"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

func ocspJob(t *testing.T, p *pipeline, serials ...string) *jobspec.OCSP {
	t.Helper()
	spec := &jobspec.OCSP{Version: p.ca.Meta.Active, Hash: "sha1", ThisUpdate: time.Now().UTC().Truncate(time.Second), Validity: 96 * time.Hour}
	for _, s := range serials {
		n, _ := store.ParseSerial(s)
		st, _ := p.ca.Store()
		c, err := st.Cert(n)
		if err != nil {
			t.Fatal(err)
		}
		e := jobspec.OCSPEntry{Serial: c.Serial, Status: jobspec.OCSPGood}
		if c.Revocation != nil {
			e = jobspec.OCSPEntry{Serial: c.Serial, Status: jobspec.OCSPRevoked, RevokedAt: c.Revocation.Time, Reason: c.Revocation.Reason}
		}
		spec.Entries = append(spec.Entries, e)
	}
	return spec
}

func storedOCSP(t *testing.T, p *pipeline, serial string) (*store.OCSPResponse, error) {
	st, _ := p.ca.Store()
	n, _ := store.ParseSerial(serial)
	return st.(store.OCSPStore).OCSP(n, "sha1")
}

// An OCSP job is signed by a worker and its responses kept in the store,
// one per certificate, each saying that certificate's status.
func TestOCSPThroughQueue(t *testing.T) {
	p := startPipeline(t, 1, 0)
	ctx := context.Background()
	var serials []string
	for i, name := range []string{"a.example.com", "b.example.com"} {
		id, _ := p.svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, name), Key: name})
		res := waitFor(t, p.svc, id)
		serials = append(serials, res.Cert.Serial)
		if i == 1 {
			if _, err := p.ca.Revoke(res.Cert.Serial, 4, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	spec := ocspJob(t, p, serials...)
	id, err := p.svc.Submit(ctx, enroll.Request{Kind: jobspec.KindOCSP, Class: queue.ClassBatch, Key: "ocsp-1", OCSP: spec})
	if err != nil {
		t.Fatal(err)
	}
	if res := waitFor(t, p.svc, id); res.State != store.JobDone {
		t.Fatalf("OCSP job: %+v", res)
	}
	issuer := mustCACert(t, p.ca)
	for i, s := range serials {
		rec, err := storedOCSP(t, p, s)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ocspx.ParseResponse(rec.DER)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Verify(issuer); err != nil {
			t.Fatal(err)
		}
		want := ocspx.Good
		if i == 1 {
			want = ocspx.Revoked
		}
		if len(r.Responses) != 1 || r.Responses[0].Status != want || r.Responses[0].ID.Serial.Text(16) != s {
			t.Errorf("serial %s: response %+v", s, r.Responses)
		}
	}
}

// TestForgedOCSPResultRefused: the recorder keeps an OCSP result only
// when every response verifies under the CA and says what the job asked.
// A result that calls a revoked certificate good — signed with the CA
// key, as a compromised worker could, even one this process vouches for —
// or signed by another key is refused as forged: nothing reaches the
// store, the job stays queued, and the genuine result is recorded after.
func TestForgedOCSPResultRefused(t *testing.T) {
	genuine := make(chan queue.Result, 8)
	p := startPipelineRecording(t, 1, 0, func(svc *enroll.Service, rs []queue.Result) error {
		var rest []queue.Result
		for _, r := range rs {
			if r.Kind == queue.KindOCSP {
				genuine <- r // held back: the test records it
			} else {
				rest = append(rest, r)
			}
		}
		return errors.Join(svc.RecordBatch(rest)...)
	})
	ctx := context.Background()
	id, _ := p.svc.Submit(ctx, enroll.Request{Principal: testPrincipal, Profile: "ec/tls-server", CSR: csrFor(t, "f.example.com"), Key: "f"})
	serial := waitFor(t, p.svc, id).Cert.Serial
	if _, err := p.ca.Revoke(serial, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	iss, closer, err := p.ca.Issuer("", ca.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	otherKey, _ := algo.GenerateKey(algo.ECDSAP384, rand.Reader)
	other, _ := algo.NewSigner(otherKey, algo.ECDSAP384)
	issuer := mustCACert(t, p.ca)
	spec := ocspJob(t, p, serial)
	jobID, err := p.svc.Submit(ctx, enroll.Request{Kind: jobspec.KindOCSP, Key: "ocsp-f", OCSP: spec})
	if err != nil {
		t.Fatal(err)
	}
	var real queue.Result
	select {
	case real = <-genuine:
	case <-time.After(time.Minute):
		t.Fatal("no OCSP result")
	}
	for n, c := range map[string]struct {
		signer algo.Signer
		lie    bool
		vouch  bool // as if this process's worker had signed it
	}{"says good, CA key": {iss.Signer, true, false}, "other key": {other, false, false}, "says good, vouched": {iss.Signer, true, true}} {
		lie := *spec
		lie.Entries = []jobspec.OCSPEntry{spec.Entries[0]}
		if c.lie {
			lie.Entries[0] = jobspec.OCSPEntry{Serial: serial, Status: jobspec.OCSPGood}
		}
		out, err := ca.SignOCSP(&lie, issuer, c.signer, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		f := real
		f.Payload, _ = jobspec.Encode(jobspec.OCSPResult{Responses: out})
		if c.vouch {
			jobspec.Vouch(f.Payload)
		}
		if err := p.svc.Record(f); !enroll.IsForged(err) {
			t.Errorf("%s: Record gave %v, want a ForgedError", n, err)
		}
		if _, err := storedOCSP(t, p, serial); err == nil {
			t.Fatalf("%s: the store keeps the forged response", n)
		}
		if j, _ := p.svc.Job(jobID); j.State != store.JobQueued {
			t.Fatalf("%s: the job is %s after a forged result", n, j.State)
		}
	}
	if err := p.svc.Record(real); err != nil {
		t.Fatal(err)
	}
	rec, err := storedOCSP(t, p, serial)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ocspx.ParseResponse(rec.DER); r == nil || r.Responses[0].Status != ocspx.Revoked {
		t.Fatal("the genuine response is not the one stored")
	}
}
