// Package inspect describes certificates, CSRs and CRLs for people (text)
// and for programs (JSON), the same way for every command.
package inspect

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// Cert is the JSON form of a certificate.
type Cert struct {
	Serial        string    `json:"serial"`
	Subject       string    `json:"subject"`
	Issuer        string    `json:"issuer"`
	NotBefore     time.Time `json:"not_before"`
	NotAfter      time.Time `json:"not_after"`
	KeyAlgorithm  string    `json:"key_algorithm"`
	SignatureAlgo string    `json:"signature_algorithm"`
	// AltKeyAlgorithm and AltSignatureAlgo are a Catalyst certificate's
	// alternative key (subjectAltPublicKeyInfo) and signature.
	AltKeyAlgorithm  string   `json:"alt_key_algorithm,omitempty"`
	AltSignatureAlgo string   `json:"alt_signature_algorithm,omitempty"`
	IsCA             bool     `json:"is_ca"`
	PathLen          *int     `json:"path_len,omitempty"`
	DNSNames         []string `json:"dns_names,omitempty"`
	IPAddresses      []string `json:"ip_addresses,omitempty"`
	Emails           []string `json:"emails,omitempty"`
	URIs             []string `json:"uris,omitempty"`
	KeyUsage         []string `json:"key_usage,omitempty"`
	ExtKeyUsage      []string `json:"ext_key_usage,omitempty"`
	SubjectKeyID     string   `json:"subject_key_id,omitempty"`
	AuthorityKey     string   `json:"authority_key_id,omitempty"`
	CRLDP            []string `json:"crl_distribution_points,omitempty"`
	OCSP             []string `json:"ocsp,omitempty"`
	SHA256           string   `json:"fingerprint_sha256"`
}

// DescribeCert returns the JSON form of a certificate.
func DescribeCert(c *x509.Certificate) Cert {
	sum := sha256.Sum256(c.Raw)
	out := Cert{
		Serial: c.SerialNumber.Text(16), Subject: c.Subject.String(), Issuer: c.Issuer.String(),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		KeyAlgorithm: keyAlgorithm(c), SignatureAlgo: SignatureAlgorithm(c), AltSignatureAlgo: AltSignatureAlgorithm(c),
		IsCA: c.IsCA, DNSNames: c.DNSNames, Emails: c.EmailAddresses,
		KeyUsage: KeyUsages(c.KeyUsage), ExtKeyUsage: ExtKeyUsages(c.ExtKeyUsage),
		SubjectKeyID: hex.EncodeToString(c.SubjectKeyId), AuthorityKey: hex.EncodeToString(c.AuthorityKeyId),
		CRLDP: c.CRLDistributionPoints, OCSP: c.OCSPServer, SHA256: hex.EncodeToString(sum[:]),
	}
	if alt, err := x509x.AltPublicKey(c); err != nil {
		out.AltKeyAlgorithm = "unknown"
	} else if alt != nil {
		out.AltKeyAlgorithm = keyName(alt)
	}
	if c.IsCA && (c.MaxPathLen > 0 || c.MaxPathLenZero) {
		pl := c.MaxPathLen
		out.PathLen = &pl
	}
	for _, ip := range c.IPAddresses {
		out.IPAddresses = append(out.IPAddresses, ip.String())
	}
	for _, u := range c.URIs {
		out.URIs = append(out.URIs, u.String())
	}
	return out
}

func keyAlgorithm(c *x509.Certificate) string {
	pub, err := x509x.PublicKey(c)
	if err != nil {
		return "unknown"
	}
	return keyName(pub)
}

// keyName names a public key's algorithm, with the draft a composite
// algorithm follows.
func keyName(pub crypto.PublicKey) string {
	a, err := algo.Of(pub)
	if err != nil {
		return "unknown"
	}
	if a.Family() == algo.FamilyComposite {
		return string(a) + " (" + algo.CompositeDraft + ")"
	}
	return string(a)
}

// SignatureAlgorithm names a certificate's signature algorithm as
// pkg/x509x does ("ecdsa-with-SHA384", "ml-dsa-65",
// "composite-mldsa65-ecdsa-p256"), the way `cert verify` reports it.
func SignatureAlgorithm(c *x509.Certificate) string {
	if name, _ := x509x.SignatureAlgorithms(c); name != "" {
		return name
	}
	if c.SignatureAlgorithm != x509.UnknownSignatureAlgorithm {
		return c.SignatureAlgorithm.String()
	}
	return "unknown"
}

// AltSignatureAlgorithm names a Catalyst certificate's alternative
// signature algorithm, or returns "".
func AltSignatureAlgorithm(c *x509.Certificate) string {
	_, alt := x509x.SignatureAlgorithms(c)
	return alt
}

