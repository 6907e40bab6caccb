// Package batch issues certificates for a file of requests, one JSON object
// a line, through the CA's pipeline. It is resumable: each line's id is its
// idempotency key, so submitting the same file again issues only what is
// missing, and the same id with a different request is reported, never
// issued twice.
package batch

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
)

// Line is one request of a batch file.
type Line struct {
	ID      string         `json:"id"`
	Profile string         `json:"profile"`
	CSR     string         `json:"csr,omitempty"`
	PubKey  string         `json:"pubkey,omitempty"`
	Vars    map[string]any `json:"vars,omitempty"`
}

// maxLine bounds one line of a batch file.
const maxLine = 1 << 20

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Options for Run.
type Options struct {
	// OutDir receives <id>.crt files, OutJSONL one outcome line per
	// request; at least one of them.
	OutDir   string
	OutJSONL string
	// Chunk is how many outcome lines OutJSONL gets per write and sync.
	Chunk       int
	Concurrency int
	// Progress receives progress reports; Terminal draws a bar.
	Progress io.Writer
	Terminal bool
}

// Summary is how a batch ended.
type Summary struct {
	Total    int           `json:"total"`
	Issued   int           `json:"issued"`
	Failed   int           `json:"failed"`
	Pending  int           `json:"pending"`
	Elapsed  time.Duration `json:"elapsed"`
	Failures []Failure     `json:"failures,omitempty"`
}

