package cms

import (
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// Decode returns the BER of a CMS file: PEM (CMS, PKCS7) or the raw bytes.
func Decode(data []byte) ([]byte, error) {
	if len(data) > 2*MaxMessage {
		return nil, fmt.Errorf("cms: file of %d bytes exceeds the limit", len(data))
	}
	if block, _ := pem.Decode(data); block != nil {
		switch block.Type {
		case "CMS", "PKCS7", "PKCS #7 SIGNED DATA":
			return block.Bytes, nil
		}
		return nil, fmt.Errorf("cms: PEM block %q is not CMS", block.Type)
	}
	return data, nil
}

// EncodePEM writes a CMS message as a "CMS" PEM block (RFC 7468).
func EncodePEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CMS", Bytes: der})
}

// Summary describes a message for people (`qpki cms info`).
func Summary(ber []byte) (string, error) {
	typ, err := ContentType(ber)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Content type:      %s\n", OIDName(typ))
	switch {
	case typ.Equal(OIDSignedData):
		sd, err := ParseSignedData(ber)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "Encapsulated:      %s", OIDName(sd.ContentType))
		if sd.Content == nil {
			b.WriteString(" (detached)\n")
		} else {
			fmt.Fprintf(&b, ", %d bytes\n", len(sd.Content))
		}
		fmt.Fprintf(&b, "Certificates:      %d\n", len(sd.Certificates))
		for _, c := range sd.Certificates {
			fmt.Fprintf(&b, "  %s (issuer %s)\n", c.Subject, c.Issuer)
		}
		fmt.Fprintf(&b, "Signers:           %d\n", len(sd.Signers))
		for i, s := range sd.Signers {
			fmt.Fprintf(&b, "  %d: %s with digest %s", i+1, s.SignatureAlgorithm, s.DigestAlgorithm)
			if !s.SigningTime.IsZero() {
				fmt.Fprintf(&b, ", signed %s", s.SigningTime.UTC().Format(time.RFC3339))
			}
			b.WriteString("\n")
		}
	case typ.Equal(OIDEnvelopedData), typ.Equal(OIDAuthEnvelopedData):
		e, err := ParseEnvelope(ber)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "Content:           %s, encrypted with %s\n", OIDName(e.ContentType), e.ContentEncryption)
		fmt.Fprintf(&b, "Recipients:        %d\n", len(e.Recipients))
		for i, r := range e.Recipients {
			fmt.Fprintf(&b, "  %d: %s", i+1, r.Kind)
			if r.KeyAlgorithm != "" {
				fmt.Fprintf(&b, " (%s)", r.KeyAlgorithm)
			}
			b.WriteString("\n")
		}
	}
	return b.String(), nil
}
