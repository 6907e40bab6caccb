package ca

import (
	"errors"

	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/store"
)

// AuditLog is where a CA's audit entries go: <ca-dir>/audit.jsonl
// (*audit.Log) by default, a JetStream stream when clustered.
type AuditLog interface {
	Append(event string, fields map[string]any) error
	AppendMany(events []audit.Event) error
	Close() error
}

// UseStore makes the CA keep its records in st and its audit log in log
// instead of its bbolt file and audit.jsonl: a `qpki serve` sharing
// JetStream key-value buckets with other front-ends. It must be called
// before the store is first used; Close closes both.
func (c *CA) UseStore(st store.Store, log AuditLog) error {
	if st == nil || log == nil {
		return errors.New("ca: UseStore needs a store and an audit log")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store != nil {
		return errors.New("ca: the store is already open")
	}
	c.store, c.audit = st, log
	return nil
}
