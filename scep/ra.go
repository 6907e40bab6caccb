package scep

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/atomicfile"
)

// RAProfile is the profile of the RA certificate: an RSA key for key
// transport (SCEP clients encrypt to RSA only) that also signs CertReps.
const RAProfile = "scep/ra"

// RA is the registration authority that SCEP clients encrypt to and that
// signs the CertReps: its own RSA key, never the CA's, which stays with
// the worker or the HSM.
type RA struct {
	Cert   *x509.Certificate
	Key    *rsa.PrivateKey
	Signer algo.Signer
}

func (ra *RA) algorithm() algo.Algorithm {
	a, _ := algo.Of(ra.Key.Public())
	return a
}

// RAPaths are the RA certificate and key files of a CA directory.
func RAPaths(caDir string) (cert, key string) {
	d := filepath.Join(caDir, "scep")
	return filepath.Join(d, "ra.crt"), filepath.Join(d, "ra.key")
}

// LoadRA reads the RA of a CA directory; os.ErrNotExist when it has none.
func LoadRA(caDir string) (*RA, error) {
	certPath, keyPath := RAPaths(caDir)
	cp, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	kp, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(cp)
	kb, _ := pem.Decode(kp)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("scep: %s or %s is not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("scep: %s: %v", certPath, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("scep: %s: %v", keyPath, err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("scep: %s: the RA key must be RSA", keyPath)
	}
	return newRA(cert, key)
}

func newRA(cert *x509.Certificate, key *rsa.PrivateKey) (*RA, error) {
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("scep: the RA key is not the RA certificate's")
	}
	ra := &RA{Cert: cert, Key: key}
	s, err := algo.NewSigner(key, ra.algorithm())
	if err != nil {
		return nil, err
	}
	ra.Signer = s
	return ra, nil
}

// NewRAKey makes an RA key and the CSR to have it certified.
func NewRAKey(caName string) (*rsa.PrivateKey, []byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: caName + " SCEP RA"}}, key)
	return key, csr, err
}

// SaveRA writes the RA certificate and key into the CA directory, the
// key 0600 (both atomically, the key first).
func SaveRA(caDir string, key *rsa.PrivateKey, certDER []byte) (*RA, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, err
	}
	ra, err := newRA(cert, key)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := RAPaths(caDir)
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return nil, err
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644); err != nil {
		return nil, err
	}
	return ra, nil
}

// IssueRA makes an RA key, has its certificate signed through the queue
// by the CA (profile scep/ra, as the operator) and saves both.
func IssueRA(ctx context.Context, svc *enroll.Service) (*RA, error) {
	key, csr, err := NewRAKey(svc.CA.Name())
	if err != nil {
		return nil, err
	}
	id, err := svc.Submit(ctx, enroll.Request{Profile: RAProfile, CSR: csr, Vars: map[string]any{"cn": svc.CA.Name() + " SCEP RA"},
		Key: "scep-ra-" + time.Now().UTC().Format(time.RFC3339Nano), Principal: enroll.Operator(enroll.FrontendServe, "qpki serve")})
	if err != nil {
		return nil, fmt.Errorf("scep: issuing the RA certificate: %w", err)
	}
	res, err := svc.Wait(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("scep: issuing the RA certificate: %w", err)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("scep: issuing the RA certificate: %w", err)
	}
	return SaveRA(svc.CA.Dir, key, res.DER)
}
