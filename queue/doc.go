// Package queue owns qpki's NATS JetStream: the embedded server or the
// connection to an external cluster, the streams, and the job, result and
// dead-letter messages that flow between enroll, the workers and the
// recorder.
//
// # Server
//
// Start with no NATSURL runs nats-server in-process with JetStream, its
// file store in <data dir>/nats, listening on 127.0.0.1 only, with one
// user per Role and subject permissions: only the front-end publishes
// jobs, only workers publish results. The front-end's and the in-process
// workers' passwords (WorkerQueue) are made at each start and never
// written; the worker user's password for other processes is generated
// at first start and kept in <data dir>/nats/credentials.json (mode 0600,
// written atomically). The server's URL is in <data dir>/nats/server.json,
// and a restart reuses its port so that connected workers find it again.
// Another local process (qpki worker) reaches it as that worker user with
// Connect(ctx, Options{EmbeddedDataDir: dir}). A lock file keeps a second
// embedded server off the same store.
//
// With NATSURL, Start and Connect join an external server or cluster,
// authenticating with a credentials file or an nkey seed and TLS, as the
// user of their role (deploy/nats). On a cluster of three or more servers
// the streams are R3.
//
// # Streams and subjects
//
//	QPKI_JOBS     qpki.jobs.<ca>.<kind>.<class>  work queue: a job leaves when acked
//	QPKI_RESULTS  qpki.results.<ca>.<job id>     one result per job, kept
//	QPKI_DEAD     qpki.dead.<ca>.<job id>        one dead letter per job, kept
//
// Kind is issue, crl or cose; class is interactive or batch. CA names and
// job ids are single subject tokens from [A-Za-z0-9_-] (ValidToken), so a
// caller's string can never add a token or a wildcard. Every stream has a
// duplicate window, and every message carries a Nats-Msg-Id (a job its job
// id, a result its job id and a hash of its bytes): publishing a job or a
// result again is harmless. QPKI_RESULTS and
// QPKI_DEAD keep at most one message per subject and refuse a second
// (discard new per subject), so the first result for a job id is the only
// one even after the duplicate window; PublishResult treats that refusal
// as success. LookupResult gets the job's result subject from the
// stream's leader, so that it sees every result already acknowledged.
// The streams are declared (created or updated) by front-ends, on every
// Start and Connect; a worker binds them, waiting for them at first.
//
// # Consuming jobs
//
// Queue.Jobs opens two durable pull consumers per CA, one per class
// (qpki-jobs-<ca>-interactive, qpki-jobs-<ca>-batch), shared by every
// worker of the CA; JobConsumer.Next serves interactive jobs first. See
// JobConsumer for the ack rules: a worker acks a job only after
// PublishResult returned, so a job is never lost and a redelivery finds
// the stored result instead of signing twice.
//
// # Dead letters
//
// A job delivered MaxDeliver times without a result goes to QPKI_DEAD
// with its last error (Delivery.Retry on the last attempt, or Next when a
// job comes back once more after its last attempt: the workers crashed
// or let AckWait run out). Its failure Result, with DeadLetter set, is
// published too, so whoever waits for the job learns that it failed; it
// is terminated in QPKI_JOBS. A message on a job subject that is not a
// valid job, or whose body names another CA, kind or class, is filed in
// QPKI_DEAD under qpki.dead.<ca>.stream-seq-<n> with no result. Because
// the first result for a job id is final, a dead-lettered request is
// retried under a new job id: enroll starts a new attempt, under a key
// of its own, when the same request comes back.
//
// # Results
//
// Queue.Results (or ResultBatches) is the recorder's durable consumer:
// one writer, acking a result after its handler committed it.
package queue
