package ca

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// CA is an opened CA directory.
type CA struct {
	Dir  string
	Meta *Meta
	// OnRevoke, when set, is called after each revocation (a server
	// publishing CRLs at once).
	OnRevoke func(*store.Cert)

	mu       sync.Mutex
	store    store.Store
	audit    AuditLog
	policies map[string]policyEntry
	certs    map[string]*x509.Certificate
}

// Open reads a CA directory's metadata. It does not touch keys or the
// store, so it works while another process holds them.
func Open(dir string) (*CA, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	m, err := readMeta(abs)
	if err != nil {
		return nil, err
	}
	return &CA{Dir: abs, Meta: m}, nil
}

// Name is a short name for the CA, used in queue subjects and logs.
func (c *CA) Name() string { return filepath.Base(c.Dir) }

// Store opens the CA's certificate store on first use. Whoever holds the
// store (its file lock) also holds the audit log: there is one writer.
func (c *CA) Store() (store.Store, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store == nil {
		s, err := store.OpenBolt(filepath.Join(c.Dir, StoreFile))
		if err != nil {
			return nil, err
		}
		l, err := audit.Open(filepath.Join(c.Dir, audit.FileName))
		if err != nil {
			s.Close()
			return nil, err
		}
		c.store, c.audit = s, l
	}
	return c.store, nil
}

// Audit appends an event to the CA's audit log, on disk before it
// returns.
func (c *CA) Audit(event string, fields map[string]any) error {
	return c.AuditMany([]audit.Event{{Event: event, Fields: fields}})
}

// Close releases the store.
func (c *CA) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store == nil {
		return nil
	}
	err := errors.Join(c.store.Close(), c.audit.Close())
	c.store, c.audit = nil, nil
	return err
}

// Version returns a version by name, or the active one for "".
func (c *CA) Version(name string) (string, *Version, error) {
	if name == "" {
		name = c.Meta.Active
		if name == "" {
			return "", nil, errors.New("the CA has no active version (waiting for `qpki ca import-cert` or `qpki ca activate`)")
		}
	}
	v, ok := c.Meta.Versions[name]
	if !ok {
		return "", nil, fmt.Errorf("no version %q (have %v)", name, c.Meta.VersionNames())
	}
	return name, v, nil
}

// Certificate returns a version's CA certificate.
func (c *CA) Certificate(version string) (*x509.Certificate, error) {
	name, v, err := c.Version(version)
	if err != nil {
		return nil, err
	}
	if v.Cert == "" {
		return nil, fmt.Errorf("version %s has no certificate yet (status %s)", name, v.Status)
	}
	c.mu.Lock()
	cert, ok := c.certs[v.Cert]
	c.mu.Unlock()
	if ok {
		return cert, nil
	}
	certs, err := readCerts(filepath.Join(c.Dir, filepath.FromSlash(v.Cert)))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.certs == nil {
		c.certs = map[string]*x509.Certificate{}
	}
	c.certs[v.Cert] = certs[0] // a version's certificate file never changes once written
	c.mu.Unlock()
	return certs[0], nil
}

// Chain returns a version's certificate followed by its issuers up to the
// root.
func (c *CA) Chain(version string) ([]*x509.Certificate, error) {
	cert, err := c.Certificate(version)
	if err != nil {
		return nil, err
	}
	_, v, _ := c.Version(version)
	chain := []*x509.Certificate{cert}
	if v.Chain != "" {
		rest, err := readCerts(filepath.Join(c.Dir, filepath.FromSlash(v.Chain)))
		if err != nil {
			return nil, err
		}
		chain = append(chain, rest...)
	}
	return chain, nil
}

// Issuer opens a version's key(s) and returns what x509x needs to sign
// with them. The closer releases HSM sessions.
func (c *CA) Issuer(version string, opts KeyOptions) (x509x.Issuer, io.Closer, error) {
	name, v, err := c.Version(version)
	if err != nil {
		return x509x.Issuer{}, nil, err
	}
	cert, err := c.Certificate(name)
	if err != nil {
		return x509x.Issuer{}, nil, err
	}
	iss, closer, err := openIssuer(c.Dir, v, opts)
	if err != nil {
		return x509x.Issuer{}, nil, err
	}
	iss.Cert = cert
	return iss, closer, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// openIssuer opens the keys of a version. A Catalyst version has a
// "classical" and a "pqc" key; the others one key.
func openIssuer(dir string, v *Version, opts KeyOptions) (x509x.Issuer, io.Closer, error) {
	var cs closers
	iss := x509x.Issuer{PSS: v.PSS}
	for _, k := range v.Keys {
		s, err := openKey(dir, k, opts)
		if err != nil {
			cs.Close()
			return x509x.Issuer{}, nil, fmt.Errorf("CA key %q: %w", k.ID, err)
		}
		cs = append(cs, s)
		switch k.ID {
		case "pqc":
			iss.AltSigner = s
		default:
			iss.Signer = s
		}
	}
	if v.Mode == "composite" {
		if err := composeIssuer(&iss, v); err != nil {
			cs.Close()
			return x509x.Issuer{}, nil, err
		}
	}
	if iss.Signer == nil {
		cs.Close()
		return x509x.Issuer{}, nil, errors.New("CA version has no primary key")
	}
	return iss, cs, nil
}

// readCerts reads a PEM file of one or more certificates (DER accepted for
// a single one).
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return certs, nil
}

// ParseCertificates decodes PEM certificates, or one DER certificate.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("malformed certificate: %v", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		if len(data) > 0 && data[0] == 0x30 {
			c, err := x509.ParseCertificate(data)
			if err != nil {
				return nil, fmt.Errorf("malformed certificate: %v", err)
			}
			return []*x509.Certificate{c}, nil
		}
		return nil, errors.New("no certificate found")
	}
	return out, nil
}

// EncodeCerts returns the PEM encoding of certificates.
func EncodeCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// SnapshotStore writes a consistent copy of the store (one read
// transaction) while the CA keeps working.
func (c *CA) SnapshotStore(w io.Writer) error {
	st, err := c.Store()
	if err != nil {
		return err
	}
	s, ok := st.(interface{ Snapshot(io.Writer) error })
	if !ok {
		return errors.New("this store cannot be snapshotted")
	}
	return s.Snapshot(w)
}
