// Package audit keeps a CA's audit log, <ca-dir>/audit.jsonl: one JSON line
// per issuance, revocation, CRL, key generation and CA change, each line
// carrying the SHA-256 of the line before it, so that an edit, a deletion
// or a reordering breaks the chain and Verify finds it.
//
// The log is written by the one process that holds the CA's store (the
// recorder in `qpki serve`, or the CLI when no server runs); that process
// holds the store's file lock, so there is one writer. Concurrent appends
// inside that process are group-committed: one write and one fsync for all
// the entries that arrived while the previous write was syncing.
package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// FileName is the audit log's name in the CA dir.
const FileName = "audit.jsonl"

// Event kinds.
const (
	EventInit     = "ca.init"
	EventKeyGen   = "key.generate"
	EventRotate   = "ca.rotate"
	EventActivate = "ca.activate"
	EventImport   = "ca.import-cert"
	EventIssue    = "cert.issue"
	EventRevoke   = "cert.revoke"
	EventCRL      = "crl.sign"
	EventCOSE     = "cose.sign"
)

// genesis is the "previous hash" of the first entry.
var genesis = hex.EncodeToString(make([]byte, 32))

// Entry is one line of the log.
type Entry struct {
	Seq    uint64         `json:"seq"`
	Time   time.Time      `json:"time"`
	Event  string         `json:"event"`
	Fields map[string]any `json:"fields,omitempty"`
	Prev   string         `json:"prev"`
	Hash   string         `json:"hash"`
}

// hash is the SHA-256 of the entry's JSON encoding without its hash.
func (e *Entry) hash() (string, error) {
	_, h, err := e.seal()
	return h, err
}

// seal returns the entry's line, with its hash, and the hash: one
// encoding serves both, since the hash is the encoding's last member and
// the only one that differs.
func (e *Entry) seal() (line []byte, hash string, err error) {
	c := *e
	c.Hash = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	hash = hex.EncodeToString(sum[:])
	const tail = `""}`
	if !bytes.HasSuffix(b, []byte(tail)) {
		return nil, "", errors.New("audit: unexpected entry encoding")
	}
	line = append(append(append(b[:len(b)-len(tail)], '"'), hash...), '"', '}')
	return line, hash, nil
}

// Log appends to one CA's audit log.
type Log struct {
	mu      sync.Mutex
	cond    *sync.Cond
	f       *os.File
	seq     uint64
	prev    string
	buf     []byte // entries of the batch being gathered
	gen     uint64 // number of the batch being gathered
	durable uint64 // batches below this number are on disk
	errs    map[uint64]error
	syncing bool
	closed  bool
	recent  *Recent // keys of the latest entries, so that none is appended twice
}

// Open opens (or creates) the log at path and checks its last entry, so
// that new entries chain to it.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	l := &Log{f: f, prev: genesis, errs: map[uint64]error{}, recent: NewRecent(RecentSize)}
	l.cond = sync.NewCond(&l.mu)
	last, err := lastEntry(f)
	if err == nil {
		err = l.readTail()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	if last != nil {
		l.seq, l.prev = last.Seq, last.Hash
	}
	return l, nil
}

// readTail learns the keys of the log's last entries: those a recorder
// killed before its store commit wrote, whose results come again.
func (l *Log) readTail() error {
	fi, err := l.f.Stat()
	if err != nil {
		return err
	}
	start := max(fi.Size()-TailBytes, 0)
	buf := make([]byte, fi.Size()-start)
	if _, err := l.f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if start > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:] // a cut line
		}
	}
	l.recent.AddLines(buf)
	return nil
}

// lastEntry reads the final line of the log.
func lastEntry(f *os.File) (*Entry, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil, err
	}
	size := fi.Size()
	const chunk = 64 << 10
	start := max(size-chunk, 0)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	buf = bytes.TrimRight(buf, "\n")
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[i+1:]
	} else if start > 0 {
		return nil, errors.New("last entry longer than 64 KiB")
	}
	var e Entry
	if err := json.Unmarshal(buf, &e); err != nil {
		return nil, fmt.Errorf("last entry is not valid JSON (the log was cut mid-line?): %v", err)
	}
	if h, _ := e.hash(); h != e.Hash {
		return nil, errors.New("last entry's hash does not match its content")
	}
	return &e, nil
}

// Event is one entry to append.
type Event struct {
	Event  string
	Fields map[string]any
}

// Append adds an entry and returns once it is on disk.
func (l *Log) Append(event string, fields map[string]any) error {
	return l.AppendMany([]Event{{event, fields}})
}