// Failure is one line that did not get a certificate.
type Failure struct {
	Line   int    `json:"line"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

// ReadFile parses a batch file. Lines that do not parse are returned as
// failures, the others as requests.
func ReadFile(path string) ([]Line, []int, []Failure, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var lines []Line
	var numbers []int
	var bad []Failure
	seen := map[string]int{}
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		var l Line
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			bad = append(bad, Failure{Line: n, Reason: "malformed JSON: " + err.Error()})
			continue
		}
		switch {
		case !idRE.MatchString(l.ID):
			bad = append(bad, Failure{Line: n, ID: l.ID, Reason: "id must be 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit"})
			continue
		case seen[l.ID] != 0:
			bad = append(bad, Failure{Line: n, ID: l.ID, Reason: fmt.Sprintf("id already used on line %d", seen[l.ID])})
			continue
		case l.Profile == "":
			bad = append(bad, Failure{Line: n, ID: l.ID, Reason: "no profile"})
			continue
		case (l.CSR == "") == (l.PubKey == ""):
			bad = append(bad, Failure{Line: n, ID: l.ID, Reason: "give exactly one of csr or pubkey"})
			continue
		}
		seen[l.ID] = n
		lines = append(lines, l)
		numbers = append(numbers, n)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	return lines, numbers, bad, nil
}

// Run submits every line and writes each certificate to OutDir/<id>.crt as
// it completes.
func Run(ctx context.Context, p server.Pipeline, path string, o Options) (*Summary, error) {
	start := time.Now()
	lines, numbers, bad, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	if o.OutDir == "" && o.OutJSONL == "" {
		return nil, errors.New("no output: give an output directory or a JSONL file")
	}
	if o.OutDir != "" {
		if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
			return nil, err
		}
	}
	if o.Concurrency < 1 {
		o.Concurrency = 64
	}
	if o.Chunk < 1 {
		o.Chunk = DefaultChunk
	}
	sum := &Summary{Total: len(lines) + len(bad), Failures: bad, Failed: len(bad)}
	var jw *jsonlWriter
	var had map[string]OutLine
	if o.OutJSONL != "" {
		if jw, had, err = openJSONL(o.OutJSONL, o.Chunk); err != nil {
			return nil, err
		}
	}
	digests := make([]string, len(lines))
	var todo []int
	for i, l := range lines {
		digests[i] = requestDigest(l)
		prev, ok := had[l.ID]
		switch {
		case !ok:
			todo = append(todo, i)
			continue
		case prev.Request != digests[i]:
			sum.Failed++
			sum.Failures = append(sum.Failures, Failure{Line: numbers[i], ID: l.ID, Reason: "id already has an outcome in " + o.OutJSONL + " for another request"})
		case prev.Error != "":
			sum.Failed++
			sum.Failures = append(sum.Failures, Failure{Line: numbers[i], ID: l.ID, Reason: prev.Error})
		default:
			sum.Issued++
			if o.OutDir != "" && !hasCertificate(filepath.Join(o.OutDir, l.ID+".crt")) {
				if err := atomicfile.WriteUnsynced(filepath.Join(o.OutDir, l.ID+".crt"), []byte(prev.PEM), 0o644); err != nil {
					if jw != nil {
						jw.close()
					}
					return nil, err
				}
			}
		}
	}
	var done atomic.Int64
	var mu sync.Mutex
	prog := newProgress(o.Progress, o.Terminal, len(todo), start)
	stop := make(chan struct{})
	go prog.run(&done, stop)

	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < o.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				st, err := issueLine(ctx, p, lines[i])
				if err == nil && o.OutDir != "" {
					// Unsynced: Run syncs them all at the end, and a
					// certificate lost to a crash before that is fetched
					// again by running the batch again.
					err = atomicfile.WriteUnsynced(filepath.Join(o.OutDir, lines[i].ID+".crt"), st.pem, 0o644)
				}
				if jw != nil && (err == nil || errors.Is(err, errRefused)) {
					ol := OutLine{ID: lines[i].ID, Request: digests[i]}
					if err == nil {
						ol.Serial, ol.PEM = st.serial, string(st.pem)
					} else {
						ol.Error = st.refusal
					}
					if werr := jw.add(ol); werr != nil {
						err = fmt.Errorf("writing %s: %w", o.OutJSONL, werr)
					}
				}
				mu.Lock()
				switch {
				case err == nil:
					sum.Issued++
				case errors.Is(err, errPending):
					sum.Pending++
				default:
					sum.Failed++
					reason := err.Error()
					if errors.Is(err, errRefused) {
						reason = st.refusal
					}
					sum.Failures = append(sum.Failures, Failure{Line: numbers[i], ID: lines[i].ID, Reason: reason})
				}
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	for _, i := range todo {
		select {
		case work <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	close(stop)
	var syncErr error
	if o.OutDir != "" {
		if err := atomicfile.SyncFS(o.OutDir); err != nil {
			syncErr = fmt.Errorf("syncing the certificates in %s: %w", o.OutDir, err)
		}
	}
	if jw != nil {
		if err := jw.close(); err != nil && syncErr == nil {
			syncErr = fmt.Errorf("writing %s: %w", o.OutJSONL, err)
		}
	}
	prog.finish(done.Load())
	sum.Elapsed = time.Since(start)
	sort.Slice(sum.Failures, func(i, j int) bool { return sum.Failures[i].Line < sum.Failures[j].Line })
	if syncErr != nil {
		return sum, syncErr
	}
	return sum, ctx.Err()
}

// DefaultChunk is how many outcome lines go to an --out-jsonl file per
// write and sync.
const DefaultChunk = 256

var (
	errPending = errors.New("still pending")
	// errRefused marks the CA's recorded refusal of a job: final for that
	// id (submitting it again returns the same failed job), so it gets an
	// outcome line; other errors (the server unreachable, a timeout) do not,
	// and the next run tries again.
	errRefused = errors.New("refused")
)

type issued struct {
	serial  string
	pem     []byte
	refusal string
}

func issueLine(ctx context.Context, p server.Pipeline, l Line) (*issued, error) {
	req := server.SubmitRequest{Profile: l.Profile, Vars: l.Vars, Key: "batch:" + l.ID, Class: queue.ClassBatch, Wait: 2 * time.Minute,
		Frontend: string(enroll.FrontendBatch)}
	if l.CSR != "" {
		req.CSR = []byte(l.CSR)
	} else {
		req.PublicKey = []byte(l.PubKey)
	}
	st, err := p.Submit(ctx, req)
	if err != nil {
		return nil, err
	}
	switch st.State {
	case store.JobQueued:
		return nil, errPending
	case store.JobFailed:
		return &issued{refusal: st.Error}, fmt.Errorf("%w: %s", errRefused, st.Error)
	}
	return &issued{serial: st.Serial, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: st.DER})}, nil
}

// WriteSummary prints a summary for people.
func WriteSummary(w io.Writer, s *Summary) {
	rate := 0.0
	if s.Elapsed > 0 {
		rate = float64(s.Issued) / s.Elapsed.Seconds()
	}
	fmt.Fprintf(w, "%d requests: %d issued, %d failed, %d pending; %s (%.0f/s)\n",
		s.Total, s.Issued, s.Failed, s.Pending, s.Elapsed.Round(time.Millisecond), rate)
	for _, f := range s.Failures {
		id := f.ID
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(w, "  line %d (%s): %s\n", f.Line, id, f.Reason)
	}
}

// FileStatus counts a batch file's requests by outcome.
type FileStatus struct {
	Total   int      `json:"total"`
	Done    int      `json:"done"`
	Refused int      `json:"refused,omitempty"`
	Missing int      `json:"missing"`
	Invalid int      `json:"invalid"`
	IDs     []string `json:"missing_ids,omitempty"`
}

// hasCertificate reports whether path holds a PEM certificate: an empty
// or damaged file counts as missing, and running the batch again rewrites
// it with the same certificate.
func hasCertificate(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	certs, err := ca.ParseCertificates(data)
	return err == nil && len(certs) > 0
}

// Status says which lines already have their certificate: in outJSONL
// when given (a torn last line counts as missing; the next submit drops
// it), else as files in outDir.
func Status(path, outDir, outJSONL string) (*FileStatus, error) {
	lines, _, bad, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	var had map[string]OutLine
	if outJSONL != "" {
		if had, _, err = readJSONL(outJSONL); err != nil {
			return nil, err
		}
	}
	st := &FileStatus{Total: len(lines) + len(bad), Invalid: len(bad)}
	for _, l := range lines {
		var ok bool
		if outJSONL != "" {
			o, found := had[l.ID]
			ok = found && o.Request == requestDigest(l)
			if ok && o.Error != "" {
				st.Refused++
				continue
			}
		} else {
			ok = hasCertificate(filepath.Join(outDir, l.ID+".crt"))
		}
		if ok {
			st.Done++
		} else {
			st.Missing++
			st.IDs = append(st.IDs, l.ID)
		}
	}
	return st, nil
}
