package keyfile

import (
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
)

func openssl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not found")
		}
		t.Skip("openssl not found")
	}
	return p
}

func pw(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }

func TestRoundTripEveryClassicalAlgorithm(t *testing.T) {
	for _, a := range []algo.Algorithm{algo.ECDSAP256, algo.ECDSAP384, algo.ECDSAP521, algo.RSA2048, algo.Ed25519} {
		t.Run(string(a), func(t *testing.T) {
			priv, err := algo.GenerateKey(a, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			for _, pass := range []string{"", "s3cret"} {
				path := filepath.Join(t.TempDir(), "k.key")
				if err := Write(path, priv, []byte(pass)); err != nil {
					t.Fatal(err)
				}
				if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
					t.Errorf("mode %v, want 0600", fi.Mode().Perm())
				}
				got, err := Read(path, pw(pass))
				if err != nil {
					t.Fatal(err)
				}
				pub, _ := algo.PublicKey(got)
				if ga, _ := algo.Of(pub); ga != a {
					t.Errorf("read back %s, want %s", ga, a)
				}
				if err := Write(path, priv, nil); err == nil {
					t.Error("Write replaced an existing key file")
				}
			}
		})
	}
}

func TestPassphraseErrors(t *testing.T) {
	priv, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
	data, err := Encode(priv, []byte("right"))
	if err != nil {
		t.Fatal(err)
	}
	if !IsEncrypted(data) {
		t.Fatal("not marked encrypted")
	}
	if _, err := Decode(data, pw("wrong")); !errors.Is(err, ErrPassphrase) {
		t.Errorf("wrong passphrase: %v", err)
	}
	if _, err := Decode(data, nil); !errors.Is(err, ErrNeedPassphrase) {
		t.Errorf("no passphrase: %v", err)
	}
	for _, bad := range []string{"", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"} {
		if _, err := Decode([]byte(bad), nil); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// Keys qpki encrypts open in openssl, and keys openssl encrypts open in
// qpki.
func TestOpenSSLInterop(t *testing.T) {
	bin := openssl(t)
	dir := t.TempDir()
	priv, _ := algo.GenerateKey(algo.ECDSAP384, rand.Reader)
	ours := filepath.Join(dir, "ours.key")
	if err := Write(ours, priv, []byte("pass phrase")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "pkey", "-in", ours, "-passin", "pass:pass phrase", "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "P-384") {
		t.Fatalf("openssl could not read our key: %v\n%s", err, out)
	}
	theirs := filepath.Join(dir, "theirs.key")
	out, err = exec.Command(bin, "genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:abc", "-out", theirs).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	key, err := Read(theirs, pw("abc"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := algo.PublicKey(key)
	if a, _ := algo.Of(pub); a != algo.Ed25519 {
		t.Errorf("openssl key read as %s", a)
	}
}

func FuzzDecode(f *testing.F) {
	priv, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
	clear, _ := Encode(priv, nil)
	enc, _ := Encode(priv, []byte("x"))
	f.Add(clear)
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		Decode(data, pw("x"))
	})
}
