package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Job classes in the order Next serves them.
var classes = [2]string{ClassInteractive, ClassBatch}

// JobConsumer hands one CA's jobs to workers, interactive before batch.
//
// Each class has its own durable pull consumer on QPKI_JOBS (filter
// qpki.jobs.<ca>.*.<class>), shared by every worker process of the CA.
// Next asks the interactive consumer first and the batch consumer only
// when no interactive job is waiting, so an interactive job waits at most
// for the jobs already in progress (plus interactiveRecheck, 2 ms). When both are empty, one long-poll
// per class (not per caller) waits at the server while any caller waits,
// and a job it receives is held for the next caller in the same order
// and wakes one waiting caller.
//
// Ack rules, for the worker:
//   - Ack only after PublishResult has returned nil: the result is then
//     durable, and a redelivery of the job (after a crash or a lost ack)
//     finds it and is acked by Next without reaching a worker.
//   - A job that can never succeed (bad request, policy refusal): publish
//     a Result with Permanent set, then Ack.
//   - A transient failure (HSM busy, session lost): Retry(ctx, err, delay),
//     which naks with that delay or, on the last allowed delivery, moves
//     the job to the dead letters with err and publishes its failure
//     result.
//
// Every job the consumer received and nobody settled yet, held for the
// next caller or handed out as a Delivery, is kept in progress: a keeper
// sends InProgress for it every quarter of AckWait. A job that waits for
// the throttle, for its signer session or in a slow HSM is therefore never
// redelivered while its worker lives, and AckWait can be short: it is how
// long the jobs of a worker that died or stopped wait before another
// worker takes them. The keeper gives up on a delivery after MaxHold (a
// signer that hangs), so that no job stays with a stuck worker for ever.
//
// A JobConsumer is safe for concurrent use by many worker goroutines.
type JobConsumer struct {
	q    *Queue
	ca   string
	opts ConsumeOptions
	cons [2]jetstream.Consumer

	ctx    context.Context // done on Close
	cancel context.CancelFunc
	polls  sync.WaitGroup

	mu      sync.Mutex
	held    [2][]*tracked         // received, not yet handed out
	live    map[*tracked]struct{} // received and not settled: held or handed out
	polling [2]bool
	// interactiveEmpty is when the interactive consumer last had nothing.
	interactiveEmpty time.Time
	waiters          int           // Next calls waiting for a job
	notify           chan struct{} // one token per job held: wakes one waiter
	redelivered      atomic.Uint64 // jobs received with NumDelivered > 1
	received         atomic.Uint64
}

// tracked is a job message received and not yet settled (acked, naked or
// terminated). Its lock orders the keeper's InProgress against the
// settling, so that a progress report never follows a Nak (it would
// replace the Nak's delay with a full AckWait).
type tracked struct {
	msg      jetstream.Msg
	received time.Time

	mu      sync.Mutex
	touched time.Time // last delivery or InProgress
	settled bool
	gaveUp  bool // held longer than MaxHold: no longer kept in progress
}

// settle runs f (Ack, Nak, Term...) on the message; from then on the
// keeper leaves it alone, whatever f returned (a failed ack means the job
// comes back after AckWait).
func (t *tracked) settle(f func(jetstream.Msg) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settled = true
	return f(t.msg)
}

