// Package credential manages credentials: an end entity's private keys,
// held in an HSM or in files, and the certificates a CA issued for them,
// enrolled, rotated and revoked together.
//
// A credential lives in <cred-dir>/<id>/ (the cred dir defaults to
// <ca-dir>/credentials):
//
//	credential.meta.json   what the credential is (Credential)
//	certificates.pem       its active certificates
//	certs/<serial>.pem     every certificate it had, archived ones included
//	keys/<serial>.key      key files (PKCS#8), for keys not in an HSM
//	hsm.yaml               a copy of the --hsm-config, for keys in an HSM
//
// The metadata locates each key (an HSM key by config, label and CKA_ID)
// and never holds a secret; Signer opens a key again from it alone. The
// package issues and revokes nothing itself: it asks an Issuer and a
// Revoker, which the CLI connects to the CA's pipeline.
package credential

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/qpki/qpki/pkg/atomicfile"
)

// MetaFile is the name of a credential's metadata file.
const MetaFile = "credential.meta.json"

// Credential status values. StatusExpired is never stored: State derives
// it from the validity.
const (
	StatusValid   = "valid"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// Certificate status values.
const (
	CertActive   = "active"
	CertArchived = "archived" // replaced by a rotation, still valid until it expires
	CertRevoked  = "revoked"
)

// Roles of a credential's keys.
const (
	RoleSignature  = "signature"
	RoleEncryption = "encryption"
)

// Storage types.
const (
	StoragePKCS11   = "pkcs11"
	StorageSoftware = "software"
)

// maxMetaSize bounds credential.meta.json.
const maxMetaSize = 1 << 20

// Credential is the content of credential.meta.json.
type Credential struct {
	ID           string        `json:"id"`
	Subject      string        `json:"subject"`
	Profiles     []string      `json:"profiles"`
	Status       string        `json:"status"`
	Created      time.Time     `json:"created"`
	NotBefore    time.Time     `json:"not_before"`
	NotAfter     time.Time     `json:"not_after"`
	Revoked      *time.Time    `json:"revoked,omitempty"`
	Certificates []Certificate `json:"certificates"`
	// Vars are the profile variables of the enrollment, which a rotation
	// asks for again.
	Vars map[string]any `json:"vars,omitempty"`
}

// Certificate is one certificate of a credential and where its key is.
type Certificate struct {
	Serial      string    `json:"serial"`
	Role        string    `json:"role"`
	Profile     string    `json:"profile"`
	Algorithm   string    `json:"algorithm"`
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the DER, hex
	Storage     []Storage `json:"storage"`     // one entry per place the key is held
	Status      string    `json:"status"`
	Cert        string    `json:"cert"` // PEM file, relative to the credential dir
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// Storage locates a key: an HSM object or a key file. It never holds a
// secret.
type Storage struct {
	Type   string `json:"type"`             // pkcs11 or software
	Config string `json:"config,omitempty"` // pkcs11: the HSM config, relative to the credential dir
	Label  string `json:"label,omitempty"`  // pkcs11: CKA_LABEL
	KeyID  string `json:"key_id,omitempty"` // pkcs11: CKA_ID in hex
	Path   string `json:"path,omitempty"`   // software: relative to the credential dir
}

// Issuer has a CA certify a public key (DER SubjectPublicKeyInfo) under a
// profile and returns the certificate (DER). cmd/qpki connects it to the
// CA's pipeline.
type Issuer interface {
	Issue(ctx context.Context, profile string, vars map[string]any, publicKeyDER []byte) (certDER []byte, err error)
}

// IssuerFunc adapts a function to Issuer.
type IssuerFunc func(ctx context.Context, profile string, vars map[string]any, publicKeyDER []byte) ([]byte, error)

// Issue calls f.
func (f IssuerFunc) Issue(ctx context.Context, profile string, vars map[string]any, pub []byte) ([]byte, error) {
	return f(ctx, profile, vars, pub)
}

// Revoker has a CA revoke a certificate by serial number (hex) with an
// RFC 5280 reason code. A certificate that is already revoked is not an
// error.
type Revoker interface {
	Revoke(ctx context.Context, serial string, reason int) error
}

// RevokerFunc adapts a function to Revoker.
type RevokerFunc func(ctx context.Context, serial string, reason int) error

// Revoke calls f.
func (f RevokerFunc) Revoke(ctx context.Context, serial string, reason int) error {
	return f(ctx, serial, reason)
}

// State is the credential's status at time now: expired once every
// certificate has run out, unless revoked.
func (c *Credential) State(now time.Time) string {
	if c.Status == StatusValid && !c.NotAfter.IsZero() && now.After(c.NotAfter) {
		return StatusExpired
	}
	return c.Status
}

// Active returns the active certificates.
func (c *Credential) Active() []Certificate {
	var out []Certificate
	for _, cert := range c.Certificates {
		if cert.Status == CertActive {
			out = append(out, cert)
		}
	}
	return out
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// checkID refuses ids that are not plain directory names.
func checkID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("invalid credential id %q (letters, digits, '.', '_' and '-')", id)
	}
	return nil
}

// Show reads the credential id from the credentials directory dir.
func Show(dir, id string) (*Credential, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	c, err := readMeta(filepath.Join(dir, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no credential %q in %s", id, dir)
	}
	return c, err
}

// List reads every credential in dir, oldest first. A directory that does
// not exist holds none.
func List(dir string) ([]*Credential, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Credential
	for _, e := range entries {
		if !e.IsDir() || checkID(e.Name()) != nil {
			continue
		}
		c, err := readMeta(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // not a credential
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func readMeta(credDir string) (*Credential, error) {
	path := filepath.Join(credDir, MetaFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMetaSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxMetaSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxMetaSize)
	}
	c := new(Credential)
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %v", path, err)
	}
	if err := c.validate(filepath.Base(credDir)); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %v", path, err)
	}
	return c, nil
}

func (c *Credential) validate(dirName string) error {
	if c.ID != dirName {
		return fmt.Errorf("id %q does not match the directory %q", c.ID, dirName)
	}
	switch c.Status {
	case StatusValid, StatusRevoked:
	default:
		return fmt.Errorf("unknown status %q", c.Status)
	}
	if len(c.Certificates) == 0 {
		return errors.New("no certificates")
	}
	for _, cert := range c.Certificates {
		switch cert.Status {
		case CertActive, CertArchived, CertRevoked:
		default:
			return fmt.Errorf("certificate %s: unknown status %q", cert.Serial, cert.Status)
		}
		if len(cert.Storage) == 0 {
			return fmt.Errorf("certificate %s: no key storage", cert.Serial)
		}
		for _, s := range cert.Storage {
			if s.Type != StoragePKCS11 && s.Type != StorageSoftware {
				return fmt.Errorf("certificate %s: unknown storage type %q", cert.Serial, s.Type)
			}
		}
	}
	return nil
}

func writeMeta(credDir string, c *Credential) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(credDir, MetaFile), append(data, '\n'), 0o644)
}
