// Package ca manages a certificate authority directory: its metadata
// (ca.meta.json, the source of truth for which key signs), its versions and
// their rotation, and issuance, revocation and CRLs from it.
package ca

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/atomicfile"
)

// File names inside a CA directory.
const (
	MetaFile  = "ca.meta.json"
	CertFile  = "ca.crt"
	StoreFile = "ca.db"
	CRLDir    = "crl"
)

// DirMode is a CA directory's mode: its owner's alone (the local API
// socket of a running serve lives in it).
const DirMode os.FileMode = 0o700

// Version status values.
const (
	StatusActive   = "active"
	StatusPending  = "pending"
	StatusArchived = "archived"
)

// maxMetaSize bounds ca.meta.json; a real one is a few KiB.
const maxMetaSize = 1 << 20

// Meta is the content of ca.meta.json.
type Meta struct {
	Subject  Subject             `json:"subject"`
	Active   string              `json:"active"`
	Parent   *Parent             `json:"parent,omitempty"`
	Versions map[string]*Version `json:"versions"`
	// CRL partitions the CA's CRLs into shards; nil: one CRL.
	CRL *CRLConfig `json:"crl,omitempty"`
}

// Subject is the CA's distinguished name, as shown to people.
type Subject struct {
	CommonName   string `json:"common_name"`
	Organization string `json:"organization,omitempty"`
	Country      string `json:"country,omitempty"`
}

// Parent says who signs this CA's certificates: a local CA directory
// (relative to this one when possible) or an external CA.
type Parent struct {
	CADir    string `json:"ca_dir,omitempty"`
	External bool   `json:"external,omitempty"`
}

// Version is one generation of the CA: its key(s) and certificate.
type Version struct {
	Profiles  []string   `json:"profiles"`
	Algos     []string   `json:"algos"`
	Mode      string     `json:"mode,omitempty"` // catalyst or composite for hybrid CAs
	PSS       bool       `json:"rsa_pss,omitempty"`
	Status    string     `json:"status"`
	Created   time.Time  `json:"created"`
	Activated *time.Time `json:"activated,omitempty"`
	Archived  *time.Time `json:"archived,omitempty"`
	Keys      []Key      `json:"keys"`
	Cert      string     `json:"cert,omitempty"`  // path relative to the CA dir
	CSR       string     `json:"csr,omitempty"`   // set while waiting for an external parent
	Chain     string     `json:"chain,omitempty"` // the issuer's chain, up to the root
	Links     []string   `json:"links,omitempty"` // cross-sign link certificates
	Serial    string     `json:"serial,omitempty"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
}

// Key says where one of a version's private keys lives.
type Key struct {
	ID        string  `json:"id"` // "default", or "classical" and "pqc" for hybrids
	Algorithm string  `json:"algorithm"`
	Storage   Storage `json:"storage"`
}

// Storage locates a private key: a file or an HSM object. It never holds
// a secret.
type Storage struct {
	Type   string `json:"type"`             // "software" or "pkcs11"
	Path   string `json:"path,omitempty"`   // software: relative to the CA dir
	Config string `json:"config,omitempty"` // pkcs11: HSM config, relative to the CA dir
	Label  string `json:"label,omitempty"`
	KeyID  string `json:"key_id,omitempty"` // pkcs11: CKA_ID in hex
}

func readMeta(dir string) (*Meta, error) {
	path := filepath.Join(dir, MetaFile)
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, derr := os.Stat(dir); derr != nil {
				return nil, fmt.Errorf("CA directory %s does not exist (create one with `qpki ca init`)", dir)
			}
			return nil, fmt.Errorf("%s is not a CA directory: no %s", dir, MetaFile)
		}
		return nil, err
	}
	if fi.Size() > maxMetaSize {
		return nil, fmt.Errorf("%s: file too large", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := new(Meta)
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %v", path, err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %v", path, err)
	}
	return m, nil
}

func (m *Meta) validate() error {
	if len(m.Versions) == 0 {
		return errors.New("no versions")
	}
	active := 0
	for name, v := range m.Versions {
		if _, err := versionNumber(name); err != nil {
			return err
		}
		switch v.Status {
		case StatusActive:
			active++
		case StatusPending, StatusArchived:
		default:
			return fmt.Errorf("version %s: unknown status %q", name, v.Status)
		}
		if len(v.Keys) == 0 {
			return fmt.Errorf("version %s: no keys", name)
		}
		for _, k := range v.Keys {
			if k.Storage.Type != "software" && k.Storage.Type != "pkcs11" {
				return fmt.Errorf("version %s: key %q: unknown storage type %q", name, k.ID, k.Storage.Type)
			}
		}
	}
	if m.Active != "" {
		v, ok := m.Versions[m.Active]
		if !ok || v.Status != StatusActive {
			return fmt.Errorf("active version %q is not an active version", m.Active)
		}
	}
	if active > 1 {
		return errors.New("more than one active version")
	}
	return nil
}

func writeMeta(dir string, m *Meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, MetaFile), append(data, '\n'), 0o644)
}

func versionNumber(name string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "v"))
	if !strings.HasPrefix(name, "v") || err != nil || n < 1 {
		return 0, fmt.Errorf("invalid version name %q (want v1, v2, ...)", name)
	}
	return n, nil
}

// VersionNames returns the version names in numeric order.
func (m *Meta) VersionNames() []string {
	names := make([]string, 0, len(m.Versions))
	for n := range m.Versions {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, _ := versionNumber(names[i])
		b, _ := versionNumber(names[j])
		return a < b
	})
	return names
}

// nextVersion picks the first version name not used in the metadata nor
// left on disk by an interrupted rotation.
func (m *Meta) nextVersion(dir string) string {
	n := 0
	for name := range m.Versions {
		if k, err := versionNumber(name); err == nil && k > n {
			n = k
		}
	}
	for {
		n++
		name := "v" + strconv.Itoa(n)
		if _, err := os.Stat(filepath.Join(dir, "versions", name)); errors.Is(err, os.ErrNotExist) {
			return name
		}
	}
}
