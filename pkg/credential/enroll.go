package credential

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/profile"
)

// EnrollOptions describes a new credential.
type EnrollOptions struct {
	// Dir is the credentials directory (by default <ca-dir>/credentials).
	Dir string
	// CADir is the issuing CA's directory, whose profiles/ overrides the
	// built-in profiles; the key algorithm comes from the profile.
	CADir string
	// Profiles get one key and certificate each.
	Profiles []string
	Vars     map[string]any
	Key      KeySpec
	// ID names the credential; empty derives one from the subject.
	ID  string
	Now time.Time
}

// Enroll generates the credential's keys (in the HSM or as key files),
// has iss certify each under its profile and writes the credential. On
// failure nothing is left: keys generated in the HSM are destroyed again.
func Enroll(ctx context.Context, iss Issuer, o EnrollOptions) (*Credential, error) {
	if iss == nil {
		return nil, errors.New("credential: no issuer")
	}
	if o.Dir == "" {
		return nil, errors.New("credential: no credentials directory")
	}
	if len(o.Profiles) == 0 {
		return nil, errors.New("credential: give at least one profile")
	}
	if o.ID != "" {
		if err := checkID(o.ID); err != nil {
			return nil, err
		}
	}
	algs := make([]algo.Algorithm, len(o.Profiles))
	for i, name := range o.Profiles {
		a, err := keyAlgorithm(name, o.CADir, o.Key.Algorithm)
		if err != nil {
			return nil, err
		}
		algs[i] = a
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(o.Dir, ".enroll-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)

	m, err := keyMakerFor(stage, o.Key)
	if err != nil {
		return nil, err
	}
	defer m.close()
	ok := false
	defer func() {
		if !ok {
			m.undo()
		}
	}()

	t := o.Now
	if t.IsZero() {
		t = time.Now()
	}
	c := &Credential{Profiles: o.Profiles, Status: StatusValid, Created: t.UTC().Truncate(time.Second), Vars: o.Vars}
	cn := ""
	for i, name := range o.Profiles {
		var id []byte
		if i == 0 {
			id = o.Key.ID
		}
		cert, err := issueOne(ctx, iss, m, stage, name, algs[i], id, o.Vars)
		if err != nil {
			return nil, err
		}
		c.Certificates = append(c.Certificates, cert.Certificate)
		if i == 0 {
			c.Subject, cn = cert.x509.Subject.String(), cert.x509.Subject.CommonName
		}
	}
	c.setValidity()

	c.ID = o.ID
	if c.ID == "" {
		c.ID = newID(cn, c.Certificates[0].Fingerprint)
	}
	final := filepath.Join(o.Dir, c.ID)
	if _, err := os.Stat(final); err == nil {
		return nil, fmt.Errorf("credential %q already exists in %s", c.ID, o.Dir)
	}
	if err := writeActive(stage, c); err != nil {
		return nil, err
	}
	if err := writeMeta(stage, c); err != nil {
		return nil, err
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(stage, final); err != nil {
		return nil, fmt.Errorf("create %s: %w", final, err)
	}
	ok = true
	return c, nil
}

// keyMakerFor prepares keys of the spec: in its HSM, whose config is
// copied into dir, or as key files.
func keyMakerFor(dir string, spec KeySpec) (*keyMaker, error) {
	if spec.HSMConfig == "" {
		if spec.Label != "" || len(spec.ID) > 0 {
			return nil, errors.New("a key label or id needs an HSM (--hsm-config)")
		}
		return &keyMaker{passphrase: spec.Passphrase}, nil
	}
	if len(spec.Passphrase) > 0 {
		return nil, errors.New("a passphrase applies to key files, not HSM keys")
	}
	cfg, err := hsm.LoadConfig(spec.HSMConfig)
	if err != nil {
		return nil, err
	}
	ref, err := copyHSMConfig(dir, cfg)
	if err != nil {
		return nil, err
	}
	return newHSMKeyMaker(cfg, ref, spec.Label)
}

// keyAlgorithm returns the key algorithm for a profile: the profile's
// own, or want when the profile allows it.
func keyAlgorithm(name, caDir string, want algo.Algorithm) (algo.Algorithm, error) {
	var p *profile.Profile
	var err error
	if strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
		p, err = profile.LoadFile(name)
	} else {
		p, err = profile.Load(name, caDir)
	}
	if err != nil {
		return "", err
	}
	if p.IsCA() {
		return "", fmt.Errorf("profile %s is a CA profile; a credential needs an end-entity profile", name)
	}
	if p.Mode == profile.ModeCatalyst {
		return "", fmt.Errorf("profile %s is a Catalyst profile: credentials with two keys per certificate are not supported yet", name)
	}
	if want == "" {
		return p.Algorithm, nil
	}
	for _, a := range p.AllowedAlgorithms {
		if a == want {
			return want, nil
		}
	}
	if len(p.AllowedAlgorithms) == 0 && want == p.Algorithm {
		return want, nil
	}
	return "", fmt.Errorf("profile %s does not allow %s keys (allowed: %v)", name, want, p.AllowedAlgorithms)
}

// issued is a certificate just issued and recorded in a credential dir.
type issued struct {
	Certificate
	x509 *x509.Certificate
}

// issueOne makes a key, has it certified and writes the certificate (and
// a key file) into dir.
func issueOne(ctx context.Context, iss Issuer, m *keyMaker, dir, prof string, a algo.Algorithm, id []byte, vars map[string]any) (*issued, error) {
	d, err := m.make(a, id)
	if err != nil {
		return nil, err
	}
	pubDER, err := algo.MarshalPKIX(d.public)
	if err != nil {
		return nil, err
	}
	der, err := iss.Issue(ctx, prof, maps.Clone(vars), pubDER)
	if err != nil {
		return nil, fmt.Errorf("issuing the %s certificate: %w", prof, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("the CA returned a malformed certificate: %v", err)
	}
	if string(cert.RawSubjectPublicKeyInfo) != string(pubDER) {
		return nil, errors.New("the CA returned a certificate for another key")
	}
	serial := cert.SerialNumber.Text(16)
	if err := m.keep(d, dir, serial); err != nil {
		return nil, err
	}
	rel := "certs/" + serial + ".pem"
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		return nil, err
	}
	d.cert = filepath.Join(dir, filepath.FromSlash(rel))
	if err := atomicfile.Write(d.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	role := RoleSignature
	if info, ok := algo.Lookup(a); ok && !info.CanSign {
		role = RoleEncryption
	}
	sum := sha256.Sum256(der)
	return &issued{x509: cert, Certificate: Certificate{
		Serial:      serial,
		Role:        role,
		Profile:     prof,
		Algorithm:   string(a),
		Fingerprint: hex.EncodeToString(sum[:]),
		Storage:     []Storage{d.storage},
		Status:      CertActive,
		Cert:        rel,
		NotBefore:   cert.NotBefore.UTC(),
		NotAfter:    cert.NotAfter.UTC(),
	}}, nil
}

// setValidity sets the credential's validity from its active certificates:
// from the latest notBefore to the earliest notAfter, when all are valid.
func (c *Credential) setValidity() {
	first := true
	for _, cert := range c.Active() {
		if first || cert.NotBefore.After(c.NotBefore) {
			c.NotBefore = cert.NotBefore
		}
		if first || cert.NotAfter.Before(c.NotAfter) {
			c.NotAfter = cert.NotAfter
		}
		first = false
	}
}

// writeActive writes certificates.pem: the active certificates.
func writeActive(dir string, c *Credential) error {
	var out []byte
	for _, cert := range c.Active() {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(cert.Cert)))
		if err != nil {
			return err
		}
		out = append(out, data...)
	}
	return atomicfile.Write(filepath.Join(dir, "certificates.pem"), out, 0o644)
}

// newID derives a credential id from the subject's common name, made safe
// for a directory name, and the first certificate's fingerprint.
func newID(cn, fingerprint string) string {
	return slug(cn) + "-" + fingerprint[:min(8, len(fingerprint))]
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if b.Len() >= 64 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-._")
	if out == "" {
		return "credential"
	}
	return out
}
