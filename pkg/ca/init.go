package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/x509x"
)

// InitOptions describes a new CA.
type InitOptions struct {
	Dir     string
	Profile string
	Vars    map[string]any
	// Parent signs the new CA's certificate; nil for a root.
	Parent     *CA
	ParentKeys KeyOptions
	// ExternalParent writes a CSR and leaves the version pending.
	ExternalParent bool
	Key            KeySpec
	Now            time.Time
}

// Init creates a CA directory. Everything is written to a staging
// directory first and renamed into place, so a failure leaves nothing.
func Init(o InitOptions) (*CA, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, MetaFile)); err == nil {
		return nil, fmt.Errorf("%s is already a CA directory", dir)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s exists and is not empty", dir)
	}
	if o.Parent != nil && o.ExternalParent {
		return nil, errors.New("--parent and --external-parent exclude each other")
	}
	pol, err := loadPolicy(o.Profile, dir)
	if err != nil {
		return nil, err
	}
	if !pol.isCA {
		return nil, fmt.Errorf("profile %s is not a CA profile", o.Profile)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(filepath.Dir(dir), ".qpki-init-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)

	c := &CA{Dir: dir, Meta: &Meta{Versions: map[string]*Version{}}}
	if o.Parent != nil {
		rel, err := filepath.Rel(dir, o.Parent.Dir)
		if err != nil {
			rel = o.Parent.Dir
		}
		c.Meta.Parent = &Parent{CADir: rel}
	} else if o.ExternalParent {
		c.Meta.Parent = &Parent{External: true}
	}
	v, err := c.newVersion(stage, "v1", pol, o.Vars, o.Key, o.Parent, o.ParentKeys, now(o.Now))
	if err != nil {
		return nil, err
	}
	c.Meta.Versions["v1"] = v
	if v.Status == StatusActive {
		c.Meta.Active = "v1"
	}
	if err := c.finishVersion(stage, "v1"); err != nil {
		return nil, err
	}
	if isProfileFile(o.Profile) {
		if err := installProfile(stage, pol); err != nil {
			return nil, err
		}
	}
	if err := writeMeta(stage, c.Meta); err != nil {
		return nil, err
	}
	if err := auditVersion(stage, audit.EventInit, "v1", v); err != nil {
		return nil, err
	}
	// Only the CA's owner enters its directory: it holds the store, the
	// audit log, file keys and, while serve runs, the local API socket.
	if err := os.Chmod(stage, DirMode); err != nil {
		return nil, err
	}
	if err := os.Rename(stage, dir); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	return c, nil
}

// auditVersion starts or continues the audit log in dir with a new
// version's key generations and the event that made it.
func auditVersion(dir, event, name string, v *Version) error {
	l, err := audit.Open(filepath.Join(dir, audit.FileName))
	if err != nil {
		return err
	}
	defer l.Close()
	return appendVersion(l.Append, event, name, v)
}

func appendVersion(appendFn func(string, map[string]any) error, event, name string, v *Version) error {
	for _, k := range v.Keys {
		if err := appendFn(audit.EventKeyGen, map[string]any{"version": name, "key": k.ID, "algorithm": k.Algorithm, "storage": k.Storage}); err != nil {
			return err
		}
	}
	return appendFn(event, map[string]any{"version": name, "status": v.Status, "profiles": v.Profiles, "algorithms": v.Algos,
		"serial": v.Serial, "links": v.Links})
}

func now(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// newVersion creates a version's keys under stage and its certificate:
// self-signed, signed by a local parent, or a CSR for an external parent.
func (c *CA) newVersion(stage, name string, pol *policy, vars map[string]any, spec KeySpec, parent *CA, parentKeys KeyOptions, t time.Time) (_ *Version, err error) {
	typ, backend, err := backendFor(spec)
	if err != nil {
		return nil, err
	}
	v := &Version{Profiles: []string{pol.name}, Mode: pol.mode, PSS: pol.pss, Created: t.UTC().Truncate(time.Second)}
	own := x509x.Issuer{PSS: pol.pss}
	var keyClosers closers
	defer keyClosers.Close()
	defer func() {
		if err != nil {
			discardKeys(keyClosers) // no orphan keys in the HSM
		}
	}()
	keyAlgs, algos := versionKeyAlgorithms(pol, typ)
	v.Algos = algos
	for i, a := range keyAlgs {
		id := "default"
		if len(keyAlgs) > 1 {
			id = []string{"classical", "pqc"}[i]
		}
		st, s, err := backend.Create(stage, c.Dir, name, id, a, spec)
		if err != nil {
			return nil, fmt.Errorf("CA key (%s): %w", a, err)
		}
		keyClosers = append(keyClosers, s)
		v.Keys = append(v.Keys, Key{ID: id, Algorithm: string(a), Storage: st})
		if id == "pqc" {
			own.AltSigner = s
		} else {
			own.Signer = s
		}
	}
	if pol.mode == "composite" {
		if err := composeIssuer(&own, v); err != nil {
			return nil, err
		}
	}
	tmpl, err := pol.apply(vars, nil, own.Signer.Public(), own.Signer.Algorithm(), t)
	if err != nil {
		return nil, err
	}
	if c.Meta.Subject.CommonName == "" {
		c.Meta.Subject = Subject{CommonName: tmpl.Subject.CommonName}
		if len(tmpl.Subject.Organization) > 0 {
			c.Meta.Subject.Organization = tmpl.Subject.Organization[0]
		}
		if len(tmpl.Subject.Country) > 0 {
			c.Meta.Subject.Country = tmpl.Subject.Country[0]
		}
	}
	pub := own.Signer.Public()
	var altPub crypto.PublicKey
	if own.AltSigner != nil {
		altPub = own.AltSigner.Public()
	}
	if tmpl.SubjectKeyId, err = subjectKeyID(pub); err != nil {
		return nil, err
	}
	vdir := filepath.Join(stage, "versions", name)
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return nil, err
	}
	rel := func(f string) string { return "versions/" + name + "/" + f }

	if c.Meta.Parent != nil && c.Meta.Parent.External {
		csr, err := x509x.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: tmpl.Subject}, own.Signer, own.AltSigner, pol.pss)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(filepath.Join(vdir, "ca.csr"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), 0o644); err != nil {
			return nil, err
		}
		v.CSR, v.Status = rel("ca.csr"), StatusPending
		return v, nil
	}

	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	var der []byte
	var chain []*x509.Certificate
	if parent == nil {
		der, err = x509x.CreateCertificate(rand.Reader, tmpl, pub, altPub, own)
		if err == nil {
			err = lintCert(der, pol.lint)
		}
	} else {
		der, chain, err = parent.signSubordinate(tmpl, pub, altPub, pol, parentKeys)
	}
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := writeCerts(filepath.Join(vdir, "ca.crt"), cert); err != nil {
		return nil, err
	}
	v.Cert = rel("ca.crt")
	if len(chain) > 0 {
		if err := writeCerts(filepath.Join(vdir, "chain.pem"), chain...); err != nil {
			return nil, err
		}
		v.Chain = rel("chain.pem")
	}
	setCertInfo(v, cert)
	v.Status = StatusActive
	v.Activated = &v.Created
	return v, nil
}

