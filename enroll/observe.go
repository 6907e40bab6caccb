package enroll

import (
	"context"

	"github.com/qpki/qpki/pkg/store"
)

// Observer learns of each new job that enroll publishes and of each job
// the recorder finishes, for metrics and logs. Its methods must be fast
// and safe for concurrent use; a republished job (a client's retry) and a
// duplicate result (a redelivery) are not reported again.
type Observer interface {
	JobSubmitted(kind, profile, class string)
	// JobRecorded is given the job's record as just stored, and the
	// request id its result carried.
	JobRecorded(j *store.Job, requestID string)
}

type requestIDKey struct{}

// WithRequestID returns a context that carries the id of the front-end
// request being served. Submit puts it on the job when Request.RequestID is
// empty, so that the worker's and the recorder's log lines name it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
