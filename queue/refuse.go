package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RefuseResult takes a result the recorder refused as forged out of the
// way of the genuine one: it files the result in QPKI_DEAD under
// qpki.dead.<ca>.forged-seq-<n> (n its sequence in QPKI_RESULTS) with
// reason as its error, then deletes it from QPKI_RESULTS, whose one
// message per job would otherwise keep the worker's genuine result out.
// r must come from Results or ResultBatches (its Seq set). Both steps are
// idempotent: a refusal interrupted half-way is simply done again when
// the result is offered again.
func (q *Queue) RefuseResult(ctx context.Context, r Result, reason string) error {
	if r.Seq == 0 {
		return errors.New("queue: RefuseResult needs a result read from the stream")
	}
	raw, err := EncodeResult(&r)
	if err != nil {
		return err
	}
	id := fmt.Sprintf("forged-seq-%d", r.Seq)
	d := DeadLetter{V: DeadLetterVersion, Raw: raw, Subject: r.Subject(), Error: truncate(reason, maxErrorLen), Time: time.Now().UTC()}
	if err := q.publishDead(ctx, DeadSubject(r.CA, id), id, &d); err != nil {
		return err
	}
	err = q.retry(ctx, func(ctx context.Context) error { return q.results.DeleteMsg(ctx, r.Seq) })
	if err != nil {
		// Deleted already (by an earlier attempt, or another front-end's
		// recorder)?
		if _, gerr := q.results.GetMsg(ctx, r.Seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil
		}
		return fmt.Errorf("queue: deleting the forged result of job %s: %w", r.JobID, err)
	}
	return nil
}

// publishDead stores a dead letter with no job, its raw message cut short
// when the whole would not fit in a message.
func (q *Queue) publishDead(ctx context.Context, subject, id string, d *DeadLetter) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if len(data) > q.maxMsg && len(d.Raw) > 1024 {
		short := *d
		short.Raw = d.Raw[:1024]
		if data, err = json.Marshal(&short); err != nil {
			return err
		}
	}
	return q.publishOnce(ctx, StreamDead, subject, id, data)
}
