// Package jsaudit keeps a CA's hash-chained audit log in a JetStream
// stream, the chain of record when several `qpki serve` front-ends share
// a NATS cluster. Each message holds one or more consecutive lines of the
// same JSONL that <ca-dir>/audit.jsonl holds, so Export writes a file
// that `qpki audit verify` checks.
//
// Every append is published with the stream's expected last sequence:
// when another writer appended in between, the publish is refused, the
// writer reads the new last entry and chains to it. Two writers never
// fork the chain. The stream refuses deletes and purges.
//
// A writer reads every message appended since its own last one before it
// may append (the expected sequence forces it), so it knows the keys of
// the latest entries (audit.Key) and skips an event already in the log:
// the issuance audited by a front-end that died before storing it, whose
// result another front-end records.
package jsaudit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/pkg/audit"
)

// StreamName is the audit stream of a CA (its queue name).
func StreamName(ca string) string { return "QPKI_AUDIT_" + ca }

// Subject is the subject of a CA's audit messages.
func Subject(ca string) string { return "qpki.audit." + ca }

// maxChunk bounds one message: entries are split so that a message
// stays well under the servers' payload limit (1 MiB by default).
const maxChunk = 256 << 10

var caName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Log appends to a CA's audit stream.
type Log struct {
	js      jetstream.JetStream
	subject string
	stream  jetstream.Stream
	timeout time.Duration

	mu      sync.Mutex
	last    *audit.Entry // nil for an empty log
	lastSeq uint64       // the stream sequence of the message holding last
	closed  bool
	recent  *audit.Recent // keys of the entries up to seenSeq
	seenSeq uint64
}

// tailMsgs is how many of the stream's last messages a writer reads at
// open for their keys (one message is one recorder batch).
const tailMsgs = 4096

// Open binds to (creating when missing) the audit stream of CA ca with
// the given replicas, and reads its last entry.
func Open(ctx context.Context, js jetstream.JetStream, ca string, replicas int) (*Log, error) {
	if !caName.MatchString(ca) {
		return nil, fmt.Errorf("jsaudit: CA name %q: want 1 to 64 of [A-Za-z0-9_-]", ca)
	}
	if replicas == 0 {
		replicas = 1
	}
	// Several front-ends may start at once while the cluster elects
	// leaders: transient failures are retried for up to a minute.
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var st jetstream.Stream
	var err error
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		try, cancelTry := context.WithTimeout(octx, 10*time.Second)
		st, err = bindStream(try, js, ca, replicas)
		cancelTry()
		if err == nil || !transient(err) || octx.Err() != nil {
			break
		}
		time.Sleep(delay)
	}
	if err != nil {
		return nil, fmt.Errorf("jsaudit: stream %s: %w", StreamName(ca), err)
	}
	l := &Log{js: js, subject: Subject(ca), stream: st, timeout: 30 * time.Second, recent: audit.NewRecent(audit.RecentSize)}
	if err := l.reload(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

func bindStream(ctx context.Context, js jetstream.JetStream, ca string, replicas int) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, StreamName(ca))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        StreamName(ca),
			Description: "qpki audit log of CA " + ca + " (hash-chained JSONL)",
			Subjects:    []string{Subject(ca)},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			MaxMsgs:     -1,
			MaxBytes:    -1,
			DenyDelete:  true,
			DenyPurge:   true,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = js.Stream(ctx, StreamName(ca)) // another front-end was first
		}
	}
	return st, err
}

// reload reads the last entry from the stream leader.
func (l *Log) reload(ctx context.Context) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("jsaudit: %w", err)
	}
	seq := info.State.LastSeq
	if seq == 0 {
		l.last, l.lastSeq = nil, 0
		return nil
	}
	m, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("jsaudit: reading message %d: %w", seq, err)
	}
	data := bytes.TrimRight(m.Data, "\n")
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[i+1:]
	}
	e, err := audit.ParseEntry(data)
	if err != nil {
		return fmt.Errorf("jsaudit: last entry (message %d): %w", seq, err)
	}
	// The keys first: lastSeq never runs ahead of what has been read.
	if err := l.catchUp(ctx, seq); err != nil {
		return err
	}
	l.last, l.lastSeq = e, seq
	return nil
}

