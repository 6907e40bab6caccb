package credential

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/hsm"
)

// RotateOptions describes a credential rotation.
type RotateOptions struct {
	// HSMConfig, when set, reaches the token from this machine in place of
	// the config recorded in the credential dir (which stays recorded).
	HSMConfig string
	// Passphrase encrypts new key files.
	Passphrase []byte
	// Vars override the variables of the enrollment.
	Vars map[string]any
	Now  time.Time
}

// Rotate gives each active certificate of the credential a new key, in the
// same place as the old one (the same HSM and label, a new CKA_ID; or a
// new key file), and a new certificate under the same profile. The old
// certificates stay, archived, until they expire or are revoked.
func Rotate(ctx context.Context, iss Issuer, dir, id string, o RotateOptions) (*Credential, error) {
	c, err := Show(dir, id)
	if err != nil {
		return nil, err
	}
	if c.Status != StatusValid {
		return nil, fmt.Errorf("credential %s is %s: enroll a new one", id, c.Status)
	}
	credDir := filepath.Join(dir, id)
	vars := maps.Clone(c.Vars)
	if vars == nil {
		vars = map[string]any{}
	}
	maps.Copy(vars, o.Vars)

	makers := map[string]*keyMaker{} // by storage config and label
	var all []*keyMaker
	ok := false
	defer func() {
		for _, m := range all {
			if !ok {
				m.undo()
			}
			m.close()
		}
	}()
	makerFor := func(s Storage) (*keyMaker, error) {
		key := s.Type + "\x00" + s.Config + "\x00" + s.Label
		if m, ok := makers[key]; ok {
			return m, nil
		}
		var m *keyMaker
		switch s.Type {
		case StorageSoftware:
			m = &keyMaker{passphrase: o.Passphrase}
		case StoragePKCS11:
			path := o.HSMConfig
			if path == "" {
				p, err := configPath(credDir, s.Config)
				if err != nil {
					return nil, err
				}
				path = p
			}
			cfg, err := hsm.LoadConfig(path)
			if err != nil {
				return nil, err
			}
			if m, err = newHSMKeyMaker(cfg, s.Config, s.Label); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown key storage %q", s.Type)
		}
		makers[key] = m
		all = append(all, m)
		return m, nil
	}

	var fresh []Certificate
	for _, old := range c.Active() {
		a, err := algo.Parse(old.Algorithm)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %v", old.Serial, err)
		}
		m, err := makerFor(old.Storage[0])
		if err != nil {
			return nil, err
		}
		cert, err := issueOne(ctx, iss, m, credDir, old.Profile, a, nil, vars)
		if err != nil {
			return nil, err
		}
		fresh = append(fresh, cert.Certificate)
	}
	if len(fresh) == 0 {
		return nil, fmt.Errorf("credential %s has no active certificate to rotate", id)
	}
	for i := range c.Certificates {
		if c.Certificates[i].Status == CertActive {
			c.Certificates[i].Status = CertArchived
		}
	}
	c.Certificates = append(c.Certificates, fresh...)
	c.Vars = vars
	c.setValidity()
	if err := writeActive(credDir, c); err != nil {
		return nil, err
	}
	if err := writeMeta(credDir, c); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// Revoke has rev revoke every certificate of the credential that is not
// revoked or expired yet, archived ones included, and marks the credential
// revoked. reason is an RFC 5280 CRLReason code.
func Revoke(ctx context.Context, rev Revoker, dir, id string, reason int, now time.Time) (*Credential, error) {
	c, err := Show(dir, id)
	if err != nil {
		return nil, err
	}
	if c.Status == StatusRevoked {
		return nil, fmt.Errorf("credential %s is already revoked", id)
	}
	if now.IsZero() {
		now = time.Now()
	}
	var errs []error
	for i := range c.Certificates {
		cert := &c.Certificates[i]
		if cert.Status == CertRevoked || now.After(cert.NotAfter) {
			continue
		}
		if err := rev.Revoke(ctx, cert.Serial, reason); err != nil {
			errs = append(errs, fmt.Errorf("revoking certificate %s: %w", cert.Serial, err))
			continue
		}
		cert.Status = CertRevoked
	}
	if len(errs) == 0 {
		t := now.UTC().Truncate(time.Second)
		c.Status, c.Revoked = StatusRevoked, &t
	}
	// Record what was revoked even when some revocations failed.
	if err := writeMeta(filepath.Join(dir, id), c); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}
