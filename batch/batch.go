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
	OutDir      string
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
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	if o.Concurrency < 1 {
		o.Concurrency = 64
	}
	sum := &Summary{Total: len(lines) + len(bad), Failures: bad, Failed: len(bad)}
	var done atomic.Int64
	var mu sync.Mutex
	prog := newProgress(o.Progress, o.Terminal, len(lines), start)
	stop := make(chan struct{})
	go prog.run(&done, stop)

	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < o.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				err := issueLine(ctx, p, lines[i], o.OutDir)
				mu.Lock()
				switch {
				case err == nil:
					sum.Issued++
				case errors.Is(err, errPending):
					sum.Pending++
				default:
					sum.Failed++
					sum.Failures = append(sum.Failures, Failure{Line: numbers[i], ID: lines[i].ID, Reason: err.Error()})
				}
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	for i := range lines {
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
	syncErr := atomicfile.SyncFS(o.OutDir)
	prog.finish(done.Load())
	sum.Elapsed = time.Since(start)
	sort.Slice(sum.Failures, func(i, j int) bool { return sum.Failures[i].Line < sum.Failures[j].Line })
	if syncErr != nil {
		return sum, fmt.Errorf("syncing the certificates in %s: %w", o.OutDir, syncErr)
	}
	return sum, ctx.Err()
}

var errPending = errors.New("still pending")

func issueLine(ctx context.Context, p server.Pipeline, l Line, outDir string) error {
	req := server.SubmitRequest{Profile: l.Profile, Vars: l.Vars, Key: "batch:" + l.ID, Class: queue.ClassBatch, Wait: 2 * time.Minute,
		Frontend: string(enroll.FrontendBatch)}
	if l.CSR != "" {
		req.CSR = []byte(l.CSR)
	} else {
		req.PublicKey = []byte(l.PubKey)
	}
	st, err := p.Submit(ctx, req)
	if err != nil {
		return err
	}
	switch st.State {
	case store.JobQueued:
		return errPending
	case store.JobFailed:
		return errors.New(st.Error)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: st.DER})
	// Unsynced: Run syncs them all at the end, and a certificate lost to a
	// crash before that is fetched again by running the batch again.
	return atomicfile.WriteUnsynced(filepath.Join(outDir, l.ID+".crt"), data, 0o644)
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

// Status says which lines already have their certificate in outDir.
func Status(path, outDir string) (*FileStatus, error) {
	lines, _, bad, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	st := &FileStatus{Total: len(lines) + len(bad), Invalid: len(bad)}
	for _, l := range lines {
		if hasCertificate(filepath.Join(outDir, l.ID+".crt")) {
			st.Done++
		} else {
			st.Missing++
			st.IDs = append(st.IDs, l.ID)
		}
	}
	return st, nil
}
