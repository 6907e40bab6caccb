package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"math/big"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"github.com/cloudflare/circl/sign/slhdsa"
	"github.com/qpki/qpki/pkg/algo"
)

// mechInfo is what C_GetMechanismInfo reports.
type mechInfo struct{ min, max, flags uint64 }

var mechanisms = map[uint64]mechInfo{
	CKM_EC_KEY_PAIR_GEN:      {256, 384, CKF_GENERATE_KEY_PAIR | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS},
	CKM_ECDSA:                {256, 384, CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS},
	CKM_ML_DSA_KEY_PAIR_GEN:  {1312, 2592, CKF_GENERATE_KEY_PAIR}, // public key sizes in bytes (PKCS#11 3.2)
	CKM_ML_DSA:               {1312, 2592, CKF_SIGN | CKF_VERIFY},
	CKM_SLH_DSA_KEY_PAIR_GEN: {32, 64, CKF_GENERATE_KEY_PAIR},
	CKM_SLH_DSA:              {32, 64, CKF_SIGN | CKF_VERIFY},
	CKM_ML_KEM_KEY_PAIR_GEN:  {800, 1568, CKF_GENERATE_KEY_PAIR},
	CKM_ML_KEM:               {800, 1568, CKF_ENCAPSULATE | CKF_DECAPSULATE},
}

func mechanismList() []uint64 {
	return []uint64{CKM_ML_KEM_KEY_PAIR_GEN, CKM_ML_KEM, CKM_ML_DSA_KEY_PAIR_GEN, CKM_ML_DSA,
		CKM_SLH_DSA_KEY_PAIR_GEN, CKM_SLH_DSA, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA}
}

// pqAlgorithms maps (key type, CKA_PARAMETER_SET) to qpki's algorithm
// names, with the PKCS#11 3.2 CKP_ values.
var pqAlgorithms = map[[2]uint64]algo.Algorithm{
	{CKK_ML_DSA, 1}: algo.MLDSA44, {CKK_ML_DSA, 2}: algo.MLDSA65, {CKK_ML_DSA, 3}: algo.MLDSA87,
	{CKK_ML_KEM, 1}: algo.MLKEM512, {CKK_ML_KEM, 2}: algo.MLKEM768, {CKK_ML_KEM, 3}: algo.MLKEM1024,
	{CKK_SLH_DSA, 1}: algo.SLHDSASHA2128s, {CKK_SLH_DSA, 2}: algo.SLHDSASHAKE128s,
	{CKK_SLH_DSA, 3}: algo.SLHDSASHA2128f, {CKK_SLH_DSA, 4}: algo.SLHDSASHAKE128f,
	{CKK_SLH_DSA, 5}: algo.SLHDSASHA2192s, {CKK_SLH_DSA, 6}: algo.SLHDSASHAKE192s,
	{CKK_SLH_DSA, 7}: algo.SLHDSASHA2192f, {CKK_SLH_DSA, 8}: algo.SLHDSASHAKE192f,
	{CKK_SLH_DSA, 9}: algo.SLHDSASHA2256s, {CKK_SLH_DSA, 10}: algo.SLHDSASHAKE256s,
	{CKK_SLH_DSA, 11}: algo.SLHDSASHA2256f, {CKK_SLH_DSA, 12}: algo.SLHDSASHAKE256f,
}

// Curves by CKA_EC_PARAMS (the DER of a named-curve OID).
var (
	derP256, _ = asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})
	derP384, _ = asn1.Marshal(asn1.ObjectIdentifier{1, 3, 132, 0, 34})
)

func curveFor(params []byte) elliptic.Curve {
	switch {
	case bytes.Equal(params, derP256):
		return elliptic.P256()
	case bytes.Equal(params, derP384):
		return elliptic.P384()
	}
	return nil
}

// keyPair is a generated key: the attributes its mechanism contributes to
// each half, and the secret material of the private half.
type keyPair struct {
	keyType  uint64
	pub      map[uint64][]byte
	priv     map[uint64][]byte
	material []byte
}

