package audit

import (
	"encoding/json"
	"errors"
	"time"
)

// Chaining exported for logs kept elsewhere than a file (a JetStream
// stream when clustered, pkg/audit/jsaudit), so that they write the very
// lines Verify checks.

// Chain seals events as the entries that follow last (nil for an empty
// log), all stamped now.
func Chain(last *Entry, events []Event, now time.Time) ([]Entry, error) {
	seq, prev := uint64(0), genesis
	if last != nil {
		seq, prev = last.Seq, last.Hash
	}
	out := make([]Entry, len(events))
	for i, ev := range events {
		fields, err := normalize(ev.Fields)
		if err != nil {
			return nil, err
		}
		e := Entry{Seq: seq + 1, Time: now.UTC(), Event: ev.Event, Fields: fields, Prev: prev}
		if e.Hash, err = e.hash(); err != nil {
			return nil, err
		}
		out[i] = e
		seq, prev = e.Seq, e.Hash
	}
	return out, nil
}

// ParseEntry decodes one line and checks that its hash matches its
// content.
func ParseEntry(line []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return nil, err
	}
	if h, err := e.hash(); err != nil || h != e.Hash {
		return nil, errors.New("audit: entry's hash does not match its content")
	}
	return &e, nil
}
