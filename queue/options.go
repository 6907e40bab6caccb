package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults.
const (
	DefaultMaxMsgSize      = 1 << 20
	DefaultDuplicateWindow = 10 * time.Minute
	DefaultMaxAckPending   = 256
	DefaultAckWait         = 5 * time.Second
	DefaultMaxDeliver      = 5
	DefaultMaxHold         = 10 * time.Minute
	DefaultFetchBatch      = 16
	DefaultPollWait        = 5 * time.Second
	DefaultRequestTimeout  = 5 * time.Second
)

// Options say where the queue lives and how its streams are shaped.
//
// With NATSURL and EmbeddedDataDir empty, Start runs an embedded
// nats-server with JetStream, its file store under DataDir/nats, on
// 127.0.0.1 only, with a user per role: the front-end's (and the
// in-process workers') with passwords made for this process only, and a
// worker user for other local processes, whose password is generated at
// first start and kept in DataDir/nats/credentials.json (mode 0600).
//
// Otherwise the queue connects as a client: to NATSURL (one URL or a
// comma-separated list) with CredsFile, NKeySeedFile and the TLS files, or
// to the embedded server of another local process through
// EmbeddedDataDir.
type Options struct {
	// DataDir holds the embedded server's store and credentials.
	DataDir string
	// Port is the embedded server's port on 127.0.0.1; 0 picks a free one.
	Port int
	// SyncAlways makes the embedded server fsync every write before it
	// acks. Without it a killed process loses nothing (the data is in the
	// OS page cache) but a power loss may lose the last writes.
	SyncAlways bool

	// NATSURL is an external server or cluster, e.g.
	// "tls://nats1:4222,tls://nats2:4222". Empty means embedded.
	NATSURL string
	// CredsFile is a NATS user credentials (JWT + nkey seed) file.
	CredsFile string
	// NKeySeedFile is a file holding a user nkey seed.
	NKeySeedFile string
	// TLSCAFile, TLSCertFile, TLSKeyFile: server CA and client certificate.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// EmbeddedDataDir is the data dir of another local qpki process that
	// runs the embedded server: the client takes the user and password
	// stored there, and, when NATSURL is empty, the URL it recorded.
	EmbeddedDataDir string
	// Name is the client connection name shown by the server.
	Name string
	// Role is what the connection does: RoleFrontend (the default; Start
	// is always one) declares the streams, RoleWorker only binds them.
	// A connection through EmbeddedDataDir is a worker: the credentials
	// stored there are the embedded server's worker user.
	Role Role

	// Replicas of each stream: 1 embedded; 0 for an external server means
	// 3 when it is part of a cluster of at least three servers, else 1.
	Replicas int
	// MaxMsgSize bounds one job or result message (default 1 MiB).
	MaxMsgSize int32
	// DuplicateWindow is how long a job or result id is remembered for
	// de-duplication (default 10 minutes).
	DuplicateWindow time.Duration
	// ResultsMaxAge drops results older than this; 0 keeps them. Within
	// the age, the first result stored for a job id is the only one.
	ResultsMaxAge time.Duration

	// RequestTimeout bounds one attempt of a publish or lookup (default
	// 5 s); transient failures are retried within the caller's context.
	RequestTimeout time.Duration

	// Logger receives the queue's (and the embedded server's) notices.
	Logger *slog.Logger
}

func (o *Options) embedded() bool { return o.NATSURL == "" && o.EmbeddedDataDir == "" }

