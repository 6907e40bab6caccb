// Package cms reads and writes the Cryptographic Message Syntax (RFC 5652)
// that EST, SCEP, CMP and `qpki cms` carry: SignedData with signed
// attributes (classical, ML-DSA per RFC 9882, SLH-DSA per RFC 9814,
// composite ML-DSA per draft-ietf-lamps-cms-composite-sigs, and, for
// verification only, HashML-DSA and HashSLH-DSA), and EnvelopedData and
// AuthEnvelopedData (RFC 5083) with KeyTransRecipientInfo (RSA-OAEP and
// PKCS #1 v1.5), KeyAgreeRecipientInfo (ECDH, RFC 5753) and
// KEMRecipientInfo (RFC 9629: ML-KEM, composite ML-KEM; HKDF per RFC
// 8619), AES key wrap (RFC 3394) and AES-CBC or AES-GCM (RFC 5084)
// content encryption.
//
// It is written on the standard library (crypto/*, encoding/asn1 and
// x/crypto/cryptobyte) rather than on a PKCS #7 library: the maintained
// one (github.com/smallstep/pkcs7) covers classical SignedData and KTRI
// EnvelopedData, but has no KARI, KEMRI or AuthEnvelopedData and no way
// to plug in post-quantum or composite signatures, so it would have been a
// second code path beside this one for the same structures.
//
// Input is BER as other implementations write it (indefinite lengths,
// constructed OCTET STRINGs; Bouncy Castle does both): Parse converts it
// to DER first, within MaxMessage bytes and maxDepth levels, and every
// later step works on DER. Errors name what is wrong; nothing panics on
// malformed input (see FuzzParse).
package cms