func setCertInfo(v *Version, cert *x509.Certificate) {
	nb, na := cert.NotBefore.UTC(), cert.NotAfter.UTC()
	v.Serial, v.NotBefore, v.NotAfter = cert.SerialNumber.Text(16), &nb, &na
}

// signSubordinate has this CA issue a subordinate CA certificate, recorded
// in this CA's store, and returns it with this CA's chain.
func (c *CA) signSubordinate(tmpl *x509.Certificate, pub, altPub crypto.PublicKey, subPol *policy, keys KeyOptions) ([]byte, []*x509.Certificate, error) {
	iss, closer, err := c.Issuer("", keys)
	if err != nil {
		return nil, nil, fmt.Errorf("parent CA %s: %w", c.Dir, err)
	}
	defer closer.Close()
	if err := checkPathLen(iss.Cert); err != nil {
		return nil, nil, err
	}
	if tmpl.NotAfter.After(iss.Cert.NotAfter) {
		tmpl.NotAfter = iss.Cert.NotAfter
	}
	der, err := x509x.CreateCertificate(rand.Reader, tmpl, pub, altPub, iss)
	if err != nil {
		return nil, nil, err
	}
	if err := lintCert(der, subPol.lint); err != nil {
		return nil, nil, err
	}
	if _, err := c.Record(der, subPol.name, ""); err != nil {
		return nil, nil, err
	}
	chain, err := c.Chain("")
	return der, chain, err
}

func checkPathLen(parent *x509.Certificate) error {
	if !parent.IsCA {
		return errors.New("the parent certificate is not a CA")
	}
	if parent.MaxPathLen == 0 && parent.MaxPathLenZero {
		return errors.New("the parent CA's path length constraint (0) forbids subordinate CAs")
	}
	return nil
}

// finishVersion writes the top-level ca.crt for the active version.
func (c *CA) finishVersion(root, name string) error {
	v := c.Meta.Versions[name]
	if v.Status != StatusActive || v.Cert == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(v.Cert)))
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(root, CertFile), data, 0o644)
}

func writeCerts(path string, certs ...*x509.Certificate) error {
	return atomicfile.Write(path, EncodeCerts(certs...), 0o644)
}

// ReadCSR reads a pending version's CSR.
func (c *CA) ReadCSR(version string) ([]byte, error) {
	_, v, err := c.Version(version)
	if err != nil {
		return nil, err
	}
	if v.CSR == "" {
		return nil, errors.New("that version has no CSR")
	}
	return os.ReadFile(filepath.Join(c.Dir, filepath.FromSlash(v.CSR)))
}

var _ io.Closer = closers(nil)
