package cms

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/x509x"
)

// KeyTransRecipientInfo (RFC 5652 §6.2.1).
type ktri struct {
	Version                int
	RID                    asn1.RawValue
	KeyEncryptionAlgorithm algorithmIdentifier
	EncryptedKey           []byte
}

// KeyAgreeRecipientInfo (RFC 5652 §6.2.2), without its [1] tag.
type kari struct {
	Version                int
	Originator             asn1.RawValue // [0] EXPLICIT OriginatorIdentifierOrKey
	UKM                    []byte        `asn1:"optional,explicit,tag:1"`
	KeyEncryptionAlgorithm algorithmIdentifier
	RecipientEncryptedKeys []recipientEncryptedKey
}

type recipientEncryptedKey struct {
	RID          asn1.RawValue // issuerAndSerialNumber or rKeyId [0]
	EncryptedKey []byte
}

type originatorPublicKey struct {
	Algorithm algorithmIdentifier
	PublicKey asn1.BitString
}

// eccCMSSharedInfo is RFC 5753's KDF input.
type eccCMSSharedInfo struct {
	KeyInfo     algorithmIdentifier
	EntityUInfo []byte `asn1:"optional,explicit,tag:0"`
	SuppPubInfo []byte `asn1:"explicit,tag:2"`
}

// OtherRecipientInfo, without its [4] tag.
type otherRecipientInfo struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// KEMRecipientInfo (RFC 9629).
type kemri struct {
	Version      int
	RID          asn1.RawValue
	KEM          algorithmIdentifier
	KEMCT        []byte
	KDF          algorithmIdentifier
	KEKLength    int
	UKM          []byte `asn1:"optional,explicit,tag:0"`
	Wrap         algorithmIdentifier
	EncryptedKey []byte
}

// cmsORIforKEMOtherInfo is the HKDF info of RFC 9629 §5.
type cmsORIforKEMOtherInfo struct {
	Wrap      algorithmIdentifier
	KEKLength int
	UKM       []byte `asn1:"optional,explicit,tag:0"`
}

type oaepParams struct {
	Hash   algorithmIdentifier `asn1:"optional,explicit,tag:0"`
	MGF    algorithmIdentifier `asn1:"optional,explicit,tag:1"`
	Source algorithmIdentifier `asn1:"optional,explicit,tag:2"`
}

func hashByOID(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid == nil, oid.Equal(asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}):
		return crypto.SHA1, nil
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("cms: unsupported hash %s", oid)
}

func wrapKeySize(oid asn1.ObjectIdentifier) (int, error) {
	switch {
	case oid.Equal(oidAES128Wrap):
		return 16, nil
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 25}):
		return 24, nil
	case oid.Equal(oidAES256Wrap):
		return 32, nil
	}
	return 0, fmt.Errorf("cms: unsupported key wrap algorithm %s", oid)
}

func unwrapKTRI(raw asn1.RawValue, key crypto.PrivateKey, cert *x509.Certificate, cekLen int) ([]byte, error) {
	priv, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, errNotForUs
	}
	var k ktri
	if rest, err := asn1.Unmarshal(raw.FullBytes, &k); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("cms: malformed KeyTransRecipientInfo: %v", err)
	}
	if !ridMatches(k.RID, cert) {
		return nil, errNotForUs
	}
	switch alg := k.KeyEncryptionAlgorithm; {
	case alg.Algorithm.Equal(oidRSAEncryption):
		// PKCS #1 v1.5 without a padding oracle: a bad block yields a
		// random key, which then fails to decrypt the content.
		cek := make([]byte, cekLen)
		if _, err := io.ReadFull(rand.Reader, cek); err != nil {
			return nil, err
		}
		//lint:ignore SA1019 RFC 5652 KTRI with rsaEncryption is still sent by old S/MIME and SCEP clients; the session-key form avoids the padding oracle.
		if err := rsa.DecryptPKCS1v15SessionKey(nil, priv, k.EncryptedKey, cek); err != nil {
			return nil, fmt.Errorf("cms: RSA key transport: %v", err)
		}
		return cek, nil
	case alg.Algorithm.Equal(oidRSAESOAEP):
		var p oaepParams
		if len(alg.Parameters.FullBytes) > 0 {
			if _, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil {
				return nil, errors.New("cms: malformed RSAES-OAEP parameters")
			}
		}
		h, err := hashByOID(p.Hash.Algorithm)
		if err != nil {
			return nil, err
		}
		mgfHash := crypto.SHA1
		if p.MGF.Algorithm != nil {
			var mgf algorithmIdentifier
			if !p.MGF.Algorithm.Equal(oidMGF1) {
				return nil, errors.New("cms: unsupported OAEP mask generation function")
			}
			if _, err := asn1.Unmarshal(p.MGF.Parameters.FullBytes, &mgf); err != nil {
				return nil, errors.New("cms: malformed MGF1 parameters")
			}
			if mgfHash, err = hashByOID(mgf.Algorithm); err != nil {
				return nil, err
			}
		}
		if p.Source.Algorithm != nil {
			return nil, errors.New("cms: OAEP labels are not supported")
		}
		cek, err := priv.Decrypt(nil, k.EncryptedKey, &rsa.OAEPOptions{Hash: h, MGFHash: mgfHash})
		if err != nil {
			return nil, errors.New("cms: RSAES-OAEP decryption failed (wrong key or tampered message)")
		}
		return cek, nil
	default:
		return nil, fmt.Errorf("cms: unsupported key transport algorithm %s", alg.Algorithm)
	}
}

