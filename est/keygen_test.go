package est

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/cms"
)

type keygenParts struct {
	keyType string
	key     []byte // DER: PKCS#8 or the CMS ContentInfo
	cert    *x509.Certificate
}

// splitKeygen reads a serverkeygen answer as a client does.
func splitKeygen(t testing.TB, r response) keygenParts {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("serverkeygen: %d %s", r.code, r.text())
	}
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	var out keygenParts
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			if i != 2 {
				t.Fatalf("%d parts, want 2", i)
			}
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		der, err := decodeBase64(body)
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Get("Content-Transfer-Encoding") != "base64" {
			t.Errorf("part %d: Content-Transfer-Encoding %q", i, p.Header.Get("Content-Transfer-Encoding"))
		}
		switch ct := p.Header.Get("Content-Type"); ct {
		case mediaCertsOnly:
			certs, err := cms.ParseCertsOnly(der)
			if err != nil || len(certs) != 1 {
				t.Fatalf("certificate part: %v", err)
			}
			out.cert = certs[0]
		default:
			out.keyType, out.key = ct, der
		}
	}
}

func checkKeyMatches(t testing.TB, pkcs8 []byte, cert *x509.Certificate) crypto.Signer {
	t.Helper()
	priv, err := algo.ParsePKCS8(pkcs8)
	if err != nil {
		t.Fatal(err)
	}
	s := priv.(crypto.Signer)
	if !samePublicKey(s.Public(), cert) {
		t.Fatal("the key does not match the certificate")
	}
	return s
}

func TestServerKeygen(t *testing.T) {
	e := sharedEnv(t)
	dev := e.deviceCert("router-kg")
	c := e.client(&dev)
	csr, csrKey := newCSR(t, "kg.example.com")
	parts := splitKeygen(t, e.do(c, "POST", "serverkeygen", b64(csr), "", ""))
	if parts.keyType != mediaPKCS8 {
		t.Fatalf("key part %q", parts.keyType)
	}
	checkKeyMatches(t, parts.key, parts.cert)
	if parts.cert.DNSNames[0] != "kg.example.com" || samePublicKey(csrKey.Public(), parts.cert) {
		t.Fatal("the certificate is not for a generated key with the CSR's names")
	}
	// A key is delivered once.
	if r := e.do(c, "POST", "serverkeygen", b64(csr), "", ""); r.code != http.StatusConflict {
		t.Errorf("second delivery: %d %s", r.code, r.text())
	}
	// HTTP Basic works too, and the CSR's signature is not needed.
	csr2, _ := newCSR(t, "kg2.example.com")
	csr2[len(csr2)-2] ^= 0xff
	parts = splitKeygen(t, e.do(e.client(nil), "POST", "serverkeygen", b64(csr2), testUser, testPass))
	checkKeyMatches(t, parts.key, parts.cert)
}

// The encrypted variant (RFC 7030 §4.4.1.2, §4.4.2): the key comes in an
// EnvelopedData to the key the CSR's AsymmetricDecryptKeyIdentifier names.
func TestServerKeygenEncrypted(t *testing.T) {
	e := sharedEnv(t)
	dev := e.deviceCert("router-kge")
	c := e.client(&dev)
	devKey := dev.PrivateKey.(*ecdsa.PrivateKey)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSPKI, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	for _, tc := range []struct {
		name string
		csr  []byte
		key  crypto.Signer
	}{
		// The TLS client certificate's EC key, by RFC 5280 key identifier.
		{"ecdh to the client certificate", csrWithKey(t, mustECKey(), pkix.Name{CommonName: "kge1.example.com"}, []string{"kge1.example.com"},
			attribute{oidAsymmDecryptKeyID, []asn1.RawValue{mustRaw(keyIDs(dev.Leaf.RawSubjectPublicKeyInfo)[0])}}), devKey},
		// The CSR's own RSA key, by RFC 7093 key identifier; the client
		// label's ec/tls-client takes no RSA key, so the generated key is
		// the profile's P-256.
		{"rsa-oaep to the CSR key", csrWithKey(t, rsaKey, pkix.Name{CommonName: "kge2.example.com"}, []string{"kge2.example.com"},
			attribute{oidAsymmDecryptKeyID, []asn1.RawValue{mustRaw(keyIDs(rsaSPKI)[1])}}), rsaKey},
	} {
		parts := splitKeygen(t, e.do(c, "POST", "client/serverkeygen", b64(tc.csr), "", ""))
		if parts.keyType != mediaKeyCMS {
			t.Fatalf("%s: key part %q", tc.name, parts.keyType)
		}
		if bytes.Contains(parts.key, []byte{0x02, 0x01, 0x00, 0x30}) && findPKCS8(parts.key) {
			t.Fatalf("%s: the clear key is in the encrypted part", tc.name)
		}
		inner, err := openEnvelope(parts.key, tc.key)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		pkcs8, err := openKeyPackage(inner, parts.cert)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		k := checkKeyMatches(t, pkcs8, parts.cert)
		if _, ok := k.Public().(*ecdsa.PublicKey); !ok {
			t.Errorf("%s: generated a %T", tc.name, k.Public())
		}
		opensslDecrypt(t, parts.key, tc.key, inner)
	}
	for _, bad := range []struct {
		name, reason string
		attr         attribute
	}{
		{"symmetric key", "symmetric", attribute{oidDecryptKeyID, []asn1.RawValue{mustRaw([]byte("kek-1"))}}},
		{"unknown key", "no key of the client", attribute{oidAsymmDecryptKeyID, []asn1.RawValue{mustRaw([]byte("0123456789abcdef0123"))}}},
		{"not an octet string", "OCTET STRING", attribute{oidAsymmDecryptKeyID, []asn1.RawValue{mustRaw(7)}}},
	} {
		csr, _ := newCSR(t, "bad.example.com", bad.attr)
		if r := e.do(c, "POST", "serverkeygen", b64(csr), "", ""); r.code != http.StatusBadRequest || !strings.Contains(r.text(), bad.reason) {
			t.Errorf("%s: %d %s", bad.name, r.code, r.text())
		}
	}
}