// AppendMany adds entries in order and returns once all are on disk,
// with one write and one sync for the lot (a recorder's batch). An event
// whose Key a recent entry holds is already in the log (its recorder died
// before storing what it audited) and is not appended again.
func (l *Log) AppendMany(events []Event) error {
	// Fields are stored as they read back (structs become maps with
	// sorted keys), so that the hash a verifier recomputes is the same.
	norm := make([]map[string]any, len(events))
	for i, ev := range events {
		f, err := normalize(ev.Fields)
		if err != nil {
			return err
		}
		norm[i] = f
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("audit log closed")
	}
	// The recorder holds a job's lock while it audits and stores it, so
	// the same key is never appended by two calls at once.
	if fresh := l.recent.Fresh(events); len(fresh) != len(events) {
		evs, ns := make([]Event, len(fresh)), make([]map[string]any, len(fresh))
		for k, i := range fresh {
			evs[k], ns[k] = events[i], norm[i]
		}
		events, norm = evs, ns
		if len(events) == 0 {
			return nil
		}
	}
	now := time.Now().UTC()
	seq, prev, buf := l.seq, l.prev, l.buf
	for i, ev := range events {
		e := Entry{Seq: seq + 1, Time: now, Event: ev.Event, Fields: norm[i], Prev: prev}
		line, h, err := e.seal()
		if err != nil {
			return err
		}
		seq, prev = e.Seq, h
		buf = append(append(buf, line...), '\n')
	}
	l.seq, l.prev, l.buf = seq, prev, buf
	mine := l.gen
	for l.durable <= mine {
		if l.syncing {
			l.cond.Wait()
			continue
		}
		// Become the syncer for the batch gathered so far.
		batch, gen := l.buf, l.gen
		l.buf, l.gen, l.syncing = nil, l.gen+1, true
		l.mu.Unlock()
		_, werr := l.f.Write(batch)
		if werr == nil {
			werr = l.f.Sync()
		}
		l.mu.Lock()
		if werr != nil {
			l.errs[gen] = werr
		}
		l.durable, l.syncing = gen+1, false
		l.cond.Broadcast()
	}
	if err, ok := l.errs[mine]; ok {
		return fmt.Errorf("audit log: %w", err)
	}
	// Remembered once on disk: an event whose write failed is appended
	// when its result is recorded again.
	for _, ev := range events {
		l.recent.Add(Key(ev.Event, ev.Fields))
	}
	return nil
}

func normalize(fields map[string]any) (map[string]any, error) {
	if fields == nil || plain(fields) {
		return fields, nil
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	err = json.Unmarshal(b, &out)
	return out, err
}

// plain reports whether fields encode as they will read back from JSON:
// strings (times encode as strings), lists of strings, booleans and
// integers that a float64 holds exactly. Those need no round trip to be
// hashed as a verifier will.
func plain(fields map[string]any) bool {
	for _, v := range fields {
		switch v := v.(type) {
		case string, bool, []string, time.Time:
		case int:
			if v > 1<<53 || v < -(1<<53) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Close closes the log file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return l.f.Close()
}

// Report is what Verify found.
type Report struct {
	Entries int            `json:"entries"`
	Events  map[string]int `json:"events"`
	Last    *Entry         `json:"last,omitempty"`
	// Serials lists the serials of cert.issue entries, for cross-checking
	// against the store.
	Serials map[string]bool `json:"-"`
}

// Verify reads a log and checks that every entry's hash matches its
// content, chains to the entry before it, and follows it in sequence.
func Verify(r io.Reader) (*Report, error) {
	rep := &Report{Events: map[string]int{}, Serials: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prev := genesis
	for n := 1; sc.Scan(); n++ {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return rep, fmt.Errorf("line %d: not a valid entry: %v", n, err)
		}
		h, err := e.hash()
		if err != nil {
			return rep, err
		}
		switch {
		case h != e.Hash:
			return rep, fmt.Errorf("line %d (seq %d): content does not match its hash: the entry was edited", n, e.Seq)
		case e.Prev != prev:
			return rep, fmt.Errorf("line %d (seq %d): does not chain to the line before: an entry was removed, inserted or moved", n, e.Seq)
		case e.Seq != uint64(n):
			return rep, fmt.Errorf("line %d: sequence number %d, want %d", n, e.Seq, n)
		}
		prev = e.Hash
		rep.Entries++
		rep.Events[e.Event]++
		if e.Event == EventIssue {
			if s, ok := e.Fields["serial"].(string); ok {
				rep.Serials[s] = true
			}
		}
		last := e
		rep.Last = &last
	}
	if err := sc.Err(); err != nil {
		return rep, err
	}
	return rep, nil
}
