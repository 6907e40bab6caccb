package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoResult is returned by LookupResult when no result is stored for the
// job yet.
var ErrNoResult = errors.New("queue: no result for this job yet")

// ErrClosed is returned by calls on a closed Queue or JobConsumer.
var ErrClosed = errors.New("queue: closed")

// headerRoom is what a message needs beyond its payload for its headers.
const headerRoom = 4 << 10

// Queue is a connection to the qpki streams, on the embedded server or an
// external one. It is safe for concurrent use.
type Queue struct {
	opts       Options
	log        *slog.Logger
	emb        *embeddedServer // nil when external
	nc         *nats.Conn
	js         jetstream.JetStream
	jobs       jetstream.Stream
	results    jetstream.Stream
	dead       jetstream.Stream
	url        string
	maxMsg     int // largest job or result payload accepted
	connClosed chan struct{}

	closed    chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	consumers map[*JobConsumer]struct{}
	loops     sync.WaitGroup // running Results loops and job consumers' keepers
}

// Start opens the queue: it starts the embedded server when Options name
// no external server (NATSURL and EmbeddedDataDir empty), else connects
// as Connect does. Either way it declares the streams (create or update,
// so starting again on the same store is harmless).
func Start(ctx context.Context, o Options) (*Queue, error) {
	logServer := o.Logger != nil
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if !o.embedded() {
		return connect(ctx, o)
	}
	emb, err := startEmbedded(o, logServer)
	if err != nil {
		return nil, err
	}
	// The process that runs the server talks to it without a socket.
	q, err := open(ctx, o, emb.url, emb, nats.InProcessServer(emb.srv), nats.UserInfo(emb.frontend.User, emb.frontend.Password))
	if err != nil {
		emb.stop()
		return nil, err
	}
	return q, nil
}

// Connect opens the queue as a client only, never starting a server: to
// Options.NATSURL with its credentials and TLS files, or to the embedded
// server of the local process whose data dir is Options.EmbeddedDataDir.
// A front-end declares the streams like Start; a worker binds them.
func Connect(ctx context.Context, o Options) (*Queue, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.embedded() {
		return nil, errors.New("queue: Connect needs NATSURL or EmbeddedDataDir")
	}
	return connect(ctx, o)
}

func connect(ctx context.Context, o Options) (*Queue, error) {
	url := o.NATSURL
	var nopts []nats.Option
	if o.EmbeddedDataDir != "" {
		dir := natsDir(o.EmbeddedDataDir)
		creds, err := readCredentials(filepath.Join(dir, credentialsName))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("queue: no embedded NATS server credentials in %s (has qpki serve run with this data dir?)", dir)
		}
		if err != nil {
			return nil, err
		}
		nopts = append(nopts, nats.UserInfo(creds.User, creds.Password))
		if url == "" {
			si, err := readServerInfo(dir)
			if err != nil {
				return nil, err
			}
			url = si.URL
		}
	}
	if o.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("queue: nkey seed: %w", err)
		}
		nopts = append(nopts, opt)
	}
	if o.TLSCAFile != "" {
		nopts = append(nopts, nats.RootCAs(o.TLSCAFile))
	}
	if o.TLSCertFile != "" {
		nopts = append(nopts, nats.ClientCert(o.TLSCertFile, o.TLSKeyFile))
	}
	return open(ctx, o, url, nil, nopts...)
}

