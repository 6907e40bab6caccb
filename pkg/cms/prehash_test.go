package cms

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"testing"

	"github.com/cloudflare/circl/sign/slhdsa"
	"github.com/qpki/qpki/pkg/algo"
)

// A SignedData whose signer uses HashSLH-DSA (made here with circl, as
// qpki itself signs only pure) verifies, and a changed content does not.
func TestPreHashSignedData(t *testing.T) {
	priv, cert := leaf(t, algo.SLHDSASHA2128f)
	content := []byte("pre-hashed")
	der, err := Sign(rand.Reader, content, SignOptions{Signer: signerOf(t, priv), Certificate: cert})
	if err != nil {
		t.Fatal(err)
	}
	typ, body, _ := parseContentInfo(der)
	if !typ.Equal(OIDSignedData) {
		t.Fatal(typ)
	}
	var sd signedData
	if _, err := asn1.Unmarshal(innerOf(body), &sd); err != nil {
		t.Fatal(err)
	}
	info, _ := algo.Lookup(algo.HashSLHDSASHA2128fSHA256)
	si := &sd.SignerInfos[0]
	si.SignatureAlgorithm = algorithmIdentifier{Algorithm: info.OID}
	attrs := append(mustRaw(attribute{oidAttrContentType, []asn1.RawValue{mustRaw(OIDData)}}).FullBytes,
		mustRaw(attribute{oidAttrMessageDigest, []asn1.RawValue{mustRaw(digestFor(algo.SLHDSASHA2128f).sum(content))}}).FullBytes...)
	si.SignedAttrs = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: attrs}
	sk := slhdsa.PrivateKey{ID: slhdsa.SHA2_128f}
	if err := sk.UnmarshalBinary(priv.(*algo.SLHDSAPrivateKey).Bytes()); err != nil {
		t.Fatal(err)
	}
	ph, _ := slhdsa.NewPreHashWithHash(crypto.SHA256)
	ph.Write(encodeTLV([]byte{0x31}, attrs))
	m, _ := ph.BuildMessage()
	if si.Signature, err = slhdsa.SignRandomized(&sk, rand.Reader, m, nil); err != nil {
		t.Fatal(err)
	}
	inner, _ := asn1.Marshal(sd)
	msg, _ := wrapContentInfo(OIDSignedData, inner)
	parsed, err := ParseSignedData(msg)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := parsed.Verify(VerifyOptions{Roots: []*x509.Certificate{testRoot(t).root}})
	if err != nil {
		t.Fatalf("pre-hash SignedData: %v", err)
	}
	if vs[0].Algorithm != string(algo.HashSLHDSASHA2128fSHA256) {
		t.Fatalf("algorithm %s", vs[0].Algorithm)
	}
	// The same signature checked as pure does not verify.
	si.SignatureAlgorithm = algorithmIdentifier{Algorithm: algo.SLHDSASHA2128f.Info().OID}
	inner, _ = asn1.Marshal(sd)
	msg, _ = wrapContentInfo(OIDSignedData, inner)
	parsed, _ = ParseSignedData(msg)
	if _, err := parsed.Verify(VerifyOptions{}); !errors.Is(err, algo.ErrVerify) {
		t.Fatalf("pre-hash signature as pure: %v", err)
	}

}
