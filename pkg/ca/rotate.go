package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/x509x"
)

// RotateOptions describes a new CA version.
type RotateOptions struct {
	// Profile of the new version; empty keeps the active version's.
	Profile string
	Vars    map[string]any
	// Pending leaves the new version inactive until `ca activate`.
	Pending bool
	// CrossSign writes link certificates between the old and new keys.
	CrossSign bool
	// Keys unlocks this CA's current keys (for cross-signing) and, for a
	// local subordinate, ParentKeys its parent's.
	Keys       KeyOptions
	ParentKeys KeyOptions
	// Key tells where the new key goes; for an HSM CA it defaults to the
	// same token, under a new key id.
	Key KeySpec
	Now time.Time
}

// Rotate creates a new version with a new key and certificate.
func (c *CA) Rotate(o RotateOptions) (string, error) {
	oldName, old, err := c.Version("")
	if err != nil && o.CrossSign {
		return "", err
	}
	if o.Profile == "" {
		if old == nil {
			return "", errors.New("no active version to take the profile from: give --profile")
		}
		o.Profile = old.Profiles[0]
	}
	pol, err := c.policy(o.Profile)
	if err != nil {
		return "", err
	}
	if !pol.isCA {
		return "", fmt.Errorf("profile %s is not a CA profile", o.Profile)
	}
	if o.Vars == nil {
		o.Vars = map[string]any{}
	}
	if _, ok := o.Vars["cn"]; !ok {
		o.Vars["cn"] = c.Meta.Subject.CommonName
	}
	inheritHSM(&o.Key, c.Meta, c.Dir, o.Keys.HSMConfig)
	var parent *CA
	if c.Meta.Parent != nil && c.Meta.Parent.CADir != "" {
		pdir := c.Meta.Parent.CADir
		if !filepath.IsAbs(pdir) {
			pdir = filepath.Join(c.Dir, pdir)
		}
		if parent, err = Open(pdir); err != nil {
			return "", fmt.Errorf("parent CA: %w", err)
		}
		defer parent.Close()
	}

	// Holding the store holds the CA: no server may run meanwhile, and
	// the audit log has one writer.
	if _, err := c.Store(); err != nil {
		return "", err
	}
	name := c.Meta.nextVersion(c.Dir)
	stage, err := os.MkdirTemp(c.Dir, ".rotate-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	t := now(o.Now)
	v, err := c.newVersion(stage, name, pol, o.Vars, o.Key, parent, o.ParentKeys, t)
	if err != nil {
		return "", err
	}
	if o.CrossSign {
		if v.Cert == "" {
			return "", errors.New("--cross-sign needs the new certificate, which an external parent has not signed yet")
		}
		links, err := c.crossSign(stage, name, oldName, v, pol, o.Keys, t)
		if err != nil {
			return "", err
		}
		v.Links = links
	}
	if isProfileFile(o.Profile) {
		if err := installProfile(c.Dir, pol); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "versions"), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(stage, "versions", name), filepath.Join(c.Dir, "versions", name)); err != nil {
		return "", err
	}
	if v.Status == StatusActive && o.Pending {
		v.Status, v.Activated = StatusPending, nil
	}
	c.Meta.Versions[name] = v
	if v.Status == StatusActive {
		c.switchActive(name, t)
	}
	if err := appendVersion(c.Audit, audit.EventRotate, name, v); err != nil {
		return "", err
	}
	if err := writeMeta(c.Dir, c.Meta); err != nil {
		return "", err
	}
	return name, c.finishVersion(c.Dir, c.Meta.Active)
}

func (c *CA) switchActive(name string, t time.Time) {
	ts := t.UTC().Truncate(time.Second)
	if prev, ok := c.Meta.Versions[c.Meta.Active]; ok && c.Meta.Active != name {
		prev.Status, prev.Archived = StatusArchived, &ts
	}
	v := c.Meta.Versions[name]
	v.Status, v.Activated = StatusActive, &ts
	c.Meta.Active = name
}

// crossSign writes the two link certificates of a rollover: the old key
// certifying the new one and the new key certifying the old one, so that a
// client holding either certificate as its anchor can build a path.
func (c *CA) crossSign(stage, newName, oldName string, nv *Version, pol *policy, keys KeyOptions, t time.Time) ([]string, error) {
	oldCert, err := c.Certificate(oldName)
	if err != nil {
		return nil, err
	}
	newCert, err := x509.ParseCertificate(mustReadCert(filepath.Join(stage, filepath.FromSlash(nv.Cert))))
	if err != nil {
		return nil, err
	}
	oldIss, oldClose, err := c.Issuer(oldName, keys)
	if err != nil {
		return nil, fmt.Errorf("cross-sign with %s: %w", oldName, err)
	}
	defer oldClose.Close()
	newIss, newClose, err := openIssuer(stage, nv, stagedKeyOptions(stage, c.Dir, nv, keys))
	if err != nil {
		// the new version's key files are still in the staging dir
		return nil, fmt.Errorf("cross-sign with %s: %w", newName, err)
	}
	defer newClose.Close()
	newIss.Cert = newCert

	var links []string
	for _, l := range []struct {
		subject *x509.Certificate
		iss     x509x.Issuer
		file    string
	}{
		{newCert, oldIss, oldName + "-signs-" + newName + ".crt"},
		{oldCert, newIss, newName + "-signs-" + oldName + ".crt"},
	} {
		der, err := link(l.subject, l.iss, t)
		if err != nil {
			return nil, err
		}
		if err := lintCert(der, pol.lint); err != nil {
			return nil, err
		}
		cert, _ := x509.ParseCertificate(der)
		path := filepath.Join(stage, "versions", newName, "links", l.file)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := writeCerts(path, cert); err != nil {
			return nil, err
		}
		links = append(links, "versions/"+newName+"/links/"+l.file)
	}
	return links, nil
}