// open connects to url and declares the streams.
func open(ctx context.Context, o Options, url string, emb *embeddedServer, extra ...nats.Option) (*Queue, error) {
	q := &Queue{
		opts:       o,
		log:        o.Logger,
		emb:        emb,
		connClosed: make(chan struct{}),
		closed:     make(chan struct{}),
		consumers:  make(map[*JobConsumer]struct{}),
	}
	nopts := append([]nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DrainTimeout(10 * time.Second),
		nats.ClosedHandler(func(*nats.Conn) { close(q.connClosed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				q.log.Warn("queue: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			q.log.Info("queue: reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			q.log.Warn("queue: NATS error", "err", err)
		}),
	}, extra...)
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, fmt.Errorf("queue: connecting to NATS: %w", err)
	}
	q.nc = nc
	q.url = url
	if emb == nil {
		q.url = nc.ConnectedUrlRedacted()
	}
	q.js, err = jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	q.maxMsg = int(o.MaxMsgSize)
	if mp := int(nc.MaxPayload()) - headerRoom; mp < q.maxMsg {
		q.maxMsg = mp
	}
	if q.opts.Replicas == 0 {
		q.opts.Replicas = 1
		if nc.ConnectedClusterName() != "" && len(nc.Servers()) >= 3 {
			q.opts.Replicas = 3
		}
	}
	// Streams are serve's to declare (that takes rights a worker has
	// not): a worker binds them.
	declare := q.declareStreams
	if o.Role == RoleWorker {
		declare = q.bindStreams
	}
	if err := declare(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return q, nil
}

// streamConfigs are the three streams. QPKI_JOBS is a work queue: a job
// leaves it when acked. QPKI_RESULTS and QPKI_DEAD keep one message per
// job subject and refuse a second (discard new, per subject), so the
// first result for a job id is the only one, even past the duplicate
// window.
func (q *Queue) streamConfigs() []jetstream.StreamConfig {
	o := q.opts
	return []jetstream.StreamConfig{{
		Name:              StreamJobs,
		Description:       "qpki signing jobs, " + jobsPrefix + ".<ca>.<kind>.<class>",
		Subjects:          []string{jobsPrefix + ".>"},
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		Duplicates:        o.DuplicateWindow,
		MaxMsgSize:        o.MaxMsgSize,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		Discard:           jetstream.DiscardOld,
	}, {
		Name:                 StreamResults,
		Description:          "qpki job results, " + resultsPrefix + ".<ca>.<job id>",
		Subjects:             []string{resultsPrefix + ".>"},
		Retention:            jetstream.LimitsPolicy,
		Storage:              jetstream.FileStorage,
		Replicas:             o.Replicas,
		Duplicates:           o.DuplicateWindow,
		MaxMsgSize:           o.MaxMsgSize,
		MaxMsgs:              -1,
		MaxBytes:             -1,
		MaxAge:               o.ResultsMaxAge,
		MaxMsgsPerSubject:    1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		// No direct gets: a replica that has not yet applied a result
		// would answer "none" to a read that follows its write
		// (LookupResult after PublishResult, EST's sealed key after the
		// recorder stored the certificate). Gets go to the leader.
		AllowDirect: false,
	}, {
		Name:                 StreamDead,
		Description:          "qpki dead letters, " + deadPrefix + ".<ca>.<job id>",
		Subjects:             []string{deadPrefix + ".>"},
		Retention:            jetstream.LimitsPolicy,
		Storage:              jetstream.FileStorage,
		Replicas:             o.Replicas,
		Duplicates:           o.DuplicateWindow,
		MaxMsgSize:           o.MaxMsgSize + 64<<10, // the job plus its error
		MaxMsgs:              -1,
		MaxBytes:             -1,
		MaxMsgsPerSubject:    1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		// No direct gets: a replica that has not yet applied a result
		// would answer "none" to a read that follows its write
		// (LookupResult after PublishResult, EST's sealed key after the
		// recorder stored the certificate). Gets go to the leader.
		AllowDirect: false,
	}}
}

// declareTimeout bounds the declaration of the streams at start.
const declareTimeout = 2 * time.Minute

func (q *Queue) declareStreams(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, declareTimeout)
	defer cancel()
	for _, cfg := range q.streamConfigs() {
		s, err := q.declareStream(ctx, cfg)
		if err != nil {
			return fmt.Errorf("queue: declaring stream %s: %w", cfg.Name, err)
		}
		switch cfg.Name {
		case StreamJobs:
			q.jobs = s
		case StreamResults:
			q.results = s
		case StreamDead:
			q.dead = s
		}
	}
	return nil
}

