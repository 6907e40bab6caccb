package est

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
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
			certs, err := ParseCertsOnly(der)
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

// openEnvelope decrypts an EnvelopedData as a client would.
func openEnvelope(der []byte, key crypto.Signer) ([]byte, error) {
	var ci contentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil || !ci.ContentType.Equal(oidEnvelopedData) {
		return nil, fmt.Errorf("not an EnvelopedData: %v", err)
	}
	var ed envelopedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &ed); err != nil {
		return nil, err
	}
	if len(ed.RecipientInfos) != 1 || !ed.EncryptedContentInfo.ContentType.Equal(oidSignedData) {
		return nil, errors.New("unexpected EnvelopedData shape")
	}
	ri := ed.RecipientInfos[0]
	var cek []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		var ktri keyTransRecipientInfo
		if _, err := asn1.Unmarshal(ri.FullBytes, &ktri); err != nil {
			return nil, err
		}
		if ktri.Version != 2 || !ktri.KeyEncryptionAlgorithm.Algorithm.Equal(oidRSAESOAEP) {
			return nil, errors.New("unexpected KeyTransRecipientInfo")
		}
		var err error
		if cek, err = rsa.DecryptOAEP(sha256.New(), nil, k, ktri.EncryptedKey, nil); err != nil {
			return nil, err
		}
	case *ecdsa.PrivateKey:
		var kari struct {
			Version                int
			Originator             asn1.RawValue `asn1:"explicit,tag:0"`
			KeyEncryptionAlgorithm algorithmIdentifier
			RecipientEncryptedKeys []recipientEncryptedKey
		}
		if _, err := asn1.UnmarshalWithParams(ri.FullBytes, &kari, "tag:1"); err != nil {
			return nil, err
		}
		var opk originatorPublicKey
		if _, err := asn1.UnmarshalWithParams(kari.Originator.Bytes, &opk, "tag:1"); err != nil {
			return nil, err
		}
		var wrap algorithmIdentifier
		asn1.Unmarshal(kari.KeyEncryptionAlgorithm.Parameters.FullBytes, &wrap)
		if !kari.KeyEncryptionAlgorithm.Algorithm.Equal(oidECDHSHA256KDF) || !wrap.Algorithm.Equal(oidAES256Wrap) {
			return nil, errors.New("unexpected key agreement algorithm")
		}
		priv, _ := k.ECDH()
		eph, err := priv.Curve().NewPublicKey(opk.PublicKey.Bytes)
		if err != nil {
			return nil, err
		}
		z, _ := priv.ECDH(eph)
		shared, _ := asn1.Marshal(eccCMSSharedInfo{KeyInfo: algorithmIdentifier{Algorithm: oidAES256Wrap}, SuppPubInfo: []byte{0, 0, 1, 0}})
		if cek, err = aesKeyUnwrap(x963KDF(z, shared, 32), kari.RecipientEncryptedKeys[0].EncryptedKey); err != nil {
			return nil, err
		}
	}
	var iv []byte
	asn1.Unmarshal(ed.EncryptedContentInfo.ContentEncryptionAlgorithm.Parameters.FullBytes, &iv)
	block, _ := aes.NewCipher(cek)
	ct := ed.EncryptedContentInfo.EncryptedContent.Bytes
	if len(ct)%16 != 0 || len(iv) != 16 {
		return nil, errors.New("bad ciphertext")
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > 16 {
		return nil, errors.New("bad padding")
	}
	return pt[:len(pt)-pad], nil
}

func aesKeyUnwrap(kek, wrapped []byte) ([]byte, error) {
	block, _ := aes.NewCipher(kek)
	n := len(wrapped)/8 - 1
	a := bytes.Clone(wrapped[:8])
	r := bytes.Clone(wrapped[8:])
	buf := make([]byte, 16)
	for j := 5; j >= 0; j-- {
		for i := n - 1; i >= 0; i-- {
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(buf, binary.BigEndian.Uint64(a)^t)
			copy(buf[8:], r[8*i:8*i+8])
			block.Decrypt(buf, buf)
			copy(a, buf[:8])
			copy(r[8*i:], buf[8:])
		}
	}
	if !bytes.Equal(a, []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}) {
		return nil, errors.New("key unwrap: integrity check failed")
	}
	return r, nil
}

// openKeyPackage checks the SignedData around the key package and
// returns the PKCS#8 key it holds.
func openKeyPackage(der []byte, cert *x509.Certificate) ([]byte, error) {
	var sd struct {
		Version          int
		DigestAlgorithms []algorithmIdentifier `asn1:"set"`
		EncapContentInfo struct {
			EContentType asn1.ObjectIdentifier
			EContent     asn1.RawValue `asn1:"explicit,tag:0"`
		}
		Certificates asn1.RawValue `asn1:"optional,tag:0"`
		SignerInfos  []signerInfo  `asn1:"set"`
	}
	if rest, err := asn1.Unmarshal(der, &sd); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("SignedData: %v", err)
	}
	if !sd.EncapContentInfo.EContentType.Equal(oidKeyPackage) || len(sd.SignerInfos) != 1 {
		return nil, errors.New("not a signed key package")
	}
	certs, err := x509.ParseCertificates(sd.Certificates.Bytes)
	if err != nil || len(certs) != 1 || !certs[0].Equal(cert) {
		return nil, errors.New("the SignedData does not carry the issued certificate")
	}
	var content []byte
	if _, err := asn1.Unmarshal(sd.EncapContentInfo.EContent.Bytes, &content); err != nil {
		return nil, err
	}
	si := sd.SignerInfos[0]
	if si.SID.Serial.Cmp(cert.SerialNumber) != 0 || !bytes.Equal(si.SID.Issuer.FullBytes, cert.RawIssuer) {
		return nil, errors.New("the signer is not the issued certificate")
	}
	set := bytes.Clone(si.SignedAttrs.FullBytes)
	set[0] = 0x31 // the signature covers the attributes as a SET OF
	sum := sha256.Sum256(set)
	if !ecdsa.VerifyASN1(cert.PublicKey.(*ecdsa.PublicKey), sum[:], si.Signature) {
		return nil, errors.New("the key package's signature does not verify")
	}
	digest := sha256.Sum256(content)
	if !bytes.Contains(si.SignedAttrs.Bytes, digest[:]) {
		return nil, errors.New("messageDigest does not match the content")
	}
	var pkg []asn1.RawValue
	if _, err := asn1.Unmarshal(content, &pkg); err != nil || len(pkg) != 1 {
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
