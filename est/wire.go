package est

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Media types (RFC 7030 §3.2.4, RFC 8951).
const (
	mediaCertsOnly = "application/pkcs7-mime; smime-type=certs-only"
	mediaKeyCMS    = "application/pkcs7-mime; smime-type=server-generated-key"
	mediaPKCS8     = "application/pkcs8"
	mediaCSRAttrs  = "application/csrattrs"
	mediaText      = "text/plain; charset=utf-8"
)

// MaxBody bounds a request body: a base64 CSR of x509x.MaxCSR bytes with
// line breaks fits well within it.
const MaxBody = 512 << 10

// errTooLarge marks a body over MaxBody.
var errTooLarge = errors.New("request body too large")

// readBody reads at most MaxBody bytes of a request body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxBody {
		return nil, errTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("reading the request: %v", err)
	}
	return body, nil
}

// decodeCSRBody turns an EST request body into a CSR's DER. RFC 7030
// bodies are base64 (RFC 8951: with or without line breaks, whatever
// Content-Transfer-Encoding says); a PEM-wrapped CSR and plain DER are
// accepted too, as clients send them.
func decodeCSRBody(body []byte) ([]byte, error) {
	// Base64 of DER starts with 'M' (a SEQUENCE); a body starting with
	// the SEQUENCE tag itself is binary DER. It is cut at its own length,
	// never trimmed: its last byte may well be 0x20 or 0x0a. White space
	// around it is allowed.
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == 0x30 {
		s := cryptobyte.String(t)
		var el cryptobyte.String
		if s.ReadASN1Element(&el, cbasn1.SEQUENCE) && len(bytes.TrimSpace(s)) == 0 {
			return el, nil
		}
		return t, nil // the CSR parser says what is wrong with it
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty request body: send a base64 PKCS#10 CSR")
	}
	if bytes.HasPrefix(body, []byte("-----BEGIN")) {
		block, _ := pem.Decode(body)
		if block == nil {
			return nil, errors.New("malformed PEM")
		}
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("PEM block %q is not a CERTIFICATE REQUEST", block.Type)
		}
		return block.Bytes, nil
	}
	return decodeBase64(body)
}

// decodeBase64 decodes standard base64 that may be broken into lines and
// may lack its padding.
func decodeBase64(text []byte) ([]byte, error) {
	clean := make([]byte, 0, len(text))
	for _, c := range text {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			clean = append(clean, c)
		}
	}
	clean = bytes.TrimRight(clean, "=")
	der := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(der, clean)
	if err != nil {
		return nil, errors.New("the body is not base64")
	}
	return der[:n], nil
}

// encodeBase64 writes base64 in lines of 64 characters, each ending in
// "\n", as `base64 -d` and every EST client read it.
func encodeBase64(der []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(der)
	out := make([]byte, 0, len(enc)+len(enc)/64+1)
	for len(enc) > 64 {
		out = append(out, enc[:64]...)
		out = append(out, '\n')
		enc = enc[64:]
	}
	out = append(out, enc...)
	return append(out, '\n')
}

// writeBase64 answers 200 with a base64 body of the given media type.
func writeBase64(w http.ResponseWriter, mediaType string, der []byte) {
	body := encodeBase64(der)
	h := w.Header()
	h.Set("Content-Type", mediaType)
	// Deprecated by RFC 8951, still expected by RFC 7030 clients.
	h.Set("Content-Transfer-Encoding", "base64")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// httpError answers with a status and a one-line text reason.
func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	h := w.Header()
	h.Set("Content-Type", mediaText)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}
