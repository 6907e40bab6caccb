package audit

import (
	"bytes"
	"encoding/json"
	"sync"
)

// An issuance is audited before its certificate is stored, so that no
// certificate is ever stored unaudited. A recorder that dies between the
// two leaves the entry without the certificate; the result is redelivered
// and recorded again, by another front-end or by the same one restarted.
// Its entry must not be appended a second time: the log would say the
// certificate was issued twice. Entries that name a job therefore carry
// an idempotency key, and a log skips an event whose key one of its
// recent entries holds.

// Key is the idempotency key of an event: its kind, its job and, when
// the fields name one, the object's SHA-256 (a job signed twice yields
// two different certificates, each of which must be audited). Events
// that name no job (CLI issuance, CA changes) have none and are never
// skipped.
func Key(event string, fields map[string]any) string {
	job, _ := fields["job_id"].(string)
	if job == "" {
		return ""
	}
	sum, _ := fields["sha256"].(string)
	return event + "\n" + job + "\n" + sum
}

// RecentSize is how many keys a log remembers: far more than the entries
// appended between a recorder's crash and the redelivery of its results
// (an acknowledgement wait of seconds).
const RecentSize = 1 << 16

// TailBytes is how much of a log's end is read at open to learn the keys
// of the last entries, those a crashed recorder may have just written.
const TailBytes = 8 << 20

// Recent is a bounded set of the keys of a log's latest entries, oldest
// forgotten first.
type Recent struct {
	mu   sync.Mutex
	keys map[string]struct{}
	ring []string
	next int
}

// NewRecent makes a set that remembers up to n keys.
func NewRecent(n int) *Recent {
	return &Recent{keys: make(map[string]struct{}, n), ring: make([]string, n)}
}

// Add remembers key ("" is ignored).
func (r *Recent) Add(key string) {
	if key == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.keys[key]; ok {
		return
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.keys, old)
	}
	r.ring[r.next] = key
	r.next = (r.next + 1) % len(r.ring)
	r.keys[key] = struct{}{}
}

// Has reports whether key is remembered.
func (r *Recent) Has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.keys[key]
	return ok
}

// AddLines remembers the keys of the JSONL entries in data; lines that do
// not decode (the cut first line of a tail) are passed over.
func (r *Recent) AddLines(data []byte) {
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var e struct {
			Event  string         `json:"event"`
			Fields map[string]any `json:"fields"`
		}
		if json.Unmarshal(line, &e) == nil {
			r.Add(Key(e.Event, e.Fields))
		}
	}
}

// Fresh returns the indexes of the events that are not yet in the log:
// those whose key is neither remembered nor held by an earlier event of
// the list.
func (r *Recent) Fresh(events []Event) []int {
	out := make([]int, 0, len(events))
	var batch map[string]bool
	for i, ev := range events {
		k := Key(ev.Event, ev.Fields)
		if k != "" {
			if r.Has(k) || batch[k] {
				continue
			}
			if batch == nil {
				batch = map[string]bool{}
			}
			batch[k] = true
		}
		out = append(out, i)
	}
	return out
}