// Jobs opens the job consumers of one CA, creating or updating them.
func (q *Queue) Jobs(ctx context.Context, ca string, opts ConsumeOptions) (*JobConsumer, error) {
	if q.isClosed() {
		return nil, ErrClosed
	}
	if err := CheckCA(ca); err != nil {
		return nil, err
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &JobConsumer{q: q, ca: ca, opts: opts, notify: make(chan struct{}, 64), live: make(map[*tracked]struct{})}
	for i, class := range classes {
		c.cons[i], err = q.jobs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       jobConsumerName(ca, class),
			Description:   "qpki " + class + " jobs of CA " + ca,
			FilterSubject: jobFilter(ca, class),
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       opts.AckWait,
			// Unlimited at the server: Next counts deliveries itself and
			// dead-letters, so a job is never left stranded in the work
			// queue after its last delivery.
			MaxDeliver:    -1,
			MaxAckPending: opts.MaxAckPending,
		})
		if err != nil {
			return nil, fmt.Errorf("queue: %s job consumer of CA %s: %w", class, ca, err)
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	q.mu.Lock()
	if q.isClosed() {
		q.mu.Unlock()
		c.cancel()
		return nil, ErrClosed
	}
	q.consumers[c] = struct{}{}
	q.loops.Add(1) // under mu, as for the Results loops: Close waits for it
	q.mu.Unlock()
	go c.keep()
	return c, nil
}

// keep sends InProgress for the jobs received and not settled, each at
// least every quarter of AckWait, until the Queue is closed, or the
// consumer is closed and every delivery it handed out is settled (a
// worker stopping finishes the jobs in hand).
func (c *JobConsumer) keep() {
	defer c.q.loops.Done()
	every := c.opts.AckWait / 4
	t := time.NewTicker(every / 2)
	defer t.Stop()
	var live []*tracked
	for {
		select {
		case <-t.C:
		case <-c.q.closed:
			return
		}
		c.mu.Lock()
		live = live[:0]
		for m := range c.live {
			live = append(live, m)
		}
		done := c.ctx.Err() != nil && len(live) == 0
		c.mu.Unlock()
		if done {
			return
		}
		now := time.Now()
		for _, m := range live {
			c.touch(m, now, every)
		}
	}
}

// touch reports progress on m when it was last touched every ago or
// more. A delivery past MaxHold is given up on: it comes back after
// AckWait; a held job past it is given back at once.
func (c *JobConsumer) touch(m *tracked, now time.Time, every time.Duration) {
	if !m.mu.TryLock() {
		return // being settled
	}
	defer m.mu.Unlock()
	if m.settled || m.gaveUp || now.Sub(m.touched) < every {
		return
	}
	if now.Sub(m.received) >= c.opts.MaxHold {
		m.gaveUp = true
		c.q.log.Warn("queue: a job was held too long; it goes back to the queue", "ca", c.ca,
			"subject", m.msg.Subject(), "held", now.Sub(m.received).Round(time.Second))
		return
	}
	if err := m.msg.InProgress(); err != nil {
		c.q.log.Debug("queue: reporting progress", "ca", c.ca, "err", err)
		return
	}
	m.touched = now
}

// track starts keeping a received message in progress.
func (c *JobConsumer) track(m jetstream.Msg) *tracked {
	now := time.Now()
	t := &tracked{msg: m, received: now, touched: now}
	c.received.Add(1)
	if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 {
		c.redelivered.Add(1)
	}
	c.mu.Lock()
	c.live[t] = struct{}{}
	c.mu.Unlock()
	return t
}

// settle settles t with f and stops keeping it in progress.
func (c *JobConsumer) settle(t *tracked, f func(jetstream.Msg) error) error {
	err := t.settle(f)
	c.mu.Lock()
	delete(c.live, t)
	c.mu.Unlock()
	return err
}

// Received counts the job messages this consumer received, and of them
// those that were delivered before (to this or another worker: after a
// crash, a Nak, an AckWait that ran out).
func (c *JobConsumer) Received() (total, redelivered uint64) {
	return c.received.Load(), c.redelivered.Load()
}

// Delivery is one delivery of a job to a worker.
type Delivery struct {
	Job Job
	// NumDelivered counts deliveries of this job, this one included.
	NumDelivered uint64
	// MaxDeliver is the consumer's limit: the delivery with
	// NumDelivered == MaxDeliver is the last one.
	MaxDeliver int

	t *tracked
	c *JobConsumer
	q *Queue
}

// Ack removes the job from the queue. Call it only after PublishResult
// returned nil for the job.
func (d *Delivery) Ack() error { return d.c.settle(d.t, jetstream.Msg.Ack) }

// Nak asks for redelivery after delay (at once when delay ≤ 0). The
// delivery still counts towards MaxDeliver.
func (d *Delivery) Nak(delay time.Duration) error {
	return d.c.settle(d.t, func(m jetstream.Msg) error {
		if delay <= 0 {
			return m.Nak()
		}
		return m.NakWithDelay(delay)
	})
}

// InProgress resets the job's AckWait timer. The consumer does so by
// itself while the delivery is not settled; this is for a caller that
// wants to say so at once.
func (d *Delivery) InProgress() error {
	d.t.mu.Lock()
	defer d.t.mu.Unlock()
	if d.t.settled {
		return nil
	}
	d.t.touched = time.Now()
	return d.t.msg.InProgress()
}

// Term drops the job without redelivery and without a result. Prefer a
// Result with Permanent set followed by Ack, so that whoever waits
// learns why.
func (d *Delivery) Term() error {
	return d.c.settle(d.t, func(m jetstream.Msg) error { return m.TermWithReason("terminated by worker") })
}

// LastAttempt reports whether this is the last delivery before the job
// goes to the dead letters.
func (d *Delivery) LastAttempt() bool { return d.NumDelivered >= uint64(d.MaxDeliver) }

// Retry handles a transient failure: it naks the job for redelivery after
// delay, or, on the last attempt, moves it to the dead letters with cause
// as its error, publishes its failure result and terminates it.
func (d *Delivery) Retry(ctx context.Context, cause error, delay time.Duration) error {
	if !d.LastAttempt() {
		return d.Nak(delay)
	}
	msg := "unknown error"
	if cause != nil {
		msg = cause.Error()
	}
	return d.c.settle(d.t, func(m jetstream.Msg) error {
		return d.q.deadLetter(ctx, m, &d.Job, true, d.NumDelivered, msg)
	})
}

// Next returns the next job, interactive before batch, waiting until one
// arrives, ctx is done or the consumer is closed. Transient NATS errors
// (a lost connection, a leader election) are retried inside Next.
//
// Before a job reaches the caller, Next settles what needs no worker: a
// job delivered more than MaxDeliver times (its workers crashed or let
// AckWait run out) goes to the dead letters; a redelivered job whose
// result is already stored is acked; a malformed job, or one whose body
// disagrees with its subject, goes to the dead letters.
func (c *JobConsumer) Next(ctx context.Context) (*Delivery, error) {
	backoff := 50 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.ctx.Err() != nil || c.q.isClosed() {
			return nil, ErrClosed
		}
		m, err := c.take()
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
			errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("queue: jobs of CA %s: %w", c.ca, err)
		}
		if err != nil {
			c.q.log.Debug("queue: fetching jobs", "ca", c.ca, "err", err)
			if err := c.sleep(ctx, backoff); err != nil {
				return nil, err
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if m == nil {
			if err := c.wait(ctx); err != nil {
				return nil, err
			}
			continue
		}
		d, err := c.admit(ctx, m)
		if err != nil {
			c.q.log.Warn("queue: settling a job", "ca", c.ca, "subject", m.msg.Subject(), "err", err)
			c.settle(m, func(m jetstream.Msg) error { return m.NakWithDelay(time.Second) })
			continue
		}
		if d != nil {
			return d, nil
		}
	}
}

func (c *JobConsumer) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// take returns a waiting job in priority order, or nil when none waits.
func (c *JobConsumer) take() (*tracked, error) {
	for i := range classes {
		if m := c.popHeld(i); m != nil {
			return m, nil
		}
		if i == 0 && !c.interactiveDue() {
			continue
		}
		m, err := c.fetchNoWait(i)
		if m != nil || err != nil {
			return m, err
		}
		if i == 0 {
			c.mu.Lock()
			c.interactiveEmpty = time.Now()
			c.mu.Unlock()
		}
	}
	return nil, nil
}

// interactiveRecheck is how long batch jobs are taken without asking the
// interactive consumer again after it was found empty. It spares a round
// trip per batch job under load, for at most this much delay to an
// interactive job (while callers wait, the long-poll catches it at once).
const interactiveRecheck = 2 * time.Millisecond

func (c *JobConsumer) interactiveDue() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.interactiveEmpty) >= interactiveRecheck
}

