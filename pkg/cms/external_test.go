package cms

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/internal/nobletest"
	"github.com/qpki/qpki/pkg/algo"
)

func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is required when CI=true")
		}
		t.Skip("openssl not installed")
	}
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// OpenSSL 3 (`openssl cms`) decrypts qpki's classical EnvelopedData and
// AuthEnvelopedData (RSA-OAEP, RSA PKCS #1 v1.5, ECDH) and verifies its
// classical SignedData against the root; and qpki reads OpenSSL's.
func TestOpenSSLInterop(t *testing.T) {
	ossl := opensslPath(t)
	dir := t.TempDir()
	root := writePEM(t, filepath.Join(dir, "root.pem"), "CERTIFICATE", testRoot(t).root.Raw)
	content := []byte("for openssl cms")
	run := func(args ...string) ([]byte, error) {
		cmd := exec.Command(ossl, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, errors.New(err.Error() + ": " + stderr.String())
		}
		return out, nil
	}
	for _, a := range []algo.Algorithm{algo.RSA2048, algo.ECDSAP256, algo.ECDSAP384} {
		priv, cert := leaf(t, a)
		der, _ := algo.MarshalPKCS8(priv)
		keyF := writePEM(t, filepath.Join(dir, string(a)+".key"), "PRIVATE KEY", der)
		certF := writePEM(t, filepath.Join(dir, string(a)+".crt"), "CERTIFICATE", cert.Raw)
		for _, opts := range []EncryptOptions{{}, {Auth: true}, {RSAPKCS1v15: true}} {
			env, err := Encrypt(rand.Reader, content, []*x509.Certificate{cert}, opts)
			if err != nil {
				t.Fatal(err)
			}
			in := filepath.Join(dir, "env.der")
			os.WriteFile(in, env, 0o600)
			out, err := run("cms", "-decrypt", "-inform", "DER", "-in", in, "-recip", certF, "-inkey", keyF)
			if err != nil || !bytes.Equal(out, content) {
				t.Fatalf("%s %+v: openssl cms -decrypt: %q %v", a, opts, out, err)
			}
		}
		if a.CanSign() {
			sd, err := Sign(rand.Reader, content, SignOptions{Signer: signerOf(t, priv), Certificate: cert})
			if err != nil {
				t.Fatal(err)
			}
			in := filepath.Join(dir, "sd.der")
			os.WriteFile(in, sd, 0o600)
			out, err := run("cms", "-verify", "-inform", "DER", "-in", in, "-CAfile", root, "-purpose", "any")
			if err != nil || !bytes.Equal(out, content) {
				t.Fatalf("%s: openssl cms -verify: %q %v", a, out, err)
			}
			// The reverse: OpenSSL signs, qpki verifies.
			data := filepath.Join(dir, "data")
			os.WriteFile(data, content, 0o600)
			osd, err := run("cms", "-sign", "-nodetach", "-binary", "-in", data, "-signer", certF, "-inkey", keyF, "-outform", "DER")
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := ParseSignedData(osd)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parsed.Verify(VerifyOptions{Roots: []*x509.Certificate{testRoot(t).root}}); err != nil {
				t.Fatalf("%s: qpki rejects OpenSSL's SignedData: %v", a, err)
			}
		}
		// OpenSSL encrypts, qpki decrypts.
		data := filepath.Join(dir, "data")
		os.WriteFile(data, content, 0o600)
		oenv, err := run("cms", "-encrypt", "-binary", "-aes-256-cbc", "-in", data, "-outform", "DER", certF)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decrypt(oenv, priv, cert)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%s: qpki decrypting OpenSSL's EnvelopedData: %q %v", a, got, err)
		}
	}
}

// @noble/post-quantum verifies the ML-DSA and SLH-DSA signatures of
// qpki's SignedData over the signed attributes, and refuses them over
// changed attributes.
func TestNobleVerifiesCMS(t *testing.T) {
	node, script := nobletest.Script(t, "../../interop/noble")
	dir := t.TempDir()
	args := []string{script, "verify"}
	var want []string
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	for _, a := range []algo.Algorithm{algo.MLDSA44, algo.MLDSA65, algo.MLDSA87, algo.SLHDSASHA2128f, algo.SLHDSASHAKE128f} {
		priv, cert := leaf(t, a)
		der, err := Sign(rand.Reader, []byte("noble"), SignOptions{Signer: signerOf(t, priv), Certificate: cert})
		if err != nil {
			t.Fatal(err)
		}
		sd, err := ParseSignedData(der)
		if err != nil {
			t.Fatal(err)
		}
		si := sd.Signers[0].raw
		tbs := encodeTLV([]byte{0x31}, si.SignedAttrs.Bytes)
		pk, _ := algo.PublicKey(priv)
		pub := write(string(a)+".pub", pk.(interface{ Bytes() []byte }).Bytes())
		sig := write(string(a)+".sig", si.Signature)
		args = append(args, string(a), pub, write(string(a)+".tbs", tbs), sig,
			string(a), pub, write(string(a)+".bad", append(bytes.Clone(tbs), 0)), sig)
		want = append(want, "OK", "INVALID")
	}
	out, err := exec.Command(node, args...).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("noble: %v %s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("noble says %v, want %v", got, want)
	}
}
