// Package keyfile reads and writes private keys as PKCS#8 PEM files,
// optionally encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), the
// form OpenSSL writes by default, so that `openssl pkey` opens them too.
package keyfile

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/atomicfile"
)

const (
	pemPrivate   = "PRIVATE KEY"
	pemEncrypted = "ENCRYPTED PRIVATE KEY"
	pbkdf2Iter   = 600000
)

// ErrPassphrase is returned when an encrypted key cannot be decrypted.
var ErrPassphrase = errors.New("wrong passphrase or corrupt encrypted key")

// ErrNeedPassphrase is returned when an encrypted key is read without one.
var ErrNeedPassphrase = errors.New("key is encrypted: a passphrase is required")

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

type encryptedPrivateKeyInfo struct {
	Algo pkix.AlgorithmIdentifier
	Data []byte
}

type pbes2Params struct {
	KDF    pkix.AlgorithmIdentifier
	Scheme pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt      []byte
	Iter      int
	KeyLength int                      `asn1:"optional"`
	PRF       pkix.AlgorithmIdentifier `asn1:"optional"`
}

// Encode returns the PEM encoding of priv, encrypted when passphrase is
// non-empty.
func Encode(priv crypto.PrivateKey, passphrase []byte) ([]byte, error) {
	der, err := algo.MarshalPKCS8(priv)
	if err != nil {
		return nil, err
	}
	if len(passphrase) == 0 {
		return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
	}
	enc, err := encrypt(der, passphrase)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemEncrypted, Bytes: enc}), nil
}

// Decode parses a PEM private key, or an unencrypted PKCS#8 DER one. passphrase is called only when the key
// is encrypted; it may be nil, and then an encrypted key is an error.
func Decode(data []byte, passphrase func() ([]byte, error)) (crypto.PrivateKey, error) {
	if len(data) > 4*algo.MaxKeyDER {
		return nil, fmt.Errorf("key file too large (%d bytes)", len(data))
	}
	block, _ := pem.Decode(data)
	if block == nil {
		// An unencrypted PKCS#8 DER file (as other tools write them).
		if len(data) > 0 && data[0] == 0x30 {
			return algo.ParsePKCS8(data)
		}
		return nil, errors.New("no PEM or DER private key found")
	}
	switch block.Type {
	case pemPrivate:
		return algo.ParsePKCS8(block.Bytes)
	case pemEncrypted:
		if passphrase == nil {
			return nil, ErrNeedPassphrase
		}
		pw, err := passphrase()
		if err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, ErrNeedPassphrase
		}
		der, err := decrypt(block.Bytes, pw)
		if err != nil {
			return nil, err
		}
		return algo.ParsePKCS8(der)
	case "EC PRIVATE KEY", "RSA PRIVATE KEY":
		return nil, fmt.Errorf("%s PEM blocks are not supported: convert with `openssl pkcs8 -topk8`", block.Type)
	}
	return nil, fmt.Errorf("unexpected PEM block %q, want PRIVATE KEY", block.Type)
}

// IsEncrypted reports whether data holds an encrypted PEM key.
func IsEncrypted(data []byte) bool {
	block, _ := pem.Decode(data)
	return block != nil && block.Type == pemEncrypted
}

// Read loads a key file.
func Read(path string, passphrase func() ([]byte, error)) (crypto.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := Decode(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// Write stores a key file with mode 0600, atomically, refusing to replace
// an existing file.
func Write(path string, priv crypto.PrivateKey, passphrase []byte) error {
	data, err := Encode(priv, passphrase)
	if err != nil {
		return err
	}
	return atomicfile.Create(path, data, 0o600)
}

func encrypt(der, passphrase []byte) ([]byte, error) {
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, string(passphrase), salt, pbkdf2Iter, 32)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(key)
	pad := aes.BlockSize - len(der)%aes.BlockSize
	plain := append(bytes.Clone(der), bytes.Repeat([]byte{byte(pad)}, pad)...)
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, plain)

	kdf, err := asn1.Marshal(pbkdf2Params{Salt: salt, Iter: pbkdf2Iter, PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACSHA256, Parameters: asn1.NullRawValue}})
	if err != nil {
		return nil, err
	}
	ivDER, _ := asn1.Marshal(iv)
	params, err := asn1.Marshal(pbes2Params{
		KDF:    pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdf}},
		Scheme: pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(encryptedPrivateKeyInfo{
		Algo: pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: params}},
		Data: out,
	})
}

func decrypt(der, passphrase []byte) ([]byte, error) {
	var epki encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &epki); err != nil || len(rest) > 0 {
		return nil, errors.New("malformed encrypted private key")
	}
	if !epki.Algo.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("unsupported key encryption %s (only PBES2 is supported)", epki.Algo.Algorithm)
	}
	var p pbes2Params
	if _, err := asn1.Unmarshal(epki.Algo.Parameters.FullBytes, &p); err != nil {
		return nil, errors.New("malformed PBES2 parameters")
	}
	if !p.KDF.Algorithm.Equal(oidPBKDF2) || !p.Scheme.Algorithm.Equal(oidAES256CBC) {
		return nil, errors.New("unsupported PBES2 parameters (want PBKDF2 and AES-256-CBC)")
	}
	var kp pbkdf2Params
	if _, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kp); err != nil {
		return nil, errors.New("malformed PBKDF2 parameters")
	}
	if len(kp.PRF.Algorithm) > 0 && !kp.PRF.Algorithm.Equal(oidHMACSHA256) {
		return nil, fmt.Errorf("unsupported PBKDF2 PRF %s (want hmacWithSHA256)", kp.PRF.Algorithm)
	}
	if kp.Iter < 1 || kp.Iter > 10_000_000 {
		return nil, fmt.Errorf("PBKDF2 iteration count %d out of range", kp.Iter)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(p.Scheme.Parameters.FullBytes, &iv); err != nil || len(iv) != aes.BlockSize {
		return nil, errors.New("malformed AES-CBC IV")
	}
	if len(epki.Data) == 0 || len(epki.Data)%aes.BlockSize != 0 {
		return nil, ErrPassphrase
	}
	key, err := pbkdf2.Key(sha256.New, string(passphrase), kp.Salt, kp.Iter, 32)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(key)
	plain := make([]byte, len(epki.Data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, epki.Data)
	pad := int(plain[len(plain)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, ErrPassphrase
	}
	if !hmac.Equal(plain[len(plain)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, ErrPassphrase
	}
	return plain[:len(plain)-pad], nil
}
