package queue

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/qpki/qpki/internal/codec"
)

// Message format versions. A reader refuses a version it does not know
// rather than guess at its meaning; fields added later in a compatible
// way keep the version and are ignored by older readers.
//
// Jobs and results are CBOR maps under their JSON field names (package
// codec), read as JSON objects too: the form earlier versions wrote, still
// found in the streams after an upgrade. Dead letters, read by people,
// stay JSON.
const (
	JobVersion        = 1
	ResultVersion     = 1
	DeadLetterVersion = 1
)

// MaxDecodeSize bounds any message this package decodes, whatever the
// stream's own limit (NATS itself refuses payloads over 64 MiB).
const MaxDecodeSize = 64 << 20

// maxRequestIDLen bounds Job.RequestID, which ends up in logs.
const maxRequestIDLen = 128

// Job is one unit of signing work. It carries everything the worker needs
// except the private key; Payload is kind-specific and opaque here.
type Job struct {
	V         int       `json:"v"`
	ID        string    `json:"id"` // also the Nats-Msg-Id: de-duplicates re-publishing
	CA        string    `json:"ca"`
	Kind      string    `json:"kind"`  // KindIssue, KindCRL, KindCOSE or KindOCSP
	Class     string    `json:"class"` // ClassInteractive or ClassBatch
	Submitted time.Time `json:"submitted"`
	RequestID string    `json:"request_id,omitempty"` // carried from the front-end for logs
	Payload   Payload   `json:"payload"`
	// Republished marks a job published again (by the sweeper, or for a
	// client's retry) after its first copy may have left the stream: a
	// worker checks for a stored result before it signs this copy.
	Republished bool `json:"republished,omitempty"`
}

// Payload is a job's or result's kind-specific content (package jobspec),
// opaque to the queue: a CBOR map, or a JSON object from an earlier
// version. In a message it is a CBOR byte string; in JSON (a dead letter)
// a JSON payload appears as itself and a CBOR one in base64.
type Payload []byte

// MarshalJSON writes a JSON payload as it is and any other in base64.
func (p Payload) MarshalJSON() ([]byte, error) {
	switch {
	case p == nil:
		return []byte("null"), nil
	case json.Valid(p):
		return p, nil
	}
	return json.Marshal([]byte(p))
}

// UnmarshalJSON reads what MarshalJSON wrote: a JSON object (or any value
// but a base64 string) is kept as it is.
func (p *Payload) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*p = nil
		return nil
	}
	var s string
	if json.Unmarshal(data, &s) == nil {
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			*p = b
			return nil
		}
	}
	*p = append(Payload(nil), data...)
	return nil
}

// Subject is the subject the job is published on.
func (j *Job) Subject() string { return JobSubject(j.CA, j.Kind, j.Class) }

// Validate checks every field that the queue relies on.
func (j *Job) Validate() error {
	if err := j.validateFields(); err != nil {
		return err
	}
	if !codec.Wellformed(j.Payload) {
		return fmt.Errorf("queue: job %s: payload is not a CBOR map or JSON value", j.ID)
	}
	return nil
}

// validateFields is Validate without the scan of the payload, for a job
// just decoded: the worker decodes the payload and refuses a bad one.
func (j *Job) validateFields() error {
	if j.V != JobVersion {
		return fmt.Errorf("queue: unsupported job version %d (want %d)", j.V, JobVersion)
	}
	if err := CheckJobID(j.ID); err != nil {
		return err
	}
	if err := CheckCA(j.CA); err != nil {
		return err
	}
	if !ValidKind(j.Kind) {
		return fmt.Errorf("queue: job %s: unknown kind %q", j.ID, j.Kind)
	}
	if !ValidClass(j.Class) {
		return fmt.Errorf("queue: job %s: unknown class %q", j.ID, j.Class)
	}
	if j.Submitted.IsZero() {
		return fmt.Errorf("queue: job %s: no submission time", j.ID)
	}
	if err := checkRequestID(j.RequestID); err != nil {
		return fmt.Errorf("queue: job %s: %w", j.ID, err)
	}
	if len(j.Payload) == 0 {
		return fmt.Errorf("queue: job %s: no payload", j.ID)
	}
	return nil
}

func checkRequestID(s string) error {
	if len(s) > maxRequestIDLen {
		return fmt.Errorf("request id longer than %d bytes", maxRequestIDLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return errors.New("request id has a character outside printable ASCII")
		}
	}
	return nil
}

// EncodeJob encodes a job message.
func EncodeJob(j *Job) ([]byte, error) { return codec.Marshal(j) }

// EncodeResult encodes a result message.
func EncodeResult(r *Result) ([]byte, error) { return codec.Marshal(r) }

