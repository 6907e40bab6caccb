// Package core holds what the ACME front-end's parts share: identifier
// rules, challenge types, key authorizations, random ids and the ARI
// certificate identifier.
package core

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/pkg/store"
)

// Identifier types.
const (
	IdentDNS = "dns" // RFC 8555 §9.7.7
	IdentIP  = "ip"  // RFC 8738
)

// Challenge types.
const (
	ChallengeHTTP01    = "http-01"     // RFC 8555 §8.3
	ChallengeDNS01     = "dns-01"      // RFC 8555 §8.4
	ChallengeTLSALPN01 = "tls-alpn-01" // RFC 8737
)

// ChallengeTypes are the challenges offered for an identifier: a wildcard
// only through dns-01, an IP address never through it (RFC 8738 §7).
func ChallengeTypes(id store.ACMEIdentifier, wildcard bool) []string {
	switch {
	case id.Type == IdentIP:
		return []string{ChallengeHTTP01, ChallengeTLSALPN01}
	case wildcard:
		return []string{ChallengeDNS01}
	}
	return []string{ChallengeHTTP01, ChallengeDNS01, ChallengeTLSALPN01}
}

const maxDNSName = 253

// NormalizeIdentifier checks an identifier from a client and returns it
// in canonical form, with the wildcard label split off: "*.example.com"
// is example.com with wildcard true. The problem is malformed for a
// syntax error, unsupportedIdentifier for an unknown type.
func NormalizeIdentifier(id store.ACMEIdentifier) (store.ACMEIdentifier, bool, *probs.Problem) {
	switch id.Type {
	case IdentDNS:
		name := strings.ToLower(id.Value)
		wildcard := strings.HasPrefix(name, "*.")
		if wildcard {
			name = name[2:]
		}
		if err := checkDNSName(name); err != nil {
			return id, false, probs.Malformed("invalid DNS name %q: %v", truncate(id.Value), err)
		}
		return store.ACMEIdentifier{Type: IdentDNS, Value: name}, wildcard, nil
	case IdentIP:
		a, err := netip.ParseAddr(id.Value)
		if err != nil || a.Zone() != "" {
			return id, false, probs.Malformed("invalid IP address %q", truncate(id.Value))
		}
		return store.ACMEIdentifier{Type: IdentIP, Value: a.Unmap().String()}, false, nil
	}
	return id, false, probs.UnsupportedIdentifier("identifier type %q is not supported (dns and ip are)", truncate(id.Type))
}

// checkDNSName accepts a lower-case LDH name in A-label form: what a
// certificate's dNSName may hold (RFC 5280 §4.2.1.6), without a wildcard.
func checkDNSName(s string) error {
	if s == "" || len(s) > maxDNSName {
		return fmt.Errorf("length must be 1 to %d", maxDNSName)
	}
	if strings.HasSuffix(s, ".") {
		return errors.New("trailing dot")
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return errors.New("a name needs at least two labels")
	}
	for _, l := range labels {
		switch {
		case l == "":
			return errors.New("empty label")
		case len(l) > 63:
			return errors.New("label longer than 63 characters")
		case l[0] == '-' || l[len(l)-1] == '-':
			return errors.New("label starts or ends with '-'")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				if c == '*' {
					return errors.New("a wildcard may only be the whole first label")
				}
				return fmt.Errorf("character %q", c)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return errors.New("the last label is numeric (use an ip identifier for addresses)")
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// Display is the identifier as a certificate names it: "*.example.com"
// for a wildcard.
func Display(id store.ACMEIdentifier, wildcard bool) string {
	if wildcard {
		return "*." + id.Value
	}
	return id.Value
}

// ReverseName is the reverse-mapping DNS name of an IP address (RFC 8738
// §6: the SNI of a tls-alpn-01 validation for an ip identifier).
func ReverseName(ip netip.Addr) string {
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	var sb strings.Builder
	const hex = "0123456789abcdef"
	for i := len(b) - 1; i >= 0; i-- {
		sb.WriteByte(hex[b[i]&0xf])
		sb.WriteByte('.')
		sb.WriteByte(hex[b[i]>>4])
		sb.WriteByte('.')
	}
	sb.WriteString("ip6.arpa")
	return sb.String()
}

// Thumbprint is a JWK's RFC 7638 SHA-256 thumbprint in base64url.
func Thumbprint(k *jose.JSONWebKey) (string, error) {
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}

// KeyAuthorization is token || '.' || thumbprint (RFC 8555 §8.1).
func KeyAuthorization(token, thumbprint string) string { return token + "." + thumbprint }

// DNS01Value is the TXT record value of a dns-01 challenge: the base64url
// SHA-256 digest of the key authorization (RFC 8555 §8.4).
func DNS01Value(keyAuth string) string {
	sum := sha256.Sum256([]byte(keyAuth))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// NewID returns a random identifier for an object: 128 bits, base64url.
func NewID() string { return randomString(16) }

// NewToken returns a challenge token: 256 bits, base64url (RFC 8555 §8.3
// asks for at least 128).
func NewToken() string { return randomString(32) }

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// CertID is a certificate's ARI identifier (RFC 9773 §4.1): the base64url
// key identifier of its authority key identifier, a dot, and the base64url
// content octets of its DER serial number.
func CertID(cert *x509.Certificate) (string, error) {
	if len(cert.AuthorityKeyId) == 0 {
		return "", errors.New("the certificate has no authority key identifier")
	}
	return certID(cert.AuthorityKeyId, cert.SerialNumber)
}

func certID(aki []byte, serial *big.Int) (string, error) {
	der, err := asn1.Marshal(serial)
	if err != nil {
		return "", err
	}
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(aki) + "." + enc.EncodeToString(raw.Bytes), nil
}

// ParseCertID splits an ARI identifier into its key identifier and serial.
func ParseCertID(s string) (aki []byte, serial *big.Int, err error) {
	a, b, ok := strings.Cut(s, ".")
	if !ok || len(s) > 512 || strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != "" {
		return nil, nil, errors.New("want base64url keyIdentifier.serialNumber")
	}
	enc := base64.RawURLEncoding.Strict()
	if aki, err = enc.DecodeString(a); err != nil || len(aki) == 0 {
		return nil, nil, errors.New("the key identifier is not base64url")
	}
	content, err := enc.DecodeString(b)
	if err != nil || len(content) == 0 || len(content) > 21 {
		return nil, nil, errors.New("the serial number is not base64url of 1 to 21 octets")
	}
	if content[0]&0x80 != 0 {
		return nil, nil, errors.New("the serial number is negative")
	}
	if len(content) > 1 && content[0] == 0 && content[1]&0x80 == 0 {
		return nil, nil, errors.New("the serial number is not minimally encoded")
	}
	return aki, new(big.Int).SetBytes(content), nil
}
