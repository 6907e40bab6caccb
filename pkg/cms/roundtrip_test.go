package cms

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
)

var signAlgs = []algo.Algorithm{
	algo.ECDSAP256, algo.ECDSAP384, algo.RSA2048, algo.Ed25519,
	algo.MLDSA44, algo.MLDSA65, algo.MLDSA87,
	algo.SLHDSASHA2128f, algo.SLHDSASHAKE128f, algo.SLHDSASHAKE192f,
	algo.CompositeMLDSA44ECDSAP256, algo.CompositeMLDSA65ECDSAP256, algo.CompositeMLDSA87Ed448, algo.CompositeMLDSA65RSA3072PSS,
}

// Every signature algorithm signs and verifies, attached and detached,
// with its chain to the root; a changed content or another root fails.
func TestSignVerifyRoundTrip(t *testing.T) {
	root := testRoot(t).root
	content := []byte("signed content")
	for _, a := range signAlgs {
		t.Run(string(a), func(t *testing.T) {
			priv, cert := leaf(t, a)
			for _, detached := range []bool{false, true} {
				der, err := Sign(rand.Reader, content, SignOptions{Signer: signerOf(t, priv), Certificate: cert, Detached: detached})
				if err != nil {
					t.Fatal(err)
				}
				sd, err := ParseSignedData(der)
				if err != nil {
					t.Fatal(err)
				}
				opts := VerifyOptions{Roots: []*x509.Certificate{root}}
				if detached {
					if sd.Content != nil {
						t.Fatal("detached signature carries the content")
					}
					opts.Content = content
				}
				vs, err := sd.Verify(opts)
				if err != nil {
					t.Fatal(err)
				}
				if len(vs) != 1 || len(vs[0].Chain) != 2 || vs[0].Algorithm != string(a) && a.Family() != algo.FamilyECDSA && a.Family() != algo.FamilyRSA && a != algo.Ed25519 {
					t.Fatalf("verified %+v", vs)
				}
				opts.Content = []byte("signed contenT")
				if _, err := sd.Verify(opts); err == nil {
					t.Fatal("changed content verified")
				}
			}
		})
	}
}

// Signing with a pre-hash or brainpool algorithm is refused with the reason.
func TestSignRefused(t *testing.T) {
	for _, a := range []algo.Algorithm{algo.HashMLDSA65SHA512, algo.CompositeMLDSA65ECDSABP256} {
		if _, err := signatureAlgorithm(a); err == nil {
			t.Fatalf("%s: signature algorithm given", a)
		}
	}
}

var kemAlgs = []algo.Algorithm{
	algo.RSA2048, algo.ECDSAP256, algo.ECDSAP384,
	algo.MLKEM512, algo.MLKEM768, algo.MLKEM1024,
	algo.CompositeMLKEM768X25519, algo.CompositeMLKEM768P256, algo.CompositeMLKEM1024P384, algo.CompositeMLKEM768RSA2048, algo.CompositeMLKEM1024X448,
}

// Every recipient type round-trips in EnvelopedData and AuthEnvelopedData;
// another key is told the message is not for it; a changed tag or
// ciphertext is caught.
func TestEncryptDecryptRoundTrip(t *testing.T) {
	content := []byte("the secret content, longer than one AES block")
	_, otherCert := leaf(t, algo.MLKEM768)
	strangerKey, strangerCert := leaf(t, algo.MLKEM768)
	for _, a := range kemAlgs {
		t.Run(string(a), func(t *testing.T) {
			priv, cert := leaf(t, a)
			for _, opts := range []EncryptOptions{{}, {Auth: true}, {RSAPKCS1v15: true}} {
				der, err := Encrypt(rand.Reader, content, []*x509.Certificate{otherCert, cert}, opts)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range []*x509.Certificate{cert, nil} {
					got, err := Decrypt(der, priv, c)
					if err != nil || !bytes.Equal(got, content) {
						t.Fatalf("auth=%v: %q %v", opts.Auth, got, err)
					}
				}
				if _, err := Decrypt(der, strangerKey, strangerCert); !errors.Is(err, ErrNoRecipient) {
					t.Fatalf("wrong recipient: %v", err)
				}
				if _, err := Decrypt(der, priv, otherCert); err == nil || !strings.Contains(err.Error(), "not the certificate's") {
					t.Fatalf("key of another certificate: %v", err)
				}
				bad := bytes.Clone(der)
				bad[len(bad)-1] ^= 1 // the GCM tag, or the last CBC block
				got, err := Decrypt(bad, priv, cert)
				switch {
				case opts.Auth && err == nil:
					t.Fatalf("tampered authenticated message decrypted to %q", got)
				case !opts.Auth && err == nil && bytes.Equal(got, content):
					// CBC is not authenticated: a changed last block keeps
					// valid padding once in 256, but never gives the content.
					t.Fatalf("tampered CBC message decrypted to the original content")
				}
			}
		})
	}
}

