package est

import (
	"bytes"
	"testing"
)

// Binary DER is taken whole: a CSR whose signature ends in a byte that
// happens to be ASCII white space (0x20, 0x0a, ...) must not lose it.
func TestDecodeDERKeepsTrailingSpaceBytes(t *testing.T) {
	der := mustCSR(t, "der.example.com")
	for _, last := range []byte{' ', '\n', '\r', '\t', '\v', '\f'} {
		body := append(bytes.Clone(der[:len(der)-1]), last)
		got, err := decodeCSRBody(body)
		if err != nil {
			t.Fatalf("last byte %#x: %v", last, err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("last byte %#x: got %d bytes, want %d", last, len(got), len(body))
		}
	}
	// White space around binary DER is allowed, and cut.
	for _, body := range [][]byte{append(bytes.Clone(der), "\r\n"...), append([]byte("\n "), der...)} {
		got, err := decodeCSRBody(body)
		if err != nil || !bytes.Equal(got, der) {
			t.Fatalf("DER with white space around it: %d bytes, %v", len(got), err)
		}
	}
	// Base64 and PEM bodies still lose their surrounding white space.
	for _, body := range [][]byte{append([]byte("\r\n"), encodeBase64(der)...), append(encodeBase64(der), " \n"...)} {
		got, err := decodeCSRBody(body)
		if err != nil || !bytes.Equal(got, der) {
			t.Fatalf("%q: %v", body[:8], err)
		}
	}
}