// x963KDF is ANSI X9.63's KDF (RFC 5753 §3.1.1).
func x963KDF(newHash func() hash.Hash, z, sharedInfo []byte, n int) []byte {
	var out []byte
	for counter := uint32(1); len(out) < n; counter++ {
		h := newHash()
		h.Write(z)
		binary.Write(h, binary.BigEndian, counter)
		h.Write(sharedInfo)
		out = h.Sum(out)
	}
	return out[:n]
}

func kariKDF(oid asn1.ObjectIdentifier) (func() hash.Hash, error) {
	// stdDH and cofactorDH coincide on the prime-order NIST curves. The
	// SHA-1 KDF (OpenSSL's default) is read, never written.
	switch {
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 2}), oid.Equal(asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 3}):
		return sha1.New, nil
	case oid.Equal(oidStdDHSHA256KDF), oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 1, 14, 1}):
		return sha256.New, nil
	case oid.Equal(oidStdDHSHA384KDF), oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 1, 14, 2}):
		return sha512.New384, nil
	case oid.Equal(oidStdDHSHA512KDF), oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 1, 14, 3}):
		return sha512.New, nil
	}
	return nil, fmt.Errorf("cms: unsupported key agreement algorithm %s", oid)
}

func unwrapKARI(raw asn1.RawValue, key crypto.PrivateKey, cert *x509.Certificate) ([]byte, error) {
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errNotForUs
	}
	var k kari
	if rest, err := asn1.Unmarshal(encodeTLV([]byte{0x30}, raw.Bytes), &k); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("cms: malformed KeyAgreeRecipientInfo: %v", err)
	}
	var wrapped []byte
	found := false
	for _, r := range k.RecipientEncryptedKeys {
		rid := r.RID
		if rid.Class == asn1.ClassContextSpecific && rid.Tag == 0 {
			// rKeyId [0] IMPLICIT RecipientKeyIdentifier { subjectKeyIdentifier, ... }
			var ski []byte
			if _, err := asn1.Unmarshal(rid.Bytes, &ski); err == nil {
				rid = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: ski}
			}
		}
		if ridMatches(rid, cert) {
			wrapped, found = r.EncryptedKey, true
			break
		}
	}
	if !found {
		return nil, errNotForUs
	}
	var orig asn1.RawValue
	if k.Originator.Class != asn1.ClassContextSpecific || k.Originator.Tag != 0 {
		return nil, errors.New("cms: malformed KeyAgreeRecipientInfo originator")
	}
	if _, err := asn1.Unmarshal(k.Originator.Bytes, &orig); err != nil || orig.Class != asn1.ClassContextSpecific || orig.Tag != 1 {
		return nil, errors.New("cms: KeyAgreeRecipientInfo: only an ephemeral originator key is supported")
	}
	var opk originatorPublicKey
	if _, err := asn1.Unmarshal(encodeTLV([]byte{0x30}, orig.Bytes), &opk); err != nil {
		return nil, errors.New("cms: malformed originator public key")
	}
	newHash, err := kariKDF(k.KeyEncryptionAlgorithm.Algorithm)
	if err != nil {
		return nil, err
	}
	var wrapAlg algorithmIdentifier
	if _, err := asn1.Unmarshal(k.KeyEncryptionAlgorithm.Parameters.FullBytes, &wrapAlg); err != nil {
		return nil, errors.New("cms: malformed key wrap algorithm")
	}
	n, err := wrapKeySize(wrapAlg.Algorithm)
	if err != nil {
		return nil, err
	}
	priv, err := ek.ECDH()
	if err != nil {
		return nil, err
	}
	peer, err := priv.Curve().NewPublicKey(opk.PublicKey.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cms: originator key: %v", err)
	}
	z, err := priv.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("cms: ECDH: %v", err)
	}
	shared, err := asn1.Marshal(eccCMSSharedInfo{KeyInfo: algorithmIdentifier{Algorithm: wrapAlg.Algorithm}, EntityUInfo: k.UKM, SuppPubInfo: bitsBE(n)})
	if err != nil {
		return nil, err
	}
	return keyUnwrap(x963KDF(newHash, z, shared, n), wrapped)
}

