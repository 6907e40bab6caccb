package store

import (
	"bytes"
	"fmt"
	"time"
)

// Helpers shared by the implementations of the store interfaces (bbolt
// here, JetStream key-value in pkg/store/jskv), so that they enforce the
// same rules.

// SortByIssued sorts certificates oldest first, as List returns them.
func SortByIssued(cs []*Cert) { sortByIssued(cs) }

// ACMERetention is how long an expired ACME object stays visible (as
// expired or invalid) before it is deleted.
const ACMERetention = acmeRetention

// RetainUntil is when an authorization may be deleted.
func (a *ACMEAuthz) RetainUntil() time.Time { return a.retainUntil() }

// RetainUntil is when an order may be deleted: after its expiry and its
// certificate's, plus the retention.
func (o *ACMEOrder) RetainUntil() time.Time { return o.retainUntil() }

// CheckJobCert checks that a certificate recorded for a job carries the
// serial the job reserved.
func CheckJobCert(j *Job, c *Cert) error {
	serial, err := ParseSerial(c.Serial)
	if err != nil {
		return err
	}
	if j.Serial != "" && serial.Cmp(mustSerial(j.Serial)) != 0 {
		return fmt.Errorf("job %s: certificate serial %s is not the reserved %s", j.ID, c.Serial, j.Serial)
	}
	return nil
}

// SameCert reports whether two records are of the very same certificate
// (recording it twice is a no-op, another one under its serial is
// ErrSerialInUse).
func SameCert(a, b *Cert) bool { return bytes.Equal(a.DER, b.DER) }

// Finish applies an outcome to a queued job record: its state, error and
// result, the time, and drops the payload kept for republishing.
func (j *Job) Finish(d Finished, now time.Time) {
	j.State, j.Error, j.Result, j.Finished, j.Payload = d.State, d.Error, d.Result, now.UTC(), nil
	j.Retryable = d.State == JobFailed && d.Retryable
}
