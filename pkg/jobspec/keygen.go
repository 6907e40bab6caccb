package jobspec

import (
	"bytes"
	"crypto"
	"crypto/hpke"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// KindKeygen asks a worker to generate a key pair in software, certify it
// with the reserved serial, and return the private key sealed to a
// one-time public key of the front-end that asked (EST serverkeygen).
//
// The queue knows three job kinds, so keygen jobs travel as KindIssue and
// are told apart by their payload (IsKeygen); enroll's job record says
// KindKeygen. A worker that does not know keygen payloads finds no subject
// key in them and refuses the job rather than certify the wrong key.
const KindKeygen = "keygen"

// Keygen asks for a server-generated key and its certificate.
type Keygen struct {
	Profile string         `json:"profile"`
	Vars    map[string]any `json:"vars,omitempty"`
	// Template is the client's CSR (DER): it gives the names; its key and
	// signature are ignored (RFC 7030 §4.4.1).
	Template []byte `json:"keygen_template"`
	// Algorithm of the key to generate, chosen by enroll.
	Algorithm string `json:"keygen_algorithm"`
	// Recipient is the front-end's one-time HPKE public key (KeygenSuite)
	// the private key is sealed to.
	Recipient []byte `json:"keygen_recipient"`
	// Serial was reserved by enroll; a re-sign after a crash reuses it.
	Serial string `json:"serial"`
}

// KeygenResult is the certificate and the sealed private key. Its JSON is
// a superset of IssueResult's, so the recorder records the certificate as
// for an issue job and never sees the key.
type KeygenResult struct {
	DER       []byte `json:"der"`
	CAVersion string `json:"ca_version"`
	// SealedKey is the PKCS#8 private key sealed with HPKE to the job's
	// Recipient (SealKey).
	SealedKey []byte `json:"sealed_key"`
}

// IsKeygen reports whether an issue-kind job payload is a Keygen.
func IsKeygen(payload []byte) bool {
	if !bytes.Contains(payload, []byte("keygen_recipient")) {
		return false
	}
	var probe struct {
		Recipient []byte `json:"keygen_recipient"`
	}
	return Decode(payload, &probe) == nil && len(probe.Recipient) > 0
}

// The HPKE suite between worker and front-end: ML-KEM-768 with X25519
// (post-quantum and classical together), HKDF-SHA256, AES-256-GCM.
var (
	keygenKEM  = hpke.MLKEM768X25519()
	keygenKDF  = hpke.HKDFSHA256()
	keygenAEAD = hpke.AES256GCM()
)

// NewKeygenRecipient makes a one-time key pair for one keygen job; the
// public half (Bytes) goes into Keygen.Recipient.
func NewKeygenRecipient() (hpke.PrivateKey, error) { return keygenKEM.GenerateKey() }

// keygenInfo binds a sealed key to its job.
func keygenInfo(jobID string) []byte { return []byte("qpki keygen v1\x00" + jobID) }

// SealKey encrypts a PKCS#8 private key to a job's recipient.
func SealKey(recipient []byte, jobID string, pkcs8 []byte) ([]byte, error) {
	pub, err := keygenKEM.NewPublicKey(recipient)
	if err != nil {
		return nil, fmt.Errorf("keygen recipient: %v", err)
	}
	return hpke.Seal(pub, keygenKDF, keygenAEAD, keygenInfo(jobID), pkcs8)
}

// OpenKey decrypts what SealKey sealed for the job.
func OpenKey(priv hpke.PrivateKey, jobID string, sealed []byte) ([]byte, error) {
	pkcs8, err := hpke.Open(priv, keygenKDF, keygenAEAD, keygenInfo(jobID), sealed)
	if err != nil {
		return nil, errors.New("the sealed key does not open with this front-end's one-time key")
	}
	return pkcs8, nil
}

// KeygenTemplate turns the client's CSR into the request the CA checks
// and signs: its names with pub in place of its own key. The CSR's
// signature is not checked: a server-generated key needs no proof of
// possession of the client's.
func KeygenTemplate(csrDER []byte, pub crypto.PublicKey) (*x509x.CertificateRequest, error) {
	if len(csrDER) > x509x.MaxCSR {
		return nil, fmt.Errorf("CSR too large (%d bytes, limit %d)", len(csrDER), x509x.MaxCSR)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("malformed CSR: %v", err)
	}
	a, err := algo.Of(pub)
	if err != nil {
		return nil, err
	}
	spki, err := algo.MarshalPKIX(pub)
	if err != nil {
		return nil, err
	}
	t := *csr
	t.PublicKey, t.RawSubjectPublicKeyInfo = pub, spki
	t.PublicKeyAlgorithm = x509.UnknownPublicKeyAlgorithm
	return &x509x.CertificateRequest{CertificateRequest: &t, PublicKey: pub, Algorithm: a}, nil
}
