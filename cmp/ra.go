package cmp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/x509x"
)

// RA is the CMP RA certificate that signs the front-end's answers: the
// CA key never signs protocol messages.
type RA struct {
	Cert   *x509.Certificate
	Signer algo.Signer
	// Chain is the issuing CA's chain, sent after Cert in extraCerts.
	Chain []*x509.Certificate
	alg   pkix.AlgorithmIdentifier
}

// init learns the signature algorithm the signer uses.
func (r *RA) init() error {
	der, _, err := r.sign([]byte("qpki cmp ra"))
	if err != nil {
		return err
	}
	_, err = asn1.Unmarshal(der, &r.alg)
	return err
}

// RAProfile is the profile of the RA certificate (digitalSignature).
const RAProfile = "any/tls-client"

// RADir is where a CA directory keeps its CMP RA key and certificate.
func RADir(caDir string) string { return filepath.Join(caDir, "cmp-ra") }

func raPaths(caDir string) (cert, key string) {
	d := RADir(caDir)
	return filepath.Join(d, "ra-ec.pem"), filepath.Join(d, "ra-ec.key")
}

// LoadRA reads the RA of caDir, if one was made and is still valid.
func LoadRA(caDir string) (*RA, error) {
	certPath, keyPath := raPaths(caDir)
	cdata, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	kdata, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(cdata)
	kb, _ := pem.Decode(kdata)
	if cb == nil || kb == nil {
		return nil, errors.New("cmp: RA files are not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	priv, err := algo.ParsePKCS8(kb.Bytes)
	if err != nil {
		return nil, err
	}
	a, err := algo.Of(cert.PublicKey)
	if err != nil {
		return nil, err
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		return nil, err
	}
	if time.Now().After(cert.NotAfter) {
		return nil, errors.New("cmp: the RA certificate has expired")
	}
	ra := &RA{Cert: cert, Signer: s}
	return ra, ra.init()
}

// IssueFunc issues a certificate for a CSR through the CA's pipeline and
// returns its DER.
type IssueFunc func(ctx context.Context, profile string, csr []byte, key string) ([]byte, error)

// IssueRA makes a new RA key and has the CA certify it, subject
// "<CA CN> CMP RA"; the key is written 0600 next to the certificate.
func IssueRA(ctx context.Context, caDir string, caCert *x509.Certificate, issue IssueFunc) (*RA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cn := caCert.Subject.CommonName + " CMP RA"
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		return nil, err
	}
	der, err := issue(ctx, RAProfile, csr, "cmp-ra-"+time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return nil, fmt.Errorf("cmp: issuing the RA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(RADir(caDir), 0o700); err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := raPaths(caDir)
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	s, err := algo.NewSigner(key, algo.ECDSAP256)
	if err != nil {
		return nil, err
	}
	ra := &RA{Cert: cert, Signer: s}
	return ra, ra.init()
}

// sign signs the protected part, returning the algorithm and signature.
func (r *RA) sign(msg []byte) (algDER, sig []byte, err error) {
	alg, sigs, err := x509x.SignMany(rand.Reader, [][]byte{msg}, r.Signer, false)
	if err != nil {
		return nil, nil, err
	}
	return alg, sigs[0], nil
}