// link re-certifies subject's key and name under another issuer, keeping
// the extensions that make it a CA certificate.
func link(subject *x509.Certificate, iss x509x.Issuer, t time.Time) ([]byte, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	notAfter := subject.NotAfter
	if notAfter.After(iss.Cert.NotAfter) {
		notAfter = iss.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject.Subject,
		NotBefore:             t.Add(-time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              subject.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            subject.MaxPathLen,
		MaxPathLenZero:        subject.MaxPathLenZero,
		SubjectKeyId:          subject.SubjectKeyId,
		// crypto/x509 leaves the AKI out when issuer and subject names are
		// equal, as they are in a same-name rollover; set it explicitly.
		AuthorityKeyId: iss.Cert.SubjectKeyId,
	}
	pub, err := x509x.PublicKey(subject)
	if err != nil {
		return nil, err
	}
	// A Catalyst CA's link keeps its alternative key, which verifies the
	// alternative signatures of what that CA issued.
	altPub, err := x509x.AltPublicKey(subject)
	if err != nil {
		return nil, err
	}
	return x509x.CreateCertificate(rand.Reader, tmpl, pub, altPub, iss)
}

func mustReadCert(path string) []byte {
	certs, err := readCerts(path)
	if err != nil || len(certs) == 0 {
		return nil
	}
	return certs[0].Raw
}

// Activate makes a pending version the active one and archives the
// previous.
func (c *CA) Activate(name string) error {
	v, ok := c.Meta.Versions[name]
	if !ok {
		return fmt.Errorf("no version %q (have %v)", name, c.Meta.VersionNames())
	}
	if v.Status == StatusActive {
		return fmt.Errorf("version %s is already active", name)
	}
	if v.Cert == "" {
		return fmt.Errorf("version %s has no certificate yet: import it with `qpki ca import-cert`", name)
	}
	c.switchActive(name, time.Now())
	if err := c.Audit(audit.EventActivate, map[string]any{"version": name}); err != nil {
		return err
	}
	if err := writeMeta(c.Dir, c.Meta); err != nil {
		return err
	}
	return c.finishVersion(c.Dir, name)
}

// ImportCert installs the certificate an external parent signed for a
// pending version, after checking that it certifies the version's key and
// chains to the given parent chain, and activates the version.
func (c *CA) ImportCert(certPEM, chainPEM []byte) (string, error) {
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return "", fmt.Errorf("certificate: %w", err)
	}
	cert := certs[0]
	var chain []*x509.Certificate
	if len(chainPEM) > 0 {
		if chain, err = ParseCertificates(chainPEM); err != nil {
			return "", fmt.Errorf("chain: %w", err)
		}
	}
	chain = append(certs[1:], chain...)
	if len(chain) == 0 {
		return "", errors.New("give the parent's chain with --chain (the parent certificate up to its root)")
	}
	var name string
	for _, n := range c.Meta.VersionNames() {
		v := c.Meta.Versions[n]
		if v.Status != StatusPending || v.CSR == "" {
			continue
		}
		csrPEM, err := c.ReadCSR(n)
		if err != nil {
			return "", err
		}
		der, err := x509x.DecodeCSR(csrPEM)
		if err != nil {
			return "", err
		}
		csr, err := x509x.ParseCertificateRequest(der)
		if err != nil {
			return "", err
		}
		if samePublicKey(csr.PublicKey, cert) {
			name = n
			break
		}
	}
	if name == "" {
		return "", errors.New("the certificate's public key matches no pending version's key")
	}
	if !cert.IsCA {
		return "", errors.New("the certificate is not a CA certificate (basicConstraints cA is false)")
	}
	if err := x509x.CheckSignatureFrom(cert, chain[0]); err != nil {
		return "", fmt.Errorf("the certificate is not signed by the first certificate of the chain: %v", err)
	}
	if _, err := VerifyChain(cert, VerifyOptions{Intermediates: chain[:len(chain)-1], Roots: chain[len(chain)-1:]}); err != nil {
		return "", fmt.Errorf("the chain does not verify: %v", err)
	}
	v := c.Meta.Versions[name]
	vdir := filepath.Join(c.Dir, "versions", name)
	if err := writeCerts(filepath.Join(vdir, "ca.crt"), cert); err != nil {
		return "", err
	}
	if err := writeCerts(filepath.Join(vdir, "chain.pem"), chain...); err != nil {
		return "", err
	}
	v.Cert, v.Chain = "versions/"+name+"/ca.crt", "versions/"+name+"/chain.pem"
	setCertInfo(v, cert)
	c.switchActive(name, time.Now())
	if err := c.Audit(audit.EventImport, map[string]any{"version": name, "serial": v.Serial, "issuer": cert.Issuer.String()}); err != nil {
		return "", err
	}
	if err := writeMeta(c.Dir, c.Meta); err != nil {
		return "", err
	}
	return name, c.finishVersion(c.Dir, name)
}

func samePublicKey(pub crypto.PublicKey, cert *x509.Certificate) bool {
	a, err := algo.MarshalPKIX(pub)
	if err != nil {
		return false
	}
	return bytes.Equal(a, cert.RawSubjectPublicKeyInfo)
}