// generate makes a key pair for a key-pair generation mechanism.
func generate(mech uint64, pubT, privT template) (*keyPair, uint64) {
	switch mech {
	case CKM_EC_KEY_PAIR_GEN:
		params, ok := pubT[CKA_EC_PARAMS]
		if !ok {
			return nil, CKR_TEMPLATE_INCOMPLETE
		}
		if p, ok := privT[CKA_EC_PARAMS]; ok && !bytes.Equal(p, params) {
			return nil, CKR_TEMPLATE_INCONSISTENT
		}
		curve := curveFor(params)
		if curve == nil {
			return nil, CKR_CURVE_NOT_SUPPORTED
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		d, err := k.Bytes()
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		point, err := k.PublicKey.Bytes()
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		ecPoint, _ := asn1.Marshal(point)
		spki, err := algo.MarshalPKIX(&k.PublicKey)
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		return &keyPair{
			keyType:  CKK_EC,
			pub:      map[uint64][]byte{CKA_EC_PARAMS: params, CKA_EC_POINT: ecPoint, CKA_PUBLIC_KEY_INFO: spki},
			priv:     map[uint64][]byte{CKA_EC_PARAMS: params, CKA_PUBLIC_KEY_INFO: spki},
			material: d,
		}, CKR_OK
	case CKM_ML_DSA_KEY_PAIR_GEN, CKM_SLH_DSA_KEY_PAIR_GEN, CKM_ML_KEM_KEY_PAIR_GEN:
		keyType := map[uint64]uint64{CKM_ML_DSA_KEY_PAIR_GEN: CKK_ML_DSA, CKM_SLH_DSA_KEY_PAIR_GEN: CKK_SLH_DSA,
			CKM_ML_KEM_KEY_PAIR_GEN: CKK_ML_KEM}[mech]
		ps, ok := pubT.ulong(CKA_PARAMETER_SET)
		if !ok {
			return nil, CKR_TEMPLATE_INCOMPLETE
		}
		if p, ok := privT.ulong(CKA_PARAMETER_SET); ok && p != ps {
			return nil, CKR_TEMPLATE_INCONSISTENT
		}
		alg, ok := pqAlgorithms[[2]uint64{keyType, ps}]
		if !ok {
			return nil, CKR_ATTRIBUTE_VALUE_INVALID
		}
		var material, raw []byte
		var pub crypto.PublicKey
		switch keyType {
		case CKK_ML_DSA:
			k, err := algo.GenerateMLDSAKey(alg, rand.Reader)
			if err != nil {
				return nil, CKR_FUNCTION_FAILED
			}
			material, pub = k.Seed(), k.Public()
			raw = pub.(*algo.MLDSAPublicKey).Bytes()
		case CKK_SLH_DSA:
			k, err := algo.GenerateSLHDSAKey(alg, rand.Reader)
			if err != nil {
				return nil, CKR_FUNCTION_FAILED
			}
			material, pub = k.Bytes(), k.Public()
			raw = pub.(*algo.SLHDSAPublicKey).Bytes()
		default:
			k, err := algo.GenerateMLKEMKey(alg, rand.Reader)
			if err != nil {
				return nil, CKR_FUNCTION_FAILED
			}
			material, pub = k.Seed(), k.Public()
			raw = pub.(*algo.MLKEMPublicKey).Bytes()
		}
		spki, err := algo.MarshalPKIX(pub)
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		psb := ulongBytes(ps)
		return &keyPair{
			keyType:  keyType,
			pub:      map[uint64][]byte{CKA_PARAMETER_SET: psb, CKA_VALUE: raw, CKA_PUBLIC_KEY_INFO: spki},
			priv:     map[uint64][]byte{CKA_PARAMETER_SET: psb, CKA_PUBLIC_KEY_INFO: spki},
			material: material,
		}, CKR_OK
	}
	return nil, CKR_MECHANISM_INVALID
}

// signMechanism returns the key type a signature mechanism needs.
func signMechanism(mech uint64) (uint64, bool) {
	switch mech {
	case CKM_ECDSA:
		return CKK_EC, true
	case CKM_ML_DSA:
		return CKK_ML_DSA, true
	case CKM_SLH_DSA:
		return CKK_SLH_DSA, true
	}
	return 0, false
}

// checkSignParams validates a signature mechanism's parameter.
func checkSignParams(m mechanism) uint64 {
	if m.hasRaw {
		return CKR_MECHANISM_PARAM_INVALID
	}
	if m.typ == CKM_ECDSA && m.hasContext {
		return CKR_MECHANISM_PARAM_INVALID
	}
	if m.hasContext && (m.hedge > CKH_DETERMINISTIC_REQUIRED || len(m.context) > maxContextLen) {
		return CKR_MECHANISM_PARAM_INVALID
	}
	return CKR_OK
}

func pqAlgorithmOf(o *object) (algo.Algorithm, bool) {
	ps, ok := o.ulong(CKA_PARAMETER_SET)
	if !ok {
		return "", false
	}
	alg, ok := pqAlgorithms[[2]uint64{o.keyType(), ps}]
	return alg, ok
}

// signatureLen is the length of every signature key o makes.
func signatureLen(o *object) int {
	switch o.keyType() {
	case CKK_EC:
		if c := curveFor(o.attrs[CKA_EC_PARAMS]); c != nil {
			return 2 * ((c.Params().BitSize + 7) / 8)
		}
	case CKK_ML_DSA:
		switch alg, _ := pqAlgorithmOf(o); alg {
		case algo.MLDSA44:
			return mldsa44.SignatureSize
		case algo.MLDSA65:
			return mldsa65.SignatureSize
		case algo.MLDSA87:
			return mldsa87.SignatureSize
		}
	case CKK_SLH_DSA:
		if ps, ok := o.ulong(CKA_PARAMETER_SET); ok && ps >= 1 && ps <= 12 {
			return slhdsa.ID(ps).Scheme().SignatureSize()
		}
	}
	return 0
}

// sign signs data with the private key o whose secret material is given.
func sign(o *object, material []byte, m mechanism, data []byte) ([]byte, uint64) {
	switch o.keyType() {
	case CKK_EC:
		if len(data) == 0 || len(data) > 64 {
			return nil, CKR_DATA_LEN_RANGE
		}
		curve := curveFor(o.attrs[CKA_EC_PARAMS])
		if curve == nil {
			return nil, CKR_FUNCTION_FAILED
		}
		k, err := ecdsa.ParseRawPrivateKey(curve, material)
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		der, err := ecdsa.SignASN1(rand.Reader, k, data)
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &rs); err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		n := (curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*n)
		rs.R.FillBytes(out[:n])
		rs.S.FillBytes(out[n:])
		return out, CKR_OK
	case CKK_ML_DSA:
		alg, ok := pqAlgorithmOf(o)
		if !ok || len(material) != algo.MLDSASeedSize {
			return nil, CKR_FUNCTION_FAILED
		}
		if m.hedge == CKH_DETERMINISTIC_REQUIRED {
			return signMLDSADeterministic(alg, material, data, m.context)
		}
		k, err := algo.NewMLDSAKeyFromSeed(alg, material)
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		sig, err := k.Sign(rand.Reader, data, &algo.ContextOpts{Context: m.context})
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		return sig, CKR_OK
	case CKK_SLH_DSA:
		ps, _ := o.ulong(CKA_PARAMETER_SET)
		sk := slhdsa.PrivateKey{ID: slhdsa.ID(ps)}
		if ps < 1 || ps > 12 || sk.UnmarshalBinary(material) != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		var sig []byte
		var err error
		if m.hedge == CKH_DETERMINISTIC_REQUIRED {
			sig, err = slhdsa.SignDeterministic(&sk, slhdsa.NewMessage(data), m.context)
		} else {
			sig, err = slhdsa.SignRandomized(&sk, rand.Reader, slhdsa.NewMessage(data), m.context)
		}
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		return sig, CKR_OK
	}
	return nil, CKR_KEY_TYPE_INCONSISTENT
}