// Malformed input is a clear error, never a panic: truncations of every
// length, an unknown content type, unknown algorithms.
func TestMalformed(t *testing.T) {
	priv, cert := leaf(t, algo.ECDSAP256)
	signed, _ := Sign(rand.Reader, []byte("x"), SignOptions{Signer: signerOf(t, priv), Certificate: cert})
	kpriv, kcert := leaf(t, algo.MLKEM768)
	enveloped, _ := Encrypt(rand.Reader, []byte("x"), []*x509.Certificate{kcert}, EncryptOptions{Auth: true})
	for _, msg := range [][]byte{signed, enveloped} {
		for n := 0; n < len(msg); n += 1 + n/16 {
			if sd, err := ParseSignedData(msg[:n]); err == nil {
				sd.Verify(VerifyOptions{})
			}
			Decrypt(msg[:n], kpriv, nil)
		}
	}
	if _, err := ParseSignedData([]byte{0x30, 0x80}); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("open indefinite length: %v", err)
	}
	// An unknown content type.
	data, _ := wrapContentInfo([]int{1, 2, 3, 4}, mustRaw([]byte("x")).FullBytes)
	if _, err := ParseEnvelope(data); err == nil || !strings.Contains(err.Error(), "1.2.3.4") {
		t.Fatalf("unknown content type: %v", err)
	}
	// An unknown signature algorithm OID.
	bad := bytes.Replace(signed, []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}, []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x09}, -1)
	sd, err := ParseSignedData(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Verify(VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "unsupported signature algorithm 1.2.840.10045.4.3.9") {
		t.Fatalf("unknown signature OID: %v", err)
	}
	// An unknown content cipher.
	badEnv := bytes.Replace(enveloped, []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2e}, []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x7f}, 1)
	if _, err := Decrypt(badEnv, kpriv, kcert); err == nil || !strings.Contains(err.Error(), "unsupported content encryption") {
		t.Fatalf("unknown cipher: %v", err)
	}
}

// Recipients named by key identifier (EST's serverkeygen): KTRI version 2
// with a subjectKeyIdentifier, KARI with an rKeyId, KEMRI with a
// subjectKeyIdentifier; a certificate with that SKI selects them, one with
// another does not.
func TestEncryptToKeyID(t *testing.T) {
	for _, a := range []algo.Algorithm{algo.RSA2048, algo.ECDSAP256, algo.MLKEM768} {
		priv, cert := leaf(t, a)
		pub, _ := algo.PublicKey(priv)
		cert.SubjectKeyId = []byte("0123456789abcdefghij") // as if the certificate carried it
		der, err := EncryptTo(rand.Reader, []byte("by key id"), []Recipient{{PublicKey: pub, KeyID: cert.SubjectKeyId}}, EncryptOptions{ContentType: OIDSignedData})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []*x509.Certificate{nil, cert} {
			if got, err := Decrypt(der, priv, c); err != nil || string(got) != "by key id" {
				t.Fatalf("%s: %q %v", a, got, err)
			}
		}
		other := *cert
		other.SubjectKeyId = []byte("another key id")
		if _, err := Decrypt(der, priv, &other); !errors.Is(err, ErrNoRecipient) {
			t.Fatalf("%s: another key id: %v", a, err)
		}
		e, _ := ParseEnvelope(der)
		if !e.ContentType.Equal(OIDSignedData) {
			t.Fatalf("%s: content type %s", a, e.ContentType)
		}
	}
	if _, err := EncryptTo(rand.Reader, nil, []Recipient{{}}, EncryptOptions{}); err == nil {
		t.Fatal("empty recipient accepted")
	}
}