func mustECKey() *ecdsa.PrivateKey {
	k, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
	return k.(*ecdsa.PrivateKey)
}

// findPKCS8 reports whether a PKCS#8 key parses anywhere in b.
func findPKCS8(b []byte) bool {
	for i := range b {
		if b[i] == 0x30 {
			if _, err := x509.ParsePKCS8PrivateKey(b[i:]); err == nil {
				return true
			}
		}
	}
	return false
}

// openEnvelope decrypts an EnvelopedData as a client would, after
// checking its shape: one recipient, RSAES-OAEP or ECDH (X9.63 SHA-256
// KDF) by key identifier, enclosing a SignedData.
func openEnvelope(der []byte, key crypto.Signer) ([]byte, error) {
	e, err := cms.ParseEnvelope(der)
	if err != nil || e.Auth {
		return nil, fmt.Errorf("not an EnvelopedData: %v", err)
	}
	if len(e.Recipients) != 1 || !e.ContentType.Equal(cms.OIDSignedData) {
		return nil, errors.New("unexpected EnvelopedData shape")
	}
	want := map[bool]string{true: "rsaes-oaep", false: "dhSinglePass-stdDH-sha256kdf"}[isRSA(key)]
	if r := e.Recipients[0]; r.KeyAlgorithm != want {
		return nil, fmt.Errorf("recipient %s (%s), want %s", r.Kind, r.KeyAlgorithm, want)
	}
	return e.Decrypt(key, nil)
}

func isRSA(k crypto.Signer) bool {
	_, ok := k.(*rsa.PrivateKey)
	return ok
}

// openKeyPackage checks the SignedData around the key package (signed
// by the generated key, whose certificate it carries) and returns the
// PKCS#8 key it holds.
func openKeyPackage(der []byte, cert *x509.Certificate) ([]byte, error) {
	msg, err := cms.Wrap(cms.OIDSignedData, der)
	if err != nil {
		return nil, err
	}
	sd, err := cms.ParseSignedData(msg)
	if err != nil {
		return nil, fmt.Errorf("SignedData: %v", err)
	}
	if !sd.ContentType.Equal(oidKeyPackage) || len(sd.Signers) != 1 {
		return nil, errors.New("not a signed key package")
	}
	if len(sd.Certificates) != 1 || !sd.Certificates[0].Equal(cert) {
		return nil, errors.New("the SignedData does not carry the issued certificate")
	}
	vs, err := sd.Verify(cms.VerifyOptions{})
	if err != nil {
		return nil, err
	}
	if !vs[0].Certificate.Equal(cert) {
		return nil, errors.New("the signer is not the issued certificate")
	}
	var pkg []asn1.RawValue
	if _, err := asn1.Unmarshal(sd.Content, &pkg); err != nil || len(pkg) != 1 {
		return nil, errors.New("malformed AsymmetricKeyPackage")
	}
	return pkg[0].FullBytes, nil
}

// opensslDecrypt checks that OpenSSL opens the EnvelopedData to the same
// content.
func opensslDecrypt(t *testing.T, env []byte, key crypto.PrivateKey, want []byte) {
	openssl := needTool(t, "openssl")
	dir := t.TempDir()
	in, keyFile, out := filepath.Join(dir, "key.p7"), filepath.Join(dir, "client.key"), filepath.Join(dir, "inner.der")
	os.WriteFile(in, env, 0o600)
	writeKey(t, keyFile, key)
	cmd := exec.Command(openssl, "cms", "-decrypt", "-inform", "DER", "-in", in, "-inkey", keyFile, "-binary", "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -decrypt: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatal("openssl decrypted other content")
	}
}