// DecodeJob parses and validates a job message.
func DecodeJob(data []byte) (Job, error) {
	var j Job
	if err := decode(data, &j, "job"); err != nil {
		return Job{}, err
	}
	if err := j.validateFields(); err != nil {
		return Job{}, err
	}
	return j, nil
}

// Result is the outcome of one job. The first result stored for a job id
// is the only one: QPKI_RESULTS keeps one message per job subject and
// refuses a second.
type Result struct {
	V         int       `json:"v"`
	JobID     string    `json:"job_id"`
	CA        string    `json:"ca"`
	Kind      string    `json:"kind"`
	OK        bool      `json:"ok"`
	Error     string    `json:"error,omitempty"`     // why, when !OK
	Permanent bool      `json:"permanent,omitempty"` // retrying the same request cannot succeed
	Payload   Payload   `json:"payload,omitempty"`   // kind-specific, when OK
	Finished  time.Time `json:"finished"`
	// DeadLetter marks the failure result written when the job was moved
	// to QPKI_DEAD after too many deliveries.
	DeadLetter bool `json:"dead_letter,omitempty"`
	// RequestID is the job's, carried back for the recorder's log line.
	RequestID string `json:"request_id,omitempty"`
	// Seq is the result's sequence in QPKI_RESULTS, set by Results for
	// RefuseResult; it is not part of the message.
	Seq uint64 `json:"-"`
}

// Subject is the subject the result is published on.
func (r *Result) Subject() string { return ResultSubject(r.CA, r.JobID) }

// Validate checks every field that the queue relies on.
func (r *Result) Validate() error {
	if err := r.validateFields(); err != nil {
		return err
	}
	if len(r.Payload) > 0 && !codec.Wellformed(r.Payload) {
		return fmt.Errorf("queue: result %s: payload is not a CBOR map or JSON value", r.JobID)
	}
	return nil
}

// validateFields is Validate without the scan of the payload (see
// Job.validateFields).
func (r *Result) validateFields() error {
	if r.V != ResultVersion {
		return fmt.Errorf("queue: unsupported result version %d (want %d)", r.V, ResultVersion)
	}
	if err := CheckJobID(r.JobID); err != nil {
		return err
	}
	if err := CheckCA(r.CA); err != nil {
		return err
	}
	if !ValidKind(r.Kind) {
		return fmt.Errorf("queue: result %s: unknown kind %q", r.JobID, r.Kind)
	}
	if !r.OK && r.Error == "" {
		return fmt.Errorf("queue: result %s: failure without an error", r.JobID)
	}
	if r.OK && (r.Error != "" || r.Permanent || r.DeadLetter) {
		return fmt.Errorf("queue: result %s: success with an error", r.JobID)
	}
	if r.Finished.IsZero() {
		return fmt.Errorf("queue: result %s: no finish time", r.JobID)
	}
	if err := checkRequestID(r.RequestID); err != nil {
		return fmt.Errorf("queue: result %s: %v", r.JobID, err)
	}
	return nil
}

// DecodeResult parses and validates a result message.
func DecodeResult(data []byte) (Result, error) {
	var r Result
	if err := decode(data, &r, "result"); err != nil {
		return Result{}, err
	}
	if err := r.validateFields(); err != nil {
		return Result{}, err
	}
	return r, nil
}

// DeadLetter records a job that was given up on, with the last error.
// When the job message could not be decoded at all, Job is nil and Raw
// holds the message as it was found.
type DeadLetter struct {
	V          int       `json:"v"`
	Job        *Job      `json:"job,omitempty"`
	Raw        []byte    `json:"raw,omitempty"`
	Subject    string    `json:"subject"` // the job's subject
	Error      string    `json:"error"`
	Deliveries uint64    `json:"deliveries"`
	Time       time.Time `json:"time"`
}

// DecodeDeadLetter parses a dead-letter message.
func DecodeDeadLetter(data []byte) (DeadLetter, error) {
	var d DeadLetter
	if err := decode(data, &d, "dead letter"); err != nil {
		return DeadLetter{}, err
	}
	if d.V != DeadLetterVersion {
		return DeadLetter{}, fmt.Errorf("queue: unsupported dead letter version %d (want %d)", d.V, DeadLetterVersion)
	}
	return d, nil
}

func decode(data []byte, v any, what string) error {
	if len(data) > MaxDecodeSize {
		return fmt.Errorf("queue: %s message of %d bytes is over the %d-byte limit", what, len(data), MaxDecodeSize)
	}
	if err := codec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("queue: malformed %s message: %w", what, err)
	}
	return nil
}