// popHeld returns the oldest job held for class i. A job held past
// MaxHold (no caller came for it: the workers hang) is naked instead, for
// another worker to take.
func (c *JobConsumer) popHeld(i int) *tracked {
	c.mu.Lock()
	var stale []*tracked
	var out *tracked
	for len(c.held[i]) > 0 {
		h := c.held[i][0]
		c.held[i] = c.held[i][1:]
		if time.Since(h.received) < c.opts.MaxHold {
			out = h
			break
		}
		stale = append(stale, h)
	}
	c.mu.Unlock()
	for _, h := range stale {
		c.settle(h, jetstream.Msg.Nak)
	}
	return out
}

// fetchNoWait asks the server for up to FetchBatch jobs of class i that
// are available now, returns the first and holds the others: a fetch per
// job would cost a request and a subscription each.
func (c *JobConsumer) fetchNoWait(i int) (*tracked, error) {
	b, err := c.cons[i].FetchNoWait(min(c.opts.FetchBatch, c.opts.MaxAckPending))
	if err != nil {
		return nil, err
	}
	var first *tracked
	for m := range b.Messages() {
		if first == nil {
			first = c.track(m)
			continue
		}
		c.hold(i, c.track(m))
	}
	if first != nil {
		return first, nil
	}
	if err := b.Error(); err != nil && !isEmpty(err) {
		return nil, err
	}
	return nil, nil
}

// hold keeps a received job of class i for the next caller, and wakes a
// waiting one. After Close, the job is given back.
func (c *JobConsumer) hold(i int, m *tracked) {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		c.settle(m, jetstream.Msg.Nak)
		return
	}
	c.held[i] = append(c.held[i], m)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default: // enough wake-ups are pending already
	}
}