// WriteCert prints a certificate for people.
func WriteCert(w io.Writer, c *x509.Certificate) error {
	d := DescribeCert(c)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("Subject", d.Subject)
	row("Issuer", d.Issuer)
	row("Serial", d.Serial)
	row("Not before", d.NotBefore.Format(time.RFC3339))
	row("Not after", d.NotAfter.Format(time.RFC3339))
	row("Key algorithm", d.KeyAlgorithm)
	row("Alt key algorithm", d.AltKeyAlgorithm)
	row("Signature", d.SignatureAlgo)
	row("Alt signature", d.AltSignatureAlgo)
	if d.IsCA {
		bc := "CA"
		if d.PathLen != nil {
			bc += fmt.Sprintf(", pathLen %d", *d.PathLen)
		}
		row("Basic constraints", bc)
	}
	row("DNS names", strings.Join(d.DNSNames, ", "))
	row("IP addresses", strings.Join(d.IPAddresses, ", "))
	row("Emails", strings.Join(d.Emails, ", "))
	row("URIs", strings.Join(d.URIs, ", "))
	row("Key usage", strings.Join(d.KeyUsage, ", "))
	row("Ext key usage", strings.Join(d.ExtKeyUsage, ", "))
	row("Subject key id", d.SubjectKeyID)
	row("Authority key id", d.AuthorityKey)
	row("CRL distribution", strings.Join(d.CRLDP, ", "))
	row("OCSP", strings.Join(d.OCSP, ", "))
	row("SHA-256", d.SHA256)
	return tw.Flush()
}

// CSR is the JSON form of a certificate request.
type CSR struct {
	Subject      string   `json:"subject"`
	KeyAlgorithm string   `json:"key_algorithm"`
	AltKey       string   `json:"alt_key_algorithm,omitempty"`
	DNSNames     []string `json:"dns_names,omitempty"`
	IPAddresses  []string `json:"ip_addresses,omitempty"`
	Emails       []string `json:"emails,omitempty"`
	URIs         []string `json:"uris,omitempty"`
	Signature    string   `json:"signature"`
	// Statement is set for an RFC 9883 request: the signature
	// certificate whose key signed it.
	Statement *Statement `json:"statement_of_possession,omitempty"`
}

// Statement describes an RFC 9883 privateKeyPossessionStatement.
type Statement struct {
	Subject string `json:"signer_subject"`
	Issuer  string `json:"signer_issuer"`
	Serial  string `json:"signer_serial"`
}

// DescribeCSR returns the JSON form of a verified CSR.
func DescribeCSR(r *x509x.CertificateRequest) CSR {
	out := CSR{Subject: r.Subject.String(), KeyAlgorithm: string(r.Algorithm), AltKey: string(r.AltAlgorithm),
		DNSNames: r.DNSNames, Emails: r.EmailAddresses, Signature: "valid"}
	for _, ip := range r.IPAddresses {
		out.IPAddresses = append(out.IPAddresses, ip.String())
	}
	for _, u := range r.URIs {
		out.URIs = append(out.URIs, u.String())
	}
	return out
}

// DescribeStatementCSR returns the JSON form of an RFC 9883 request whose
// signature signer's key verified.
func DescribeStatementCSR(r *x509x.CertificateRequest, signer *x509.Certificate) CSR {
	out := DescribeCSR(r)
	out.Statement = &Statement{Subject: signer.Subject.String(), Issuer: signer.Issuer.String(), Serial: signer.SerialNumber.Text(16)}
	return out
}

// WriteCSR prints a CSR for people.
func WriteCSR(w io.Writer, r *x509x.CertificateRequest) error {
	return WriteCSRDescription(w, DescribeCSR(r))
}

// WriteCSRDescription prints a described CSR for people.
func WriteCSRDescription(w io.Writer, d CSR) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Subject:\t%s\n", d.Subject)
	fmt.Fprintf(tw, "Key algorithm:\t%s\n", d.KeyAlgorithm)
	if d.AltKey != "" {
		fmt.Fprintf(tw, "Alt key algorithm:\t%s\n", d.AltKey)
	}
	for k, v := range map[string][]string{"DNS names": d.DNSNames, "IP addresses": d.IPAddresses, "Emails": d.Emails, "URIs": d.URIs} {
		if len(v) > 0 {
			fmt.Fprintf(tw, "%s:\t%s\n", k, strings.Join(v, ", "))
		}
	}
	if st := d.Statement; st != nil {
		fmt.Fprintf(tw, "Signature:\t%s, by the key of the signature certificate %s (serial %s, issuer %s)\n", d.Signature, st.Subject, st.Serial, st.Issuer)
		fmt.Fprintf(tw, "Statement:\tRFC 9883 statement of possession; the CA checks the signature certificate\n")
		return tw.Flush()
	}
	fmt.Fprintf(tw, "Signature:\t%s (proof of possession checked)\n", d.Signature)
	return tw.Flush()
}

var keyUsageNames = []struct {
	bit  x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "digitalSignature"}, {x509.KeyUsageContentCommitment, "contentCommitment"},
	{x509.KeyUsageKeyEncipherment, "keyEncipherment"}, {x509.KeyUsageDataEncipherment, "dataEncipherment"},
	{x509.KeyUsageKeyAgreement, "keyAgreement"}, {x509.KeyUsageCertSign, "keyCertSign"},
	{x509.KeyUsageCRLSign, "cRLSign"}, {x509.KeyUsageEncipherOnly, "encipherOnly"}, {x509.KeyUsageDecipherOnly, "decipherOnly"},
}

// KeyUsages names the bits of a key usage.
func KeyUsages(ku x509.KeyUsage) []string {
	var out []string
	for _, k := range keyUsageNames {
		if ku&k.bit != 0 {
			out = append(out, k.name)
		}
	}
	return out
}

var extKeyUsageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
	x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
	x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
}

// ExtKeyUsages names extended key usages.
func ExtKeyUsages(ekus []x509.ExtKeyUsage) []string {
	var out []string
	for _, e := range ekus {
		if n, ok := extKeyUsageNames[e]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("eku-%d", e))
		}
	}
	sort.Strings(out)
	return out
}
