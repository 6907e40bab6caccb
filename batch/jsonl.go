package batch

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
	"syscall"
)

// OutLine is one line of an --out-jsonl file: the outcome of one request,
// a certificate or the CA's refusal. Request is the SHA-256 of the
// request as read (its canonical JSON), so that a resumed run can tell an
// id that now names another request.
type OutLine struct {
	ID      string `json:"id"`
	Serial  string `json:"serial,omitempty"`
	PEM     string `json:"pem,omitempty"`
	Error   string `json:"error,omitempty"`
	Request string `json:"request"`
}

// requestDigest names a request independently of how its line was spelled.
func requestDigest(l Line) string {
	b, _ := json.Marshal(l) // a struct and sorted map keys: deterministic
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// readJSONL reads an output file. Whole lines (ending in a newline) are
// outcomes; bytes after the last newline are a line a crash tore while it
// was being appended, and end is where they start. A whole line that does
// not parse, or a second line for an id, means the file is not ours or was
// edited: that is an error, never silently dropped.
func readJSONL(path string) (map[string]OutLine, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]OutLine{}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	out := map[string]OutLine{}
	r := bufio.NewReaderSize(f, 64<<10)
	var end int64
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return out, end, nil // line, if any, is torn
		}
		if err != nil {
			return nil, 0, err
		}
		var o OutLine
		if err := json.Unmarshal(bytes.TrimSpace(line), &o); err != nil || o.ID == "" {
			return nil, 0, fmt.Errorf("%s: line %d is not an outcome line", path, n)
		}
		if _, dup := out[o.ID]; dup {
			return nil, 0, fmt.Errorf("%s: line %d: a second line for id %q", path, n, o.ID)
		}
		out[o.ID] = o
		end += int64(len(line))
	}
}

// jsonlWriter appends outcome lines, writing and syncing them a chunk at
// a time: a crash loses at most the unsynced chunk, whose requests are
// fetched again (idempotently) by the next run.
type jsonlWriter struct {
	mu    sync.Mutex
	f     *os.File
	buf   bytes.Buffer
	lines int
	chunk int
	err   error
}

// openJSONL locks path against a second batch writing it, drops a torn
// last line and returns the outcomes already there.
func openJSONL(path string, chunk int) (*jsonlWriter, map[string]OutLine, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: another batch is writing it", path)
	}
	done, end, err := readJSONL(path)
	if err == nil {
		err = f.Truncate(end)
	}
	if err == nil {
		_, err = f.Seek(end, io.SeekStart)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return &jsonlWriter{f: f, chunk: max(chunk, 1)}, done, nil
}

func (w *jsonlWriter) add(o OutLine) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	w.buf.WriteByte('\n')
	w.lines++
	if w.lines >= w.chunk {
		w.flushLocked()
	}
	return w.err
}

// flushLocked writes the chunk in one write and syncs it. After a failure
// every later add fails too: lines must not be skipped silently.
func (w *jsonlWriter) flushLocked() {
	if w.err == nil && w.buf.Len() > 0 {
		if _, err := w.f.Write(w.buf.Bytes()); err != nil {
			w.err = err
		} else if err := w.f.Sync(); err != nil {
			w.err = err
		}
	}
	w.buf.Reset()
	w.lines = 0
}

// close flushes the last chunk and releases the file.
func (w *jsonlWriter) close() error {
	w.mu.Lock()
	w.flushLocked()
	err := w.err
	w.mu.Unlock()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}
