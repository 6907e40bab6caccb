package cms

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

const interopDir = "../../../shared/interop/pqc-certificates-r5"

// fixedNow lies inside the validity of the Bouncy Castle artifacts.
var fixedNow = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func readVector(t testing.TB, pattern string) []byte {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(interopDir, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("%s: %d matches (%v)", pattern, len(m), err)
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bouncy Castle's SignedData (BER, indefinite lengths, signed attributes
// with CMSAlgorithmProtection) by ML-DSA-65 and composite
// MLDSA65-ECDSA-P256 verify against the certificates inside (their
// issuer, an ML-DSA-44 trust anchor, is not among the vectors).
func TestInteropSignedData(t *testing.T) {
	want := readVector(t, "bc-cms/expected_plaintext.txt")
	for _, c := range []struct{ file, alg string }{
		{"bc-cms/ml-dsa-65-*_signed_attrs.der", "ml-dsa-65"},
		{"bc-cms/MLDSA65-ECDSA-P256-*_signed_attrs.der", "composite-mldsa65-ecdsa-p256"},
	} {
		der := readVector(t, c.file)
		sd, err := ParseSignedData(der)
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		if !bytes.Equal(sd.Content, want) {
			t.Fatalf("%s: content %q", c.alg, sd.Content)
		}
		vs, err := sd.Verify(VerifyOptions{Now: fixedNow})
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		if len(vs) != 1 || vs[0].Algorithm != c.alg || vs[0].Chain != nil {
			t.Fatalf("%s: verified %+v", c.alg, vs)
		}
		// The content changed: the digest no longer matches.
		if _, err := sd.Verify(VerifyOptions{Content: []byte("Hello, World?"), Now: fixedNow}); err == nil {
			t.Fatalf("%s: other content accepted", c.alg)
		}
		// A flipped signature bit is caught.
		bad := bytes.Clone(der)
		bad[len(bad)-40] ^= 1
		if sd2, err := ParseSignedData(bad); err == nil {
			if _, err := sd2.Verify(VerifyOptions{Now: fixedNow}); err == nil {
				t.Fatalf("%s: tampered signature accepted", c.alg)
			}
		}
		// The signer's certificate does not chain to an unrelated anchor.
		ta, _ := x509.ParseCertificate(readVector(t, "bc/MLDSA65-ECDSA-P256-*_ta.der"))
		if _, err := sd.Verify(VerifyOptions{Roots: []*x509.Certificate{ta}, Now: fixedNow}); err == nil {
			t.Fatalf("%s: chained to an unrelated anchor", c.alg)
		}
	}
}

// Bouncy Castle's EnvelopedData and AuthEnvelopedData with a
// KEMRecipientInfo for ML-KEM-768 (HKDF-SHA256, with and without ukm)
// decrypt to the expected plaintext, with and without the recipient's
// certificate.
func TestInteropKEMRI(t *testing.T) {
	want := readVector(t, "bc-cms/expected_plaintext.txt")
	key, err := algo.ParsePKCS8(readVector(t, "bc-cms/ml-kem-768-*_priv.der"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(readVector(t, "bc-cms/ml-kem-768-*_ee.der"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(interopDir, "bc-cms", "*_kemri_*.der"))
	if len(files) != 4 {
		t.Fatalf("%d KEMRI vectors, want 4", len(files))
	}
	for _, f := range files {
		der, _ := os.ReadFile(f)
		for _, c := range []*x509.Certificate{cert, nil} {
			got, err := Decrypt(der, key, c)
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: got %q", filepath.Base(f), got)
			}
		}
		e, err := ParseEnvelope(der)
		if err != nil || len(e.Recipients) != 1 || e.Recipients[0].Kind != "kemri" || e.Recipients[0].KeyAlgorithm != "ml-kem-768" {
			t.Fatalf("%s: %+v %v", filepath.Base(f), e, err)
		}
		if e.Auth != strings.Contains(f, "_auth_") {
			t.Fatalf("%s: auth %v", filepath.Base(f), e.Auth)
		}
	}
}