func bitsBE(n int) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(8*n))
	return b
}

func hkdfHash(oid asn1.ObjectIdentifier) (func() hash.Hash, error) {
	switch {
	case oid.Equal(oidHKDFSHA256):
		return sha256.New, nil
	case oid.Equal(oidHKDFSHA384):
		return sha512.New384, nil
	case oid.Equal(oidHKDFSHA512):
		return sha512.New, nil
	}
	return nil, fmt.Errorf("cms: unsupported key derivation function %s", oid)
}

func unwrapKEMRI(raw asn1.RawValue, key crypto.PrivateKey, cert *x509.Certificate) ([]byte, error) {
	kp, ok := key.(algo.KEMPrivateKey)
	if !ok {
		return nil, errNotForUs
	}
	var o otherRecipientInfo
	if _, err := asn1.Unmarshal(encodeTLV([]byte{0x30}, raw.Bytes), &o); err != nil {
		return nil, errors.New("cms: malformed OtherRecipientInfo")
	}
	var k kemri
	if rest, err := asn1.Unmarshal(o.Value.FullBytes, &k); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("cms: malformed KEMRecipientInfo: %v", err)
	}
	if k.Version != 0 {
		return nil, fmt.Errorf("cms: KEMRecipientInfo version %d", k.Version)
	}
	if !ridMatches(k.RID, cert) {
		return nil, errNotForUs
	}
	if info, ok := algo.ByOID(k.KEM.Algorithm); !ok || algo.CheckKey(kp.Public(), info.Name) != nil {
		return nil, errNotForUs
	}
	newHash, err := hkdfHash(k.KDF.Algorithm)
	if err != nil {
		return nil, err
	}
	n, err := wrapKeySize(k.Wrap.Algorithm)
	if err != nil {
		return nil, err
	}
	if k.KEKLength != n {
		return nil, fmt.Errorf("cms: kekLength %d does not fit %s", k.KEKLength, OIDName(k.Wrap.Algorithm))
	}
	ss, err := algo.Decapsulate(key, k.KEMCT)
	if err != nil {
		return nil, fmt.Errorf("cms: %v", err)
	}
	defer clear(ss)
	info, err := asn1.Marshal(cmsORIforKEMOtherInfo{Wrap: k.Wrap, KEKLength: k.KEKLength, UKM: k.UKM})
	if err != nil {
		return nil, err
	}
	kek, err := hkdf.Key(newHash, ss, nil, string(info), n)
	if err != nil {
		return nil, err
	}
	return keyUnwrap(kek, k.EncryptedKey)
}

