package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// resultRetryDelay is how long a result waits before it is offered again
// after the handler failed on it.
const resultRetryDelay = time.Second

// resultsAckWait is the recorder consumer's AckWait: after a crash of the
// recorder's process, the results it had received come back this soon to
// its successor. A batch being recorded is kept in progress meanwhile.
const resultsAckWait = DefaultAckWait

// keepInProgress sends InProgress for msgs every interval until the
// returned function is called; that function returns once no more
// InProgress can be sent, so that none follows the ack or nak.
func keepInProgress(msgs []jetstream.Msg, every time.Duration) func() {
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				for _, m := range msgs {
					m.InProgress()
				}
			case <-stop:
				return
			}
		}
	}()
	return func() {
		close(stop)
		<-stopped
	}
}

// Results feeds the stored results of one CA (of all CAs when ca is "")
// to handler, one at a time, through a durable consumer: this is the
// recorder, the single writer of results to the store. A result is acked
// when handler returns nil; when handler fails, the result is offered
// again a second later, so handler must be idempotent (the first result
// for a job id wins; a redelivered one is dropped). Results returns when
// ctx is done or the Queue is closed.
func (q *Queue) Results(ctx context.Context, ca string, handler func(Result) error) error {
	return q.ResultBatches(ctx, ca, 1, func(rs []Result) error {
		return handler(rs[0])
	})
}

// ResultBatches is Results for a handler that commits up to maxBatch results
// at a time (one store transaction for many results). A batch holds what
// has arrived; it never waits to fill up.
func (q *Queue) ResultBatches(ctx context.Context, ca string, maxBatch int, handler func([]Result) error) error {
	if ca != "" {
		if err := CheckCA(ca); err != nil {
			return err
		}
	}
	if maxBatch < 1 || maxBatch > 10000 {
		return errors.New("queue: result batch size must be between 1 and 10000")
	}
	// Add to loops under mu, where Close cannot be between closing and
	// waiting for the loops.
	q.mu.Lock()
	if q.isClosed() {
		q.mu.Unlock()
		return ErrClosed
	}
	q.loops.Add(1)
	q.mu.Unlock()
	defer q.loops.Done()

	msgs, stop, err := q.subscribeResults(ctx, ca, maxBatch)
	if err != nil {
		return err
	}
	defer func() { stop() }()

	batch := make([]jetstream.Msg, 0, maxBatch)
	results := make([]Result, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case m, ok := <-msgs:
			if !ok {
				// The subscription ended (its consumer was deleted or
				// re-created under it, say by another front-end starting):
				// subscribe again rather than stop recording.
				stop()
				if msgs, stop, err = q.resubscribeResults(ctx, ca, maxBatch); err != nil {
					stop = func() {}
					return err
				}
				continue
			}
			batch = append(batch, m)
		case <-ctx.Done():
			return ctx.Err()
		case <-q.closed:
			return ErrClosed
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case m, ok := <-msgs:
				if !ok {
					break gather
				}
				batch = append(batch, m)
			default:
				break gather
			}
		}
		results = results[:0]
		kept := batch[:0]
		for _, m := range batch {
			r, err := DecodeResult(m.Data())
			if err != nil {
				// It can never decode: drop it rather than block the recorder.
				q.log.Error("queue: dropping malformed result", "subject", m.Subject(), "err", err)
				m.TermWithReason("malformed result")
				continue
			}
			if md, err := m.Metadata(); err == nil {
				r.Seq = md.Sequence.Stream
			}
			results = append(results, r)
			kept = append(kept, m)
		}
		if len(results) == 0 {
			continue
		}
		keeping := keepInProgress(kept, resultsAckWait/4)
		err := handler(results)
		keeping()
		if err != nil {
			q.log.Warn("queue: recording results failed; will retry", "n", len(results), "err", err)
			for _, m := range kept {
				m.NakWithDelay(resultRetryDelay)
			}
			continue
		}
		for _, m := range kept {
			m.Ack()
		}
	}
}

// subscribeResults declares the recorder's durable consumer and feeds its
// messages into a channel, closed when the subscription ends; stop ends it.
func (q *Queue) subscribeResults(ctx context.Context, ca string, maxBatch int) (<-chan jetstream.Msg, func(), error) {
	cons, err := q.results.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       resultConsumerName(ca),
		Description:   "qpki recorder",
		FilterSubject: resultFilter(ca),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       resultsAckWait,
		MaxDeliver:    -1,
		MaxAckPending: max(2*maxBatch, 64),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("queue: recorder consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(max(2*maxBatch, 16)))
	if err != nil {
		return nil, nil, fmt.Errorf("queue: recorder consumer: %w", err)
	}
	// The iterator blocks in Next; a feeder turns it into a channel so
	// that the loop can gather a batch and watch ctx.
	msgs := make(chan jetstream.Msg, maxBatch)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				// Not the end: the iterator pulls again by itself. Stopping
				// it instead left its pull request at the server, where
				// results went unread until AckWait had passed.
				q.log.Debug("queue: recorder missed the server's heartbeats; pulling again")
				continue
			}
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					q.log.Warn("queue: recorder subscription ended", "err", err)
				}
				return
			}
			msgs <- m
		}
	}()
	stop := func() {
		it.Stop()
		for range msgs { // unblock the feeder; unacked results come back later
		}
	}
	return msgs, stop, nil
}

// resubscribeResults retries subscribeResults with a growing pause until
// it succeeds, ctx is done or the queue is closed.
func (q *Queue) resubscribeResults(ctx context.Context, ca string, maxBatch int) (<-chan jetstream.Msg, func(), error) {
	pause := 100 * time.Millisecond
	for {
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-q.closed:
			return nil, nil, ErrClosed
		}
		msgs, stop, err := q.subscribeResults(ctx, ca, maxBatch)
		if err == nil {
			return msgs, stop, nil
		}
		q.log.Warn("queue: recorder subscription", "err", err)
		pause = min(2*pause, 5*time.Second)
	}
}
