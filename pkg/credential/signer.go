package credential

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/keyfile"
)

// OpenOptions tells how to unlock a credential's key.
type OpenOptions struct {
	// HSMConfig, when set, reaches the token in place of the config
	// recorded in the credential dir.
	HSMConfig string
	// Passphrase is asked for when a key file is encrypted.
	Passphrase func() ([]byte, error)
}

// Signer opens the key of the credential's active signature certificate
// from the stored reference alone (the PIN, for an HSM key, from the
// environment or a prompt) and returns it with that certificate. The
// signer signs with the certificate's key algorithm; close it when done.
func Signer(dir, id string, o OpenOptions) (algo.SignerCloser, *x509.Certificate, error) {
	c, err := Show(dir, id)
	if err != nil {
		return nil, nil, err
	}
	if c.Status != StatusValid {
		return nil, nil, fmt.Errorf("credential %s is %s", id, c.Status)
	}
	for _, cert := range c.Active() {
		if cert.Role == RoleSignature {
			return openSigner(filepath.Join(dir, id), cert, o)
		}
	}
	return nil, nil, fmt.Errorf("credential %s has no active signature certificate", id)
}

type closeNop struct{ algo.Signer }

func (closeNop) Close() error { return nil }

func openSigner(credDir string, cert Certificate, o OpenOptions) (algo.SignerCloser, *x509.Certificate, error) {
	x, err := readCert(credDir, cert.Cert)
	if err != nil {
		return nil, nil, err
	}
	a, err := algo.Parse(cert.Algorithm)
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, s := range cert.Storage {
		sg, err := openKey(credDir, s, a, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pub, err := algo.MarshalPKIX(sg.Public())
		if err != nil || string(pub) != string(x.RawSubjectPublicKeyInfo) {
			sg.Close()
			errs = append(errs, fmt.Errorf("the key in %s storage does not match certificate %s", s.Type, cert.Serial))
			continue
		}
		return sg, x, nil
	}
	return nil, nil, errors.Join(errs...)
}

func openKey(credDir string, s Storage, a algo.Algorithm, o OpenOptions) (algo.SignerCloser, error) {
	switch s.Type {
	case StoragePKCS11:
		path := o.HSMConfig
		if path == "" {
			p, err := configPath(credDir, s.Config)
			if err != nil {
				return nil, err
			}
			path = p
		}
		return hsm.OpenSigner(path, hsm.KeyRef{Config: s.Config, Label: s.Label, KeyID: s.KeyID}, a)
	case StorageSoftware:
		if s.Path == "" || filepath.IsAbs(s.Path) || strings.Contains(s.Path, "..") {
			return nil, fmt.Errorf("key path %q must be relative to the credential dir", s.Path)
		}
		priv, err := keyfile.Read(filepath.Join(credDir, filepath.FromSlash(s.Path)), o.Passphrase)
		if err != nil {
			return nil, err
		}
		sg, err := algo.NewSigner(priv, a)
		if err != nil {
			return nil, err
		}
		return closeNop{sg}, nil
	}
	return nil, fmt.Errorf("unknown key storage %q", s.Type)
}

func readCert(credDir, rel string) (*x509.Certificate, error) {
	if rel == "" || filepath.IsAbs(rel) || strings.Contains(rel, "..") {
		return nil, fmt.Errorf("certificate path %q must be relative to the credential dir", rel)
	}
	data, err := os.ReadFile(filepath.Join(credDir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", rel)
	}
	return x509.ParseCertificate(block.Bytes)
}

// Certificates returns the credential's certificates as parsed X.509
// certificates, in the order of the metadata.
func Certificates(dir string, c *Credential) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(c.Certificates))
	for _, cert := range c.Certificates {
		x, err := readCert(filepath.Join(dir, c.ID), cert.Cert)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}
