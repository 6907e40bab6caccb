package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Role is what a connection may do on NATS. Each role is a NATS user of
// its own, with subject permissions: only front-ends publish jobs, only
// workers publish results.
type Role string

const (
	// RoleFrontend is qpki serve: it declares the streams, publishes jobs,
	// records results (and refuses forged ones), keeps the JetStream store
	// and audit stream. It may not publish a result.
	RoleFrontend Role = "frontend"
	// RoleWorker is qpki worker: it binds the streams serve declared,
	// consumes jobs, and publishes results and dead letters. It may not
	// publish a job, declare or change a stream, or delete a message.
	RoleWorker Role = "worker"
)

// Permissions are a NATS user's subject permissions, as the embedded
// server sets them and deploy/nats/cluster.conf spells them out.
type Permissions struct {
	PublishAllow   []string
	PublishDeny    []string
	SubscribeAllow []string
}

// Permissions returns the subject permissions of the role's NATS user.
func (r Role) Permissions() Permissions {
	switch r {
	case RoleWorker:
		return Permissions{
			PublishAllow: []string{
				resultsPrefix + ".>", // results
				deadPrefix + ".>",    // a job given up on, or one that is not a job
				"$JS.API.INFO",
				"$JS.API.STREAM.INFO." + StreamJobs,
				"$JS.API.STREAM.INFO." + StreamResults,
				"$JS.API.STREAM.INFO." + StreamDead,
				// The shared job consumers: created or updated, read, listed (status).
				"$JS.API.CONSUMER.CREATE." + StreamJobs + ".>",
				"$JS.API.CONSUMER.DURABLE.CREATE." + StreamJobs + ".>",
				"$JS.API.CONSUMER.INFO." + StreamJobs + ".>",
				"$JS.API.CONSUMER.LIST." + StreamJobs,
				"$JS.API.CONSUMER.NAMES." + StreamJobs,
				"$JS.API.CONSUMER.MSG.NEXT." + StreamJobs + ".>",
				"$JS.ACK." + StreamJobs + ".>", // ack, nak, in progress, term
				// A redelivered job's stored result; a dead letter already filed.
				"$JS.API.STREAM.MSG.GET." + StreamResults,
				"$JS.API.STREAM.MSG.GET." + StreamDead,
			},
			SubscribeAllow: []string{"_INBOX.>"},
		}
	default:
		return Permissions{
			PublishAllow: []string{
				jobsPrefix + ".>",
				deadPrefix + ".>", // forged results, filed by the recorder
				"qpki.audit.>",    // the audit stream of --store jetstream
				"$JS.API.>",       // streams, consumers, key-value and object stores
				"$JS.ACK.>",
				"$JS.FC.>",
				"$KV.>",
				"$O.>",
			},
			PublishDeny:    []string{resultsPrefix + ".>"},
			SubscribeAllow: []string{"_INBOX.>"},
		}
	}
}

func (p Permissions) server() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.PublishAllow, Deny: p.PublishDeny},
		Subscribe: &server.SubjectPermission{Allow: p.SubscribeAllow},
	}
}

// bindStreams finds the streams that serve declared. A worker may start
// before serve has declared them (a cluster starting up): it waits for
// them, up to declareTimeout.
func (q *Queue) bindStreams(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, declareTimeout)
	defer cancel()
	pause := 100 * time.Millisecond
	for _, name := range []string{StreamJobs, StreamResults, StreamDead} {
		for {
			s, err := q.js.Stream(ctx, name)
			if err == nil {
				switch name {
				case StreamJobs:
					q.jobs = s
				case StreamResults:
					q.results = s
				case StreamDead:
					q.dead = s
				}
				break
			}
			if !errors.Is(err, jetstream.ErrStreamNotFound) && !isTransient(err) {
				return fmt.Errorf("queue: binding stream %s: %w", name, err)
			}
			q.log.Info("queue: waiting for qpki serve to declare the streams", "stream", name, "err", err)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return fmt.Errorf("queue: stream %s not found (workers bind the streams that qpki serve declares: is it running against this NATS?): %w", name, err)
			}
			pause = min(2*pause, 5*time.Second)
		}
	}
	return nil
}
