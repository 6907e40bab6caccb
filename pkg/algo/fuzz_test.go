package algo

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseKeys: whatever the bytes, the PKIX and PKCS#8 parsers of every
// registered algorithm return an error or a key that re-encodes to the
// same bytes; they never panic.
func FuzzParseKeys(f *testing.F) {
	for _, a := range []Algorithm{MLDSA44, SLHDSASHA2128f, MLKEM512, CompositeMLDSA44ECDSAP256, CompositeMLDSA44Ed25519} {
		priv, err := GenerateKey(a, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		der, _ := MarshalPKCS8(priv)
		f.Add(der)
		pub, _ := PublicKey(priv)
		spki, _ := MarshalPKIX(pub)
		f.Add(spki)
	}
	privs, _ := filepath.Glob(filepath.Join(interopDir, "ossl35", "*_priv.der"))
	for _, p := range privs {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if pub, err := ParsePKIX(data); err == nil {
			if a, _ := Of(pub); !a.IsClassical() {
				out, err := MarshalPKIX(pub)
				if err != nil || !bytes.Equal(out, data) {
					t.Fatalf("%s public key does not re-encode to its input", a)
				}
			}
		}
		ParsePKCS8(data)
	})
}