func (o *Options) withDefaults() (Options, error) {
	c := *o
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = DefaultMaxMsgSize
	}
	if c.MaxMsgSize < 1024 || c.MaxMsgSize > 32<<20 {
		return c, errors.New("queue: MaxMsgSize must be between 1 KiB and 32 MiB")
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.DuplicateWindow < 0 || c.ResultsMaxAge < 0 || c.Replicas < 0 {
		return c, errors.New("queue: negative duplicate window, results age or replicas")
	}
	if c.ResultsMaxAge > 0 && c.ResultsMaxAge < c.DuplicateWindow {
		return c, errors.New("queue: ResultsMaxAge shorter than DuplicateWindow")
	}
	if c.Replicas > 5 {
		return c, errors.New("queue: at most 5 replicas")
	}
	if c.embedded() {
		if c.DataDir == "" {
			return c, errors.New("queue: embedded server needs a data dir")
		}
		if c.Replicas > 1 {
			return c, errors.New("queue: the embedded server has one replica")
		}
		c.Replicas = 1
	}
	if c.Port < 0 || c.Port > 65535 {
		return c, errors.New("queue: port out of range")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return c, errors.New("queue: TLS client certificate and key go together")
	}
	if c.CredsFile != "" && c.NKeySeedFile != "" {
		return c, errors.New("queue: give a credentials file or an nkey seed, not both")
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.RequestTimeout < 0 {
		return c, errors.New("queue: negative request timeout")
	}
	if c.Name == "" {
		c.Name = "qpki"
	}
	switch {
	case c.Role == "" && c.EmbeddedDataDir != "":
		c.Role = RoleWorker
	case c.Role == "":
		c.Role = RoleFrontend
	case c.Role != RoleFrontend && c.Role != RoleWorker:
		return c, fmt.Errorf("queue: unknown role %q", c.Role)
	case c.Role == RoleFrontend && c.EmbeddedDataDir != "":
		return c, errors.New("queue: the embedded server's stored credentials are a worker's: a front-end runs the server (Start) or joins a cluster (NATSURL)")
	case c.Role == RoleWorker && c.embedded():
		return c, errors.New("queue: a worker joins a server (NATSURL or EmbeddedDataDir); it does not run one")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// ConsumeOptions shape a CA's job consumers. The consumers are durable
// and shared by every worker of the CA, so the last worker to start sets
// them; give all workers of a CA the same values.
type ConsumeOptions struct {
	// MaxAckPending bounds the jobs of one class delivered and not yet
	// acked, across all workers (default 256).
	MaxAckPending int
	// AckWait is how long a delivery may go without Ack, Nak or
	// InProgress before it is redelivered (default 5 s). The consumer
	// sends InProgress for every job it holds or has handed out, so AckWait
	// only bounds how long the jobs of a worker that died (or stopped)
	// wait before another takes them; it is not a limit on signing time.
	AckWait time.Duration
	// MaxHold bounds how long one delivery is kept in progress (default
	// 10 minutes): a job held longer, by a signer that hangs, goes back to
	// the queue after AckWait, and a held job not handed out by then is
	// naked.
	MaxHold time.Duration
	// FetchBatch is how many jobs one fetch asks for (default 16): the
	// first goes to the caller, the others are held for the next callers.
	// A throttled worker asks for fewer, so that it does not keep jobs
	// that another worker could sign sooner.
	FetchBatch int
	// MaxDeliver is how many times a job is delivered before it goes to
	// the dead letters (default 5).
	MaxDeliver int
	// PollWait is how long one idle long-poll waits at the server
	// (default 5 s); it only bounds how often idle workers poll.
	PollWait time.Duration
}

func (o ConsumeOptions) withDefaults() (ConsumeOptions, error) {
	if o.MaxAckPending == 0 {
		o.MaxAckPending = DefaultMaxAckPending
	}
	if o.AckWait == 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = DefaultMaxDeliver
	}
	if o.PollWait == 0 {
		o.PollWait = DefaultPollWait
	}
	if o.MaxHold == 0 {
		o.MaxHold = DefaultMaxHold
	}
	if o.FetchBatch == 0 {
		o.FetchBatch = DefaultFetchBatch
	}
	if o.MaxAckPending < 1 || o.AckWait < time.Second || o.AckWait > time.Hour || o.MaxDeliver < 1 ||
		o.PollWait < 100*time.Millisecond || o.MaxHold < o.AckWait || o.FetchBatch < 1 || o.FetchBatch > 256 {
		return o, errors.New("queue: consume options out of range (MaxAckPending ≥ 1, 1s ≤ AckWait ≤ 1h, MaxDeliver ≥ 1, PollWait ≥ 100ms, MaxHold ≥ AckWait, 1 ≤ FetchBatch ≤ 256)")
	}
	return o, nil
}