// declareStream creates or updates one stream. Processes that start
// together (front-ends and workers of a cluster) declare the same streams
// at the same instant, and a cluster can then leave every one of those
// requests unanswered although the stream gets created (seen with two
// front-ends started at once). So an attempt gets a short time, and a
// timed-out or refused one is retried, after a random pause, until the
// stream is there (an update to the same config is a no-op) or ctx ends.
func (q *Queue) declareStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	pause, wait := 100*time.Millisecond, 2*time.Second
	for {
		actx, cancel := context.WithTimeout(ctx, wait)
		s, err := q.js.CreateOrUpdateStream(actx, cfg)
		cancel()
		if err == nil {
			return s, nil
		}
		retry := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, nats.ErrNoResponders) ||
			errors.Is(err, jetstream.ErrJetStreamNotEnabled)
		if !retry || ctx.Err() != nil {
			return nil, err
		}
		q.log.Debug("queue: declaring stream, retrying", "stream", cfg.Name, "err", err)
		select {
		case <-time.After(pause/2 + rand.N(pause)):
		case <-ctx.Done():
			return nil, err
		}
		pause, wait = min(2*pause, 2*time.Second), min(2*wait, 10*time.Second)
	}
}

// WorkerQueue returns the connection this process's workers use. On the
// embedded server it is a connection of its own, as the in-process
// worker user (close it before q); for a worker's connection, or on an
// external server, it is q itself, whose user then needs the worker's
// permissions (run the workers as qpki worker, with the worker user).
// worker.Run calls it.
func (q *Queue) WorkerQueue(ctx context.Context) (*Queue, error) {
	if q.emb == nil {
		return q, nil
	}
	o := q.opts
	o.Role, o.Name = RoleWorker, o.Name+"-worker"
	wq, err := open(ctx, o, q.emb.url, nil, nats.InProcessServer(q.emb.srv), nats.UserInfo(q.emb.localWorker.User, q.emb.localWorker.Password))
	if err != nil {
		return nil, err
	}
	wq.url = q.emb.url
	return wq, nil
}

// URL is the server's client URL: for the embedded server the loopback
// URL that other local processes reach it on (with the stored
// credentials), else the URL connected to, without credentials.
func (q *Queue) URL() string { return q.url }

// Embedded reports whether this Queue runs the embedded server.
func (q *Queue) Embedded() bool { return q.emb != nil }

// Conn is the underlying NATS connection, for packages (such as a
// JetStream key-value store) that share it. Do not close it.
func (q *Queue) Conn() *nats.Conn { return q.nc }

// JetStream is the JetStream context on Conn.
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Close stops the job consumers (their undelivered held jobs are naked),
// waits for Results loops and keepers to return, drains the connection so that
// pending acks and publishes reach the server, and shuts the embedded
// server down. It is safe to call more than once.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		close(q.closed)
		q.mu.Lock()
		cs := make([]*JobConsumer, 0, len(q.consumers))
		for c := range q.consumers {
			cs = append(cs, c)
		}
		q.mu.Unlock()
		for _, c := range cs {
			c.Close()
		}
		q.loops.Wait()
		if err := q.nc.Drain(); err == nil {
			select {
			case <-q.connClosed:
			case <-time.After(15 * time.Second):
			}
		}
		q.nc.Close()
		if q.emb != nil {
			q.emb.stop()
		}
	})
	return nil
}

func (q *Queue) isClosed() bool {
	select {
	case <-q.closed:
		return true
	default:
		return false
	}
}

// PublishJob publishes a job and waits for the stream to store it. The
// job id is the message id, so publishing the same job again within the
// duplicate window stores nothing new and returns nil. A zero V or
// Submitted is filled in.
func (q *Queue) PublishJob(ctx context.Context, job Job) error {
	_, err := q.PublishJobAt(ctx, job)
	return err
}

// Published says where the stream keeps a job: its sequence, and whether
// the stream already had the job (the publish was a duplicate, within the
// duplicate window, and Seq is the first copy's).
type Published struct {
	Seq       uint64
	Duplicate bool
}

// PublishJobAt is PublishJob, returning the job's stream sequence, by
// which JobStored finds it again.
func (q *Queue) PublishJobAt(ctx context.Context, job Job) (Published, error) {
	return q.publishJob(ctx, job, job.ID)
}

