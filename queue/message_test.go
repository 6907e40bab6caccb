package queue

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

func TestValidToken(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"root", true},
		{"issuing-CA_2", true},
		{"4f2c7e1a-9b3d-4a8e-b1c2-0d9e8f7a6b5c", true},
		{"", false},
		{"a.b", false},
		{"*", false},
		{">", false},
		{"a b", false},
		{"a\tb", false},
		{"é", false},
		{"a/b", false},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
	} {
		if got := ValidToken(tc.s, 64); got != tc.want {
			t.Errorf("ValidToken(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestSubjects(t *testing.T) {
	if got := JobSubject("root", KindIssue, ClassBatch); got != "qpki.jobs.root.issue.batch" {
		t.Errorf("JobSubject = %q", got)
	}
	if got := ResultSubject("root", "j1"); got != "qpki.results.root.j1" {
		t.Errorf("ResultSubject = %q", got)
	}
	if got := DeadSubject("root", "j1"); got != "qpki.dead.root.j1" {
		t.Errorf("DeadSubject = %q", got)
	}
	ca, kind, class, ok := parseJobSubject("qpki.jobs.root.crl.interactive")
	if !ok || ca != "root" || kind != KindCRL || class != ClassInteractive {
		t.Errorf("parseJobSubject = %q %q %q %v", ca, kind, class, ok)
	}
	for _, bad := range []string{"qpki.jobs.root.crl", "qpki.results.root.a.b", "qpki.jobs.a.b.c.d"} {
		if _, _, _, ok := parseJobSubject(bad); ok {
			t.Errorf("parseJobSubject(%q) ok", bad)
		}
	}
	if ca, class, ok := parseJobFilter(jobFilter("root", ClassBatch)); !ok || ca != "root" || class != ClassBatch {
		t.Errorf("parseJobFilter = %q %q %v", ca, class, ok)
	}
	// Consumer names of different (ca, class) pairs never collide.
	names := map[string]bool{}
	for _, ca := range []string{"a", "a-batch", "a-interactive", "batch", "interactive"} {
		for _, class := range classes {
			n := jobConsumerName(ca, class)
			if names[n] {
				t.Errorf("consumer name %q twice", n)
			}
			names[n] = true
		}
		if n := resultConsumerName(ca); names[n] || n == resultConsumerName("") {
			t.Errorf("result consumer name %q collides", n)
		}
	}
}

func validJob() Job {
	return Job{V: 1, ID: "j1", CA: "root", Kind: KindIssue, Class: ClassBatch,
		Submitted: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), RequestID: "req-1", Payload: Payload(`{"csr":"x"}`)}
}

func TestJobValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Job){
		"version 0":        func(j *Job) { j.V = 0 },
		"version 2":        func(j *Job) { j.V = 2 },
		"empty id":         func(j *Job) { j.ID = "" },
		"id with dot":      func(j *Job) { j.ID = "a.b" },
		"long id":          func(j *Job) { j.ID = strings.Repeat("a", MaxJobIDLen+1) },
		"empty ca":         func(j *Job) { j.CA = "" },
		"wildcard ca":      func(j *Job) { j.CA = ">" },
		"kind":             func(j *Job) { j.Kind = "ISSUE" },
		"class":            func(j *Job) { j.Class = "" },
		"no time":          func(j *Job) { j.Submitted = time.Time{} },
		"request id space": func(j *Job) { j.RequestID = "a b" },
		"request id long":  func(j *Job) { j.RequestID = strings.Repeat("a", 129) },
		"no payload":       func(j *Job) { j.Payload = nil },
		"bad payload":      func(j *Job) { j.Payload = Payload(`{`) },
	} {
		j := validJob()
		mutate(&j)
		if err := j.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, j)
		}
	}
	j := validJob()
	if err := j.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := EncodeJob(&j)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeJob(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != j.ID || !got.Submitted.Equal(j.Submitted) || string(got.Payload) != string(j.Payload) {
		t.Fatalf("round trip = %+v", got)
	}
	// The wire names are part of the format: a CBOR map under the JSON
	// names, the payload a byte string.
	var wire map[string]any
	if err := cbor.Unmarshal(data, &wire); err != nil {
		t.Fatalf("not a CBOR map: %v", err)
	}
	wantKeys := []string{"v", "id", "ca", "kind", "class", "submitted", "request_id", "payload"}
	if len(wire) != len(wantKeys) {
		t.Errorf("wire keys %v, want %v", wire, wantKeys)
	}
	for _, k := range wantKeys {
		if _, ok := wire[k]; !ok {
			t.Errorf("wire form has no %q: %v", k, wire)
		}
	}
	if p, ok := wire["payload"].([]byte); !ok || string(p) != `{"csr":"x"}` {
		t.Errorf("payload on the wire: %#v", wire["payload"])
	}
	// The JSON form earlier versions wrote, still in a stream after an
	// upgrade, is read too.
	old := `{"v":1,"id":"j1","ca":"root","kind":"issue","class":"batch","submitted":"2026-01-02T03:04:05Z","request_id":"req-1","payload":{"csr":"x"}}`
	if got, err = DecodeJob([]byte(old)); err != nil || got.ID != "j1" || !got.Submitted.Equal(j.Submitted) || string(got.Payload) != `{"csr":"x"}` {
		t.Fatalf("JSON job decoded as %+v, %v", got, err)
	}
	// A field added later by a compatible writer is ignored.
	if _, err := DecodeJob([]byte(strings.Replace(old, `"v":1,`, `"v":1,"priority":3,`, 1))); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
	withExtra := map[string]any{"priority": 3}
	for k, v := range wire {
		withExtra[k] = v
	}
	extra, _ := cbor.Marshal(withExtra)
	if _, err := DecodeJob(extra); err != nil {
		t.Fatalf("unknown field in CBOR: %v", err)
	}
	// Trailing bytes after the map are refused.
	if _, err := DecodeJob(append(data[:len(data):len(data)], 0x00)); err == nil {
		t.Fatal("DecodeJob accepted trailing bytes")
	}
}