// catchUp learns the keys of the messages after seenSeq up to seq (at
// most the last tailMsgs of them).
func (l *Log) catchUp(ctx context.Context, seq uint64) error {
	from := l.seenSeq + 1
	if seq >= tailMsgs && from < seq-tailMsgs+1 {
		from = seq - tailMsgs + 1
	}
	if from > seq {
		return nil
	}
	if seq-from < 8 {
		for s := from; s <= seq; s++ {
			m, err := l.stream.GetMsg(ctx, s)
			if err != nil {
				return fmt.Errorf("jsaudit: reading message %d: %w", s, err)
			}
			l.recent.AddLines(m.Data)
		}
		l.seenSeq = seq
		return nil
	}
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return fmt.Errorf("jsaudit: reading the stream's tail: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("jsaudit: reading the stream's tail: %w", err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("jsaudit: reading the stream's tail: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		l.recent.AddLines(m.Data())
		if meta.Sequence.Stream >= seq {
			l.seenSeq = seq
			return nil
		}
	}
}

// Append adds an entry and returns once the stream has stored it.
func (l *Log) Append(event string, fields map[string]any) error {
	return l.AppendMany([]audit.Event{{Event: event, Fields: fields}})
}

// AppendMany adds entries in order, in as few messages as fit, and
// returns once the stream has stored them all.
func (l *Log) AppendMany(events []audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("audit log closed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	for len(events) > 0 {
		// Every message up to lastSeq has been read: an event whose key
		// one of them holds is in the log already.
		idx := l.recent.Fresh(events)
		fresh := make([]audit.Event, len(idx))
		for k, i := range idx {
			fresh[k] = events[i]
		}
		if len(fresh) == 0 {
			return nil
		}
		entries, err := audit.Chain(l.last, fresh, time.Now())
		if err != nil {
			return err
		}
		chunk, n, err := lines(entries)
		if err != nil {
			return err
		}
		err = l.publish(ctx, chunk, &entries[n-1])
		if errors.Is(err, errForked) {
			events = fresh
			continue // filtered and chained again after the new messages
		}
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		for _, ev := range fresh[:n] {
			l.recent.Add(audit.Key(ev.Event, ev.Fields))
		}
		l.seenSeq = l.lastSeq
		events = fresh[n:]
	}
	return nil
}

var errForked = errors.New("another writer appended first")

// publish appends one chunk whose last entry is last, on the
// condition that the stream still ends where l.last is. It returns
// errForked, with l reloaded, when another writer got there first.
func (l *Log) publish(ctx context.Context, chunk []byte, last *audit.Entry) error {
	lastHash, expect := last.Hash, l.lastSeq
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		try, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := l.js.PublishMsg(try, &nats.Msg{Subject: l.subject, Data: chunk},
			jetstream.WithExpectStream(l.stream.CachedInfo().Config.Name), jetstream.WithExpectLastSequence(l.lastSeq))
		cancel()
		if err == nil {
			l.last, l.lastSeq = last, ack.Sequence
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if wrongLastSeq(err) || transient(err) {
			// Either someone else appended, or our publish may have
			// landed without its acknowledgement reaching us: the last
			// entry tells.
			if rerr := l.reload(ctx); rerr != nil {
				if transient(rerr) {
					time.Sleep(delay)
					continue
				}
				return rerr
			}
			if l.last != nil && l.last.Hash == lastHash {
				return nil // ours, stored
			}
			if wrongLastSeq(err) || l.lastSeq != expect {
				// The stream moved on (maybe past our own chunk, stored
				// without its acknowledgement): chain again, after
				// skipping what is in it now.
				return errForked
			}
			time.Sleep(delay)
			continue
		}
		return err
	}
}

// lines encodes as many leading entries as fit in one message.
func lines(entries []audit.Entry) ([]byte, int, error) {
	var buf bytes.Buffer
	for i := range entries {
		line, err := jsonLine(&entries[i])
		if err != nil {
			return nil, 0, err
		}
		if i > 0 && buf.Len()+len(line) > maxChunk {
			return buf.Bytes(), i, nil
		}
		buf.Write(line)
	}
	return buf.Bytes(), len(entries), nil
}

func jsonLine(e *audit.Entry) ([]byte, error) {
	b, err := json.Marshal(e)
	return append(b, '\n'), err
}

func wrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// Close stops appends; the connection belongs to the caller.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}

// Export writes a CA's audit stream out as JSONL, from the first entry
// to the last stored when it starts, and returns the number of messages
// read.
func Export(ctx context.Context, js jetstream.JetStream, ca string, w io.Writer) (int, error) {
	st, err := js.Stream(ctx, StreamName(ca))
	if err != nil {
		return 0, fmt.Errorf("jsaudit: stream %s: %w", StreamName(ca), err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	end := info.State.LastSeq
	if end == 0 {
		return 0, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return 0, err
	}
	it, err := cons.Messages()
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	n := 0
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return n, fmt.Errorf("jsaudit: reading the stream: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return n, err
		}
		if _, err := w.Write(m.Data()); err != nil {
			return n, err
		}
		n++
		if meta.Sequence.Stream >= end {
			return n, nil
		}
	}
}