// RepublishJob publishes a copy of a job whose message, at stream
// sequence lost, the stream no longer holds. The copy has a message id of
// its own: the job id's may still be in the duplicate window, which would
// drop the copy. Every caller that finds the same loss uses the same id,
// so the stream stores one copy however many publish it.
func (q *Queue) RepublishJob(ctx context.Context, job Job, lost uint64) (Published, error) {
	job.Republished = true
	return q.publishJob(ctx, job, fmt.Sprintf("%s%s%d", job.ID, copyMark, lost))
}

// copyMark joins a job id and the sequence of the lost message in the
// message id of a copy.
const copyMark = "~lost-"

func (q *Queue) publishJob(ctx context.Context, job Job, msgID string) (Published, error) {
	if q.isClosed() {
		return Published{}, ErrClosed
	}
	if job.V == 0 {
		job.V = JobVersion
	}
	if job.Submitted.IsZero() {
		job.Submitted = time.Now().UTC()
	}
	if err := job.Validate(); err != nil {
		return Published{}, err
	}
	data, err := EncodeJob(&job)
	if err != nil {
		return Published{}, fmt.Errorf("queue: job %s: %w", job.ID, err)
	}
	if len(data) > q.maxMsg {
		return Published{}, fmt.Errorf("queue: job %s is %d bytes, over the %d-byte message limit", job.ID, len(data), q.maxMsg)
	}
	var ack *jetstream.PubAck
	err = q.retry(ctx, func(ctx context.Context) (err error) {
		ack, err = q.js.PublishMsg(ctx, &nats.Msg{Subject: job.Subject(), Data: data},
			jetstream.WithMsgID(msgID), jetstream.WithExpectStream(StreamJobs))
		return err
	})
	if err != nil {
		return Published{}, fmt.Errorf("queue: publishing job %s: %w", job.ID, err)
	}
	return Published{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// JobStored reports whether QPKI_JOBS still holds job id at stream
// sequence seq: waiting for a worker or in a worker's hands. It is false
// once the job was acked (its result is then stored) or terminated, and
// when the stream lost it. The get goes to the stream's leader.
func (q *Queue) JobStored(ctx context.Context, seq uint64, id string) (bool, error) {
	if seq == 0 {
		return false, errors.New("queue: no stream sequence")
	}
	var m *jetstream.RawStreamMsg
	err := q.retry(ctx, func(ctx context.Context) (err error) {
		m, err = q.jobs.GetMsg(ctx, seq)
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: looking up job %s: %w", id, err)
	}
	// A stream that lost its last writes gives their sequences to new
	// messages: the one at seq may be another job.
	msgID := m.Header.Get(jetstream.MsgIDHeader)
	return msgID == id || strings.HasPrefix(msgID, id+copyMark), nil
}

// PublishResult stores a job's result and returns once the stream has
// acknowledged it, i.e. once it is durable (on a quorum of replicas when
// clustered). Only then may the worker ack the job. If a result for the
// job id is already stored, the new one is dropped and PublishResult
// returns nil: the first result wins (unless the recorder refuses it as
// forged: RefuseResult). A zero V or Finished is filled in.
func (q *Queue) PublishResult(ctx context.Context, r Result) error {
	if q.isClosed() {
		return ErrClosed
	}
	if r.V == 0 {
		r.V = ResultVersion
	}
	if r.Finished.IsZero() {
		r.Finished = time.Now().UTC()
	}
	if err := r.Validate(); err != nil {
		return err
	}
	data, err := EncodeResult(&r)
	if err != nil {
		return fmt.Errorf("queue: result %s: %w", r.JobID, err)
	}
	if len(data) > q.maxMsg {
		return fmt.Errorf("queue: result of job %s is %d bytes, over the %d-byte message limit", r.JobID, len(data), q.maxMsg)
	}
	return q.publishOnce(ctx, StreamResults, r.Subject(), resultMsgID(r.JobID, data), data)
}

// resultMsgID de-duplicates a worker's retries of one publish (the same
// bytes), but not another result for the same job: a forged result that
// the recorder refused and deleted must not take the genuine one's place
// in the duplicate window.
func resultMsgID(jobID string, data []byte) string {
	sum := sha256.Sum256(data)
	return jobID + "." + hex.EncodeToString(sum[:8])
}

// publishOnce publishes to a stream that keeps one message per subject;
// finding one already there is success.
func (q *Queue) publishOnce(ctx context.Context, stream, subject, id string, data []byte) error {
	err := q.retry(ctx, func(ctx context.Context) error {
		_, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data},
			jetstream.WithMsgID(id), jetstream.WithExpectStream(stream))
		if isSubjectFull(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: publishing to %s for job %s: %w", stream, id, err)
	}
	return nil
}

// maxRetryTime bounds how long one call retries transient failures.
const maxRetryTime = time.Minute

// retry runs op, each attempt bounded by the request timeout, and
// retries transient failures (a timeout, a node lost, a leader election)
// until ctx is done or maxRetryTime has passed. Every operation retried
// here is idempotent: publishes carry their message id.
func (q *Queue) retry(ctx context.Context, op func(context.Context) error) error {
	giveUp := time.Now().Add(maxRetryTime)
	backoff := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, q.opts.RequestTimeout)
		err := op(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !isTransient(err) || time.Now().After(giveUp) {
			return err
		}
		q.log.Debug("queue: retrying", "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// isTransient reports failures that another attempt may not meet.
func isTransient(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503 // JetStream not ready, no quorum yet
	}
	return false
}

// isSubjectFull reports the error of a discard-new-per-subject stream
// that already holds its one message for the subject.
func isSubjectFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10077 && // JSStreamStoreFailedF
		strings.Contains(apiErr.Description, "maximum messages per subject")
}

// LookupResult returns the stored result of one job, or ErrNoResult.
// It is one get, from the stream's leader, of the last message on the
// job's result subject.
func (q *Queue) LookupResult(ctx context.Context, ca, jobID string) (Result, error) {
	if err := CheckCA(ca); err != nil {
		return Result{}, err
	}
	if err := CheckJobID(jobID); err != nil {
		return Result{}, err
	}
	var m *jetstream.RawStreamMsg
	err := q.retry(ctx, func(ctx context.Context) (err error) {
		m, err = q.results.GetLastMsgForSubject(ctx, ResultSubject(ca, jobID))
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Result{}, ErrNoResult
	}
	if err != nil {
		return Result{}, fmt.Errorf("queue: looking up the result of job %s: %w", jobID, err)
	}
	return DecodeResult(m.Data)
}

// LookupDeadLetter returns the dead letter of one job, or ErrNoResult
// when the job was not dead-lettered.
func (q *Queue) LookupDeadLetter(ctx context.Context, ca, jobID string) (DeadLetter, error) {
	if err := CheckCA(ca); err != nil {
		return DeadLetter{}, err
	}
	if err := CheckJobID(jobID); err != nil {
		return DeadLetter{}, err
	}
	var m *jetstream.RawStreamMsg
	err := q.retry(ctx, func(ctx context.Context) (err error) {
		m, err = q.dead.GetLastMsgForSubject(ctx, DeadSubject(ca, jobID))
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, ErrNoResult
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("queue: looking up the dead letter of job %s: %w", jobID, err)
	}
	return DecodeDeadLetter(m.Data)
}

// DeadLetters returns up to limit of the newest dead letters of one CA
// (all CAs when ca is ""), newest first. It reads back from the end of
// the stream, over a window that grows until it holds limit of them, so
// a long history of dead letters is not read whole.
func (q *Queue) DeadLetters(ctx context.Context, ca string, limit int) ([]DeadLetter, error) {
	if ca != "" {
		if err := CheckCA(ca); err != nil {
			return nil, err
		}
	}
	if limit <= 0 {
		return nil, nil
	}
	info, err := q.dead.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: reading dead letters: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, nil
	}
	// Windows back from the end, each four times the last, until limit
	// letters of ca are found or the stream's start is reached.
	var out []DeadLetter // newest first
	end := last
	for window := uint64(limit); ; window *= 4 {
		start := first
		if end-first+1 > window {
			start = end - window + 1
		}
		got, err := q.readDead(ctx, ca, start, end)
		if err != nil {
			return nil, err
		}
		slices.Reverse(got)
		out = append(out, got...)
		if len(out) >= limit || start == first {
			return out[:min(limit, len(out))], nil
		}
		end = start - 1
	}
}

// readDead reads the dead letters of ca from stream sequence start to
// last, oldest first.
func (q *Queue) readDead(ctx context.Context, ca string, start, last uint64) ([]DeadLetter, error) {
	cons, err := q.dead.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{deadFilter(ca)},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
		InactiveThreshold: 5 * time.Second}) // the server drops it soon after the reading
	if err != nil {
		return nil, fmt.Errorf("queue: reading dead letters: %w", err)
	}
	var out []DeadLetter
	for {
		b, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, fmt.Errorf("queue: reading dead letters: %w", err)
		}
		n, past := 0, false
		for m := range b.Messages() {
			n++
			if md, err := m.Metadata(); err == nil && md.Sequence.Stream > last {
				past = true // written since the reading began
				continue
			}
			d, err := DecodeDeadLetter(m.Data())
			if err != nil {
				q.log.Warn("queue: skipping malformed dead letter", "subject", m.Subject(), "err", err)
				continue
			}
			out = append(out, d)
		}
		if err := b.Error(); err != nil {
			return nil, fmt.Errorf("queue: reading dead letters: %w", err)
		}
		if n == 0 || past {
			return out, nil
		}
	}
}

// deadLetter records a job that is given up on and terminates its
// delivery. For a job that was valid (job != nil, trusted), it also
// publishes the job's failure result, so that whoever waits learns the
// outcome. A message that is not a valid job, or whose body disagrees
// with its subject, is filed under its stream sequence instead of a job
// id it might have borrowed, and gets no result. Each step is idempotent,
// so a crash half-way only repeats it at the next delivery.
func (q *Queue) deadLetter(ctx context.Context, m jetstream.Msg, job *Job, trusted bool, deliveries uint64, cause string) error {
	d := DeadLetter{
		V:          DeadLetterVersion,
		Job:        job,
		Subject:    m.Subject(),
		Error:      cause,
		Deliveries: deliveries,
		Time:       time.Now().UTC(),
	}
	ca, _, _, _ := parseJobSubject(m.Subject())
	var id string
	if job != nil && trusted {
		id = job.ID
	} else {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		id = fmt.Sprintf("stream-seq-%d", md.Sequence.Stream)
		if job == nil {
			d.Raw = m.Data()
		}
	}
	d.Error = truncate(d.Error, maxErrorLen)
	data, err := json.Marshal(&d)
	if err != nil {
		return err
	}
	if len(data) > q.maxMsg {
		// Keep the record, not the bulk: a dead letter that cannot be
		// stored would leave the job coming back for ever.
		if d.Job != nil {
			j := *d.Job
			j.Payload = Payload(fmt.Sprintf(`"omitted: %d bytes"`, len(j.Payload)))
			d.Job = &j
		}
		if len(d.Raw) > 1024 {
			d.Raw = d.Raw[:1024]
		}
		if data, err = json.Marshal(&d); err != nil {
			return err
		}
	}
	if err := q.publishOnce(ctx, StreamDead, DeadSubject(ca, id), id, data); err != nil {
		return err
	}
	if job != nil && trusted {
		err := q.PublishResult(ctx, Result{
			JobID:      job.ID,
			CA:         job.CA,
			Kind:       job.Kind,
			Error:      fmt.Sprintf("dead letter after %d deliveries: %s", deliveries, d.Error),
			DeadLetter: true,
		})
		if err != nil {
			return err
		}
	}
	q.log.Warn("queue: job moved to dead letters", "id", id, "subject", m.Subject(), "deliveries", deliveries, "err", cause)
	return m.TermWithReason("dead letter")
}

// maxErrorLen bounds an error kept in a dead letter.
const maxErrorLen = 4 << 10

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
