package worker

import (
	"context"
	"errors"

	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/queue"
)

// Local signs jobs in the calling process, without a queue: the pipeline
// of a CLI command when no server holds the CA. It implements enroll's
// Publisher; each published job is signed at once by one of the sessions
// and its result handed to Record, as the recorder would.
type Local struct {
	ca       *ca.CA
	o        Options
	sessions chan *worker
	record   func(queue.Result) error
}

// NewLocal opens o.Sessions signer sessions of the CA's active version.
func NewLocal(c *ca.CA, o Options, record func(queue.Result) error) (*Local, error) {
	if o.Sessions < 1 {
		o.Sessions = 1
	}
	l := &Local{ca: c, o: o, sessions: make(chan *worker, o.Sessions), record: record}
	for i := 0; i < o.Sessions; i++ {
		s, err := openSession(c, o)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.sessions <- &worker{id: i, ca: c, o: o, s: s}
	}
	return l, nil
}

// PublishJob signs the job and records its result before returning.
func (l *Local) PublishJob(ctx context.Context, job queue.Job) error {
	var w *worker
	select {
	case w = <-l.sessions:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { l.sessions <- w }()
	payload, err := w.signObserved(ctx, job)
	res, transient := result(job, payload, err)
	if transient {
		w.reopen()
		payload, err = w.signObserved(ctx, job) // one retry on a fresh session
		if res, transient = result(job, payload, err); transient {
			return errors.New(res.Error)
		}
	}
	return l.record(res)
}

// Close releases the sessions.
func (l *Local) Close() {
	for {
		select {
		case w := <-l.sessions:
			w.s.close()
		default:
			return
		}
	}
}