func signMLDSADeterministic(alg algo.Algorithm, seed, msg, ctx []byte) ([]byte, uint64) {
	var s [32]byte
	copy(s[:], seed)
	var sig []byte
	var err error
	switch alg {
	case algo.MLDSA44:
		_, sk := mldsa44.NewKeyFromSeed(&s)
		sig = make([]byte, mldsa44.SignatureSize)
		err = mldsa44.SignTo(sk, msg, ctx, false, sig)
	case algo.MLDSA65:
		_, sk := mldsa65.NewKeyFromSeed(&s)
		sig = make([]byte, mldsa65.SignatureSize)
		err = mldsa65.SignTo(sk, msg, ctx, false, sig)
	default:
		_, sk := mldsa87.NewKeyFromSeed(&s)
		sig = make([]byte, mldsa87.SignatureSize)
		err = mldsa87.SignTo(sk, msg, ctx, false, sig)
	}
	if err != nil {
		return nil, CKR_FUNCTION_FAILED
	}
	return sig, CKR_OK
}

// publicOf decodes the public key of a public key object.
func publicOf(o *object) (crypto.PublicKey, bool) {
	switch o.keyType() {
	case CKK_EC:
		curve := curveFor(o.attrs[CKA_EC_PARAMS])
		var point []byte
		if curve == nil {
			return nil, false
		}
		if _, err := asn1.Unmarshal(o.attrs[CKA_EC_POINT], &point); err != nil {
			return nil, false
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		return pub, err == nil
	case CKK_ML_DSA, CKK_SLH_DSA, CKK_ML_KEM:
		pub, err := algo.ParsePKIX(o.attrs[CKA_PUBLIC_KEY_INFO])
		return pub, err == nil
	}
	return nil, false
}

// verify checks a signature with the public key object o.
func verify(o *object, m mechanism, data, sig []byte) uint64 {
	if n := signatureLen(o); n == 0 || len(sig) != n {
		return CKR_SIGNATURE_LEN_RANGE
	}
	pub, ok := publicOf(o)
	if !ok {
		return CKR_FUNCTION_FAILED
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if len(data) == 0 || len(data) > 64 {
			return CKR_DATA_LEN_RANGE
		}
		n := len(sig) / 2
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		if ecdsa.Verify(k, data, r, s) {
			return CKR_OK
		}
	case *algo.MLDSAPublicKey:
		if k.VerifyWithContext(data, m.context, sig) == nil {
			return CKR_OK
		}
	case *algo.SLHDSAPublicKey:
		if k.VerifyWithContext(data, m.context, sig) == nil {
			return CKR_OK
		}
	default:
		return CKR_KEY_TYPE_INCONSISTENT
	}
	return CKR_SIGNATURE_INVALID
}

// ciphertextLen is the ML-KEM ciphertext size of key o.
func ciphertextLen(o *object) int {
	switch alg, _ := pqAlgorithmOf(o); alg {
	case algo.MLKEM512:
		return 768
	case algo.MLKEM768:
		return 1088
	case algo.MLKEM1024:
		return 1568
	}
	return 0
}

func encapsulate(o *object) (ct, secret []byte, rv uint64) {
	pub, ok := publicOf(o)
	k, isKEM := pub.(*algo.MLKEMPublicKey)
	if !ok || !isKEM {
		return nil, nil, CKR_KEY_TYPE_INCONSISTENT
	}
	ct, secret, err := k.Encapsulate(rand.Reader)
	if err != nil {
		return nil, nil, CKR_FUNCTION_FAILED
	}
	return ct, secret, CKR_OK
}

func decapsulate(o *object, material, ct []byte) ([]byte, uint64) {
	alg, ok := pqAlgorithmOf(o)
	if !ok {
		return nil, CKR_KEY_TYPE_INCONSISTENT
	}
	if len(ct) != ciphertextLen(o) {
		return nil, CKR_ENCRYPTED_DATA_LEN_RANGE
	}
	k, err := algo.NewMLKEMKeyFromSeed(alg, material)
	if err != nil {
		return nil, CKR_FUNCTION_FAILED
	}
	secret, err := k.Decapsulate(ct)
	if err != nil {
		return nil, CKR_FUNCTION_FAILED
	}
	return secret, CKR_OK
}