// TestPayloadInJSON checks how a payload appears in a dead letter (JSON):
// a JSON payload as itself, a CBOR one in base64, each read back as it was.
func TestPayloadInJSON(t *testing.T) {
	cborPayload, _ := cbor.Marshal(map[string]string{"csr": "x"})
	for name, p := range map[string]Payload{
		"json":    Payload(`{"csr":"x"}`),
		"cbor":    Payload(cborPayload),
		"omitted": Payload(`"omitted: 12 bytes"`),
		"nil":     nil,
	} {
		data, err := json.Marshal(DeadLetter{V: 1, Job: &Job{ID: "j", Payload: p}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "json" && !strings.Contains(string(data), `"payload":{"csr":"x"}`) {
			t.Errorf("JSON payload not written as itself: %s", data)
		}
		d, err := DecodeDeadLetter(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(d.Job.Payload) != string(p) {
			t.Errorf("%s: payload read back as %q, want %q", name, d.Job.Payload, p)
		}
	}
}

func TestResultValidate(t *testing.T) {
	ok := Result{V: 1, JobID: "j1", CA: "root", Kind: KindCRL, OK: true, Finished: time.Now()}
	fail := Result{V: 1, JobID: "j1", CA: "root", Kind: KindCRL, Error: "policy", Permanent: true, Finished: time.Now()}
	for _, r := range []Result{ok, fail} {
		if err := r.Validate(); err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
	}
	for name, mutate := range map[string]func(*Result){
		"version":            func(r *Result) { r.V = 9 },
		"job id":             func(r *Result) { r.JobID = "*" },
		"ca":                 func(r *Result) { r.CA = "a.b" },
		"kind":               func(r *Result) { r.Kind = "" },
		"success with error": func(r *Result) { r.Error = "x" },
		"success permanent":  func(r *Result) { r.Permanent = true },
		"bad payload":        func(r *Result) { r.Payload = Payload(`nope`) },
		"no time":            func(r *Result) { r.Finished = time.Time{} },
		"failure no error":   func(r *Result) { r.OK = false },
	} {
		r := ok
		mutate(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, r)
		}
	}
}

func TestDecodeRejectsOversizedMessages(t *testing.T) {
	big := make([]byte, MaxDecodeSize+1)
	if _, err := DecodeJob(big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("DecodeJob(oversized) = %v", err)
	}
	if _, err := DecodeResult(big); err == nil {
		t.Fatal("DecodeResult accepted an oversized message")
	}
}

func FuzzDecodeJob(f *testing.F) {
	j := validJob()
	data, _ := EncodeJob(&j)
	f.Add(data)
	data, _ = json.Marshal(&j)
	f.Add(data)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"id":"a.b","ca":"*","kind":"issue","class":"batch","submitted":"2026-01-02T03:04:05Z","payload":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"payload":{"a":[1,2,{"b":null}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := DecodeJob(data)
		if err != nil {
			return
		}
		// Anything accepted is safe to put in a subject and re-encodes to
		// an accepted job.
		if !ValidToken(j.CA, MaxCANameLen) || !ValidToken(j.ID, MaxJobIDLen) || strings.ContainsAny(j.Subject(), "*> ") {
			t.Fatalf("accepted unsafe job %+v", j)
		}
		again, _ := EncodeJob(&j)
		if _, err := DecodeJob(again); err != nil {
			t.Fatalf("re-encoded job refused: %v", err)
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	r := Result{V: 1, JobID: "j1", CA: "root", Kind: KindIssue, OK: true, Payload: Payload(`{"cert":"x"}`), Finished: time.Now()}
	data, _ := EncodeResult(&r)
	f.Add(data)
	data, _ = json.Marshal(&r)
	f.Add(data)
	f.Add([]byte(`{"v":1,"job_id":"j","ca":"c","kind":"cose","ok":false,"error":"e","finished":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeResult(data)
		if err != nil {
			return
		}
		if !ValidToken(r.CA, MaxCANameLen) || !ValidToken(r.JobID, MaxJobIDLen) || (!r.OK && r.Error == "") {
			t.Fatalf("accepted invalid result %+v", r)
		}
	})
}
