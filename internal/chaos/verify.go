package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// auditResult is what the audit checks found.
type auditResult struct {
	entries  int
	issued   int               // cert.issue entries
	bySerial map[string]string // serial → sha256 of cert.issue
	problems []string
	verify   string // qpki audit verify's summary line
}

// auditCheck exports the clustered CA's audit stream, verifies the
// export's chain and the stream against the shared store (every
// certificate accounted for), and reads the export's issuances.
func (c *cluster) auditCheck(ctx context.Context, led *ledger) *auditResult {
	a := &auditResult{bySerial: map[string]string{}}
	path := filepath.Join(c.dir, "audit-export.jsonl")
	nats := []string{"--nats-url", c.natsURL, "--ca", caName}
	if _, err := c.run(ctx, nil, "", append([]string{"audit", "export", "--out", path}, nats...)...); err != nil {
		a.problems = append(a.problems, "audit export: "+err.Error())
		return a
	}
	if out, err := c.run(ctx, nil, "", "audit", "verify", "--in", path); err != nil {
		a.problems = append(a.problems, "audit verify of the export: "+err.Error())
	} else {
		a.verify = lastLineOf(out, "audit log")
	}
	if out, err := c.run(ctx, nil, "", append([]string{"audit", "verify"}, nats...)...); err != nil {
		a.problems = append(a.problems, "audit verify of the stream: "+err.Error())
	} else if l := lastLineOf(out, "audit log"); !strings.Contains(l, "accounted for") {
		a.problems = append(a.problems, "audit verify of the stream does not account for the certificates: "+l)
	} else {
		a.verify = l
	}
	f, err := os.Open(path)
	if err != nil {
		a.problems = append(a.problems, err.Error())
		return a
	}
	defer f.Close()
	jobs := map[string]string{} // job id → sha256
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Event  string         `json:"event"`
			Fields map[string]any `json:"fields"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			a.problems = append(a.problems, "audit export: a line does not parse: "+err.Error())
			continue
		}
		a.entries++
		if e.Event != "cert.issue" {
			continue
		}
		a.issued++
		serial, _ := e.Fields["serial"].(string)
		sum, _ := e.Fields["sha256"].(string)
		job, _ := e.Fields["job_id"].(string)
		serial = normSerial(serial)
		if prev, dup := a.bySerial[serial]; dup {
			if strings.EqualFold(prev, sum) {
				// A recorder killed between its audit append and its
				// store commit, its redelivered result audited again: the
				// log skips an entry it holds (audit.Key), so this is a bug.
				a.problems = append(a.problems, fmt.Sprintf("serial %s: the same certificate audited twice (%s)", serial, sum))
			} else {
				a.problems = append(a.problems, fmt.Sprintf("serial %s issued twice in the audit log (%s, %s)", serial, prev, sum))
			}
		}
		a.bySerial[serial] = strings.ToLower(sum)
		if job != "" {
			if prev, ok := jobs[job]; ok && prev != sum {
				a.problems = append(a.problems, fmt.Sprintf("job %s has two certificates in the audit log", job))
			}
			jobs[job] = sum
		}
	}
	return a
}

func normSerial(s string) string {
	s = strings.ReplaceAll(strings.ToLower(s), ":", "")
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		return s
	}
	return fmt.Sprintf("%x", n)
}

func lastLineOf(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSpace(l)
		}
	}
	return lastLine(out)
}

// runReport is the table and the failed checks.
type runReport struct {
	rows     []kindRow
	faults   []faultRow
	failures []string
	warnings []string
	audit    *auditResult
	certs    int
}

type kindRow struct {
	kind                                     reqKind
	requests, ok, refused, noAnswer, retried int
	dupCerts                                 int
}

type faultRow struct {
	kind        faultKind
	n, measured int
	p50, max    time.Duration
	stall       time.Duration
	limit       time.Duration
	notes       []string
}

func report(led *ledger, faults []*fault, au *auditResult) *runReport {
	rep := &runReport{audit: au}
	fail := func(format string, args ...any) { rep.failures = append(rep.failures, fmt.Sprintf(format, args...)) }
	rows := map[reqKind]*kindRow{}
	serials := map[string]string{} // serial → request id
	for _, r := range led.snapshot() {
		row := rows[r.kind]
		if row == nil {
			row = &kindRow{kind: r.kind}
			rows[r.kind] = row
		}
		row.requests++
		if r.retries > 0 {
			row.retried++
		}
		switch {
		case r.end.IsZero() || !r.answered:
			row.noAnswer++
			fail("%s got no answer: %s", r.id, r.err)
		case r.err != "":
			row.refused++
			fail("%s failed: %s", r.id, r.err)
		default:
			row.ok++
		}
		issuance := r.kind == kindACME || r.kind == kindEST || r.kind == kindBatch
		if !issuance {
			continue
		}
		if len(r.certs) > 1 {
			row.dupCerts++
			fail("%s (one job) was delivered %d different certificates", r.id, len(r.certs))
		}
		if r.answered && r.err == "" && len(r.certs) == 0 {
			fail("%s succeeded without a certificate", r.id)
		}
		for _, cert := range r.certs {
			rep.certs++
			s := serialHex(cert)
			if prev, dup := serials[s]; dup && prev != r.id {
				fail("serial %s delivered to %s and to %s", s, prev, r.id)
			}
			serials[s] = r.id
			sum, ok := au.bySerial[s]
			switch {
			case !ok:
				fail("%s: certificate %s is not in the audit log", r.id, s)
			case sum != "" && !strings.EqualFold(sum, fingerprint(cert.Raw)):
				fail("%s: certificate %s differs from the audit log's", r.id, s)
			}
		}
	}
	for _, k := range []reqKind{kindACME, kindEST, kindBatch, kindRevoke, kindCRL} {
		if row := rows[k]; row != nil {
			rep.rows = append(rep.rows, *row)
		}
	}
	if rows[kindACME] == nil || rows[kindEST] == nil || rows[kindBatch] == nil || rows[kindRevoke] == nil || rows[kindCRL] == nil {
		fail("not every kind of request ran")
	}
	// Every issuance in the audit log went to a client, except the
	// front-ends' own HTTPS certificates.
	var unclaimed int
	for s := range au.bySerial {
		if _, ok := serials[s]; !ok {
			unclaimed++
		}
	}
	if unclaimed > 8 {
		fail("%d certificates in the audit log that no client received (more than the front-ends' HTTPS certificates)", unclaimed)
	}
	for _, p := range au.problems {
		fail("%s", p)
	}
	for _, p := range led.problems {
		fail("%s", p)
	}

	// Recovery: from each fault to the first issuance after it.
	byKind := map[faultKind]*faultRow{}
	rec := map[faultKind][]time.Duration{}
	for _, f := range faults {
		row := byKind[f.kind]
		if row == nil {
			row = &faultRow{kind: f.kind, limit: f.kind.recoveryLimit()}
			byKind[f.kind] = row
		}
		row.n++
		f.stall = led.stallAfter(f.at)
		row.stall = max(row.stall, f.stall)
		if f.failed != "" {
			fail("%s %s: %s", f.kind, f.target, f.failed)
			row.notes = append(row.notes, f.failed)
		} else if f.note != "" && len(row.notes) < 1 {
			row.notes = append(row.notes, f.note)
		}
		if f.kind != faultDiskFull {
			if t, ok := led.firstIssuedAfter(f.at); ok {
				f.recovery, f.ok = t.Sub(f.at), true
			}
		}
		if !f.ok {
			fail("%s %s at %s: no issuance after it", f.kind, f.target, f.at.Format("15:04:05.000"))
			continue
		}
		row.measured++
		rec[f.kind] = append(rec[f.kind], f.recovery)
	}
	for _, k := range faultKinds {
		row := byKind[k]
		if row == nil {
			fail("no fault of kind %q was injected (the run is too short)", k)
			continue
		}
		ds := rec[k]
		if len(ds) > 0 {
			slices.Sort(ds)
			row.p50, row.max = ds[(len(ds)-1)/2], ds[len(ds)-1]
			if row.p50 > row.limit || row.max > row.limit {
				fail("%s: issuance back after p50 %s, max %s (limit %s)", k, round(row.p50), round(row.max), row.limit)
			}
		}
		rep.faults = append(rep.faults, *row)
	}
	return rep
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

func (rep *runReport) print(w io.Writer, cfg Config) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "\nqpki chaos run: seed %d, %s, AckWait %s\n\n", cfg.Seed, cfg.Duration, cfg.AckWait)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "requests\ttotal\tok\tfailed\tno answer\tretried\tduplicates\t")
	for _, r := range rep.rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.kind, r.requests, r.ok, r.refused, r.noAnswer, r.retried, r.dupCerts)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\ncertificates delivered: %d distinct; audit log: %d entries, %d issuances; %s\n\n", rep.certs, rep.audit.entries, rep.audit.issued, rep.audit.verify)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\tinjected\trecovery p50\tmax\tlimit\tin-flight max\tnote")
	for _, f := range rep.faults {
		note := ""
		if len(f.notes) > 0 {
			note = f.notes[0]
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", f.kind, f.n, round(f.p50), round(f.max), f.limit, round(f.stall), note)
	}
	tw.Flush()
	fmt.Fprintf(&b, "(recovery: from the fault, for a full disk from the space coming back, to the next certificate delivered;\n in-flight max: the longest an ACME or EST request in flight at the fault still took after it)\n")
	for _, w := range rep.warnings {
		fmt.Fprintf(&b, "\nwarning: %s", w)
	}
	if len(rep.failures) == 0 {
		fmt.Fprintf(&b, "\nPASS: every request answered once, one certificate per success, no serial twice, audit chain intact, every fault recovered within its limit\n")
	} else {
		fmt.Fprintf(&b, "\nFAIL: %d check(s):\n", len(rep.failures))
		for i, f := range rep.failures {
			if i == 40 {
				fmt.Fprintf(&b, "  ... and %d more\n", len(rep.failures)-40)
				break
			}
			fmt.Fprintf(&b, "  - %s\n", f)
		}
	}
	w.Write(b.Bytes())
}
