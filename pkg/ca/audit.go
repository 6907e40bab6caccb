package ca

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/store"
)

// VerifyAudit checks the CA's audit log: the hash chain, and that every
// certificate in the store has its issuance entry, which catches a log
// whose last lines were cut off.
func (c *CA) VerifyAudit(certs []*store.Cert) (*audit.Report, error) {
	f, err := os.Open(filepath.Join(c.Dir, audit.FileName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rep, err := audit.Verify(f)
	if err != nil {
		return rep, err
	}
	for _, rec := range certs {
		if !rep.Serials[rec.Serial] {
			return rep, fmt.Errorf("certificate %s (%s) is in the store but not in the audit log: entries are missing", rec.Serial, rec.Subject)
		}
	}
	return rep, nil
}

// AuditMany appends events with one write and one sync.
func (c *CA) AuditMany(events []audit.Event) error {
	if _, err := c.Store(); err != nil {
		return err
	}
	c.mu.Lock()
	l := c.audit
	c.mu.Unlock()
	if l == nil {
		return errors.New("audit log not open")
	}
	return l.AppendMany(events)
}