// wrapFor makes the RecipientInfo that carries cek to cert's key, and
// the EnvelopedData version it needs.
func wrapFor(rand io.Reader, r Recipient, cek []byte, opts EncryptOptions) (asn1.RawValue, int, error) {
	var pub crypto.PublicKey
	var rid asn1.RawValue
	ridVersion := 0
	switch {
	case r.Certificate != nil:
		var err error
		if pub, err = x509x.PublicKey(r.Certificate); err != nil {
			return asn1.RawValue{}, 0, err
		}
		rid = sidOf(r.Certificate)
	case r.PublicKey != nil && len(r.KeyID) > 0:
		// subjectKeyIdentifier [0] IMPLICIT; it makes KTRI version 2.
		pub, ridVersion = r.PublicKey, 2
		rid = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: r.KeyID}
	default:
		return asn1.RawValue{}, 0, errors.New("a recipient needs a certificate, or a public key and its key identifier")
	}
	var err error
	switch p := pub.(type) {
	case *rsa.PublicKey:
		var ek []byte
		alg := algorithmIdentifier{Algorithm: oidRSAEncryption, Parameters: asn1.NullRawValue}
		if opts.RSAPKCS1v15 {
			//lint:ignore SA1019 only on request (EncryptOptions.RSAPKCS1v15), for readers without RSAES-OAEP.
			ek, err = rsa.EncryptPKCS1v15(rand, p, cek)
		} else {
			ek, err = rsa.EncryptOAEP(sha256.New(), rand, p, cek, nil)
			alg = algorithmIdentifier{Algorithm: oidRSAESOAEP, Parameters: mustRaw(oaepParams{
				Hash: algorithmIdentifier{Algorithm: oidSHA256},
				MGF:  algorithmIdentifier{Algorithm: oidMGF1, Parameters: mustRaw(algorithmIdentifier{Algorithm: oidSHA256})},
			})}
		}
		if err != nil {
			return asn1.RawValue{}, 0, err
		}
		return mustRaw(ktri{Version: ridVersion, RID: rid, KeyEncryptionAlgorithm: alg, EncryptedKey: ek}), ridVersion, nil
	case *ecdsa.PublicKey:
		peer, err := p.ECDH()
		if err != nil {
			return asn1.RawValue{}, 0, err
		}
		if ridVersion != 0 {
			// rKeyId [0] IMPLICIT RecipientKeyIdentifier { subjectKeyIdentifier }
			rid = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustRaw(r.KeyID).FullBytes}
		}
		return kariFor(rand, peer, rid, cek)
	case algo.KEMPublicKey:
		return kemriFor(rand, p, rid, cek)
	}
	return asn1.RawValue{}, 0, fmt.Errorf("cannot encrypt to a %T key", pub)
}

func kariFor(rand io.Reader, peer *ecdh.PublicKey, rid asn1.RawValue, cek []byte) (asn1.RawValue, int, error) {
	eph, err := peer.Curve().GenerateKey(rand)
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	z, err := eph.ECDH(peer)
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	wrapAlg := algorithmIdentifier{Algorithm: oidAES256Wrap}
	shared, err := asn1.Marshal(eccCMSSharedInfo{KeyInfo: wrapAlg, SuppPubInfo: bitsBE(32)})
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	wrapped, err := keyWrap(x963KDF(sha256.New, z, shared, 32), cek)
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	point := eph.PublicKey().Bytes()
	opk := mustRaw(originatorPublicKey{
		Algorithm: algorithmIdentifier{Algorithm: oidECPublicKey},
		PublicKey: asn1.BitString{Bytes: point, BitLength: 8 * len(point)},
	})
	body, err := asn1.Marshal(kari{
		Version: 3,
		Originator: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
			Bytes: encodeTLV([]byte{0xa1}, innerOf(opk.FullBytes))}, // [0] { originatorKey [1] }
		KeyEncryptionAlgorithm: algorithmIdentifier{Algorithm: oidStdDHSHA256KDF, Parameters: mustRaw(wrapAlg)},
		RecipientEncryptedKeys: []recipientEncryptedKey{{RID: rid, EncryptedKey: wrapped}},
	})
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	// KeyAgreeRecipientInfo is [1] IMPLICIT in RecipientInfo.
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: innerOf(body)}, 2, nil
}

func kemriFor(rand io.Reader, pub algo.KEMPublicKey, rid asn1.RawValue, cek []byte) (asn1.RawValue, int, error) {
	a, err := algo.Of(pub)
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	ct, ss, err := pub.Encapsulate(rand)
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	defer clear(ss)
	wrapAlg := algorithmIdentifier{Algorithm: oidAES256Wrap}
	info, err := asn1.Marshal(cmsORIforKEMOtherInfo{Wrap: wrapAlg, KEKLength: 32})
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	kek, err := hkdf.Key(sha256.New, ss, nil, string(info), 32)
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	wrapped, err := keyWrap(kek, cek)
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	k := mustRaw(kemri{
		Version: 0, RID: rid, KEM: algorithmIdentifier{Algorithm: a.Info().OID}, KEMCT: ct,
		KDF: algorithmIdentifier{Algorithm: oidHKDFSHA256}, KEKLength: 32, Wrap: wrapAlg, EncryptedKey: wrapped,
	})
	body, err := asn1.Marshal(otherRecipientInfo{Type: oidORIKEM, Value: k})
	if err != nil {
		return asn1.RawValue{}, 0, err
	}
	// OtherRecipientInfo is [4] IMPLICIT; its presence makes version 3.
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: innerOf(body)}, 3, nil
}
