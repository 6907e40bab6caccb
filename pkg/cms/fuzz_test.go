package cms

import (
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
)

// FuzzParse feeds arbitrary bytes to every CMS entry point: BER
// conversion, SignedData parsing and verification, envelope parsing and
// decryption. None may panic.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(interopDir, "bc-cms", "*.der"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	priv, cert := leaf(f, algo.MLKEM768)
	spriv, scert := leaf(f, algo.ECDSAP256)
	for _, auth := range []bool{false, true} {
		b, _ := Encrypt(rand.Reader, []byte("seed"), []*x509.Certificate{cert, scert}, EncryptOptions{Auth: auth})
		f.Add(b)
	}
	s, _ := Sign(rand.Reader, []byte("seed"), SignOptions{Signer: signerOf(f, spriv), Certificate: scert})
	f.Add(s)
	f.Fuzz(func(t *testing.T, data []byte) {
		if sd, err := ParseSignedData(data); err == nil {
			sd.Verify(VerifyOptions{Content: []byte("seed")})
		}
		if e, err := ParseEnvelope(data); err == nil {
			e.Decrypt(priv, nil)
			e.Decrypt(spriv, scert)
		}
		ContentType(data)
	})
}