// isEmpty reports the pull errors that only mean "nothing for you now".
func isEmpty(err error) bool {
	return errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrMaxBytesExceeded) ||
		errors.Is(err, jetstream.ErrBatchCompleted) ||
		err != nil && strings.Contains(err.Error(), "Exceeded MaxAckPending")
}

// wait blocks until a long-poll holds a job (or may have: a token can
// be stale) or ctx is done. A job held between take and wait left its
// token in notify, so it is not missed.
func (c *JobConsumer) wait(ctx context.Context) error {
	c.mu.Lock()
	c.waiters++
	for i := range classes {
		if !c.polling[i] && c.ctx.Err() == nil {
			c.polling[i] = true
			c.polls.Add(1)
			go c.poll(i)
		}
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.waiters--
		c.mu.Unlock()
	}()
	select {
	case <-c.notify:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// poll long-polls the server for jobs of class i, one at a time, while
// any caller waits, holding each job for Next.
func (c *JobConsumer) poll(i int) {
	defer c.polls.Done()
	for {
		c.mu.Lock()
		if c.waiters == 0 || c.ctx.Err() != nil {
			c.polling[i] = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		var m jetstream.Msg
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.PollWait)
		b, err := c.cons[i].Fetch(1, jetstream.FetchContext(ctx))
		if err == nil {
			m = <-b.Messages()
			if m == nil {
				err = b.Error()
			}
		}
		cancel()
		if m != nil {
			c.hold(i, c.track(m))
			continue
		}
		if err != nil && !isEmpty(err) && !errors.Is(err, context.Canceled) && c.ctx.Err() == nil {
			c.q.log.Debug("queue: long-poll for jobs", "ca", c.ca, "class", classes[i], "err", err)
			// Do not spin on an error: let a moment pass before the next poll.
			c.sleep(context.Background(), 200*time.Millisecond)
		}
	}
}

// admit settles a received job that needs no worker, or returns it as a
// Delivery.
func (c *JobConsumer) admit(ctx context.Context, t *tracked) (*Delivery, error) {
	m := t.msg
	md, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	dead := func(job *Job, trusted bool, cause string) error {
		return c.settle(t, func(m jetstream.Msg) error {
			return c.q.deadLetter(ctx, m, job, trusted, md.NumDelivered, cause)
		})
	}
	job, err := DecodeJob(m.Data())
	if err != nil {
		return nil, dead(nil, false, err.Error())
	}
	if ca, kind, class, _ := parseJobSubject(m.Subject()); job.CA != ca || job.Kind != kind || job.Class != class {
		return nil, dead(&job, false,
			fmt.Sprintf("job %s (CA %s, %s, %s) published on subject %s", job.ID, job.CA, job.Kind, job.Class, m.Subject()))
	}
	if md.NumDelivered > uint64(c.opts.MaxDeliver) {
		return nil, dead(&job, true,
			fmt.Sprintf("no result after %d deliveries (worker crashed or let AckWait run out)", md.NumDelivered-1))
	}
	if md.NumDelivered > 1 || c.mayBeDone(job) {
		// A redelivery, or a copy of a job published again: if a worker
		// stored the result (and then died before its ack, or signed the
		// other copy), the job is done.
		if _, err := c.q.LookupResult(ctx, job.CA, job.ID); err == nil {
			return nil, c.settle(t, jetstream.Msg.Ack)
		} else if !errors.Is(err, ErrNoResult) {
			return nil, err
		}
	}
	return &Delivery{Job: job, NumDelivered: md.NumDelivered, MaxDeliver: c.opts.MaxDeliver, t: t, c: c, q: c.q}, nil
}

// mayBeDone reports a first delivery that may still have a result
// already: a job published again (by the sweeper, or for a client's
// retry) whose first copy may have been signed, or one so old that the
// stream's duplicate window no longer stops a second copy of it.
func (c *JobConsumer) mayBeDone(job Job) bool {
	return job.Republished || time.Since(job.Submitted) > c.q.opts.DuplicateWindow/2
}

// Close stops the consumer's long-polls and naks the jobs it holds; the
// durable consumers stay on the server for the next worker. Deliveries
// already handed out can still be acked until the Queue is closed.
func (c *JobConsumer) Close() {
	c.cancel()
	c.polls.Wait()
	c.mu.Lock()
	var held []*tracked
	for i := range c.held {
		held = append(held, c.held[i]...)
		c.held[i] = nil
	}
	c.mu.Unlock()
	for _, h := range held {
		c.settle(h, jetstream.Msg.Nak)
	}
	c.q.mu.Lock()
	delete(c.q.consumers, c)
	c.q.mu.Unlock()
}
