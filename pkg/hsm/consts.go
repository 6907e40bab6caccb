package hsm

// PKCS#11 identifiers that github.com/miekg/pkcs11 (which follows the 2.40
// headers) lacks. Values are those of the OASIS PKCS#11 3.0 and 3.2 headers
// (pkcs11t.h in github.com/oasis-tcs/pkcs11, working/headers).
//
// The PKCS#11 spelling is kept on purpose so that the names can be searched
// for in the specification.
const (
	// PKCS#11 3.0: Edwards-curve keys and EdDSA.
	CKK_EC_EDWARDS              uint = 0x00000040
	CKK_EC_MONTGOMERY           uint = 0x00000041
	CKM_EC_EDWARDS_KEY_PAIR_GEN uint = 0x00001055
	CKM_EDDSA                   uint = 0x00001057

	// PKCS#11 3.2: post-quantum key types.
	CKK_ML_KEM  uint = 0x00000049
	CKK_ML_DSA  uint = 0x0000004a
	CKK_SLH_DSA uint = 0x0000004b

	// PKCS#11 3.2: post-quantum attributes.
	CKA_PARAMETER_SET        uint = 0x0000061d
	CKA_ENCAPSULATE_TEMPLATE uint = 0x4000062a // CKF_ARRAY_ATTRIBUTE|0x62a
	CKA_DECAPSULATE_TEMPLATE uint = 0x4000062b // CKF_ARRAY_ATTRIBUTE|0x62b
	CKA_ENCAPSULATE          uint = 0x00000633
	CKA_DECAPSULATE          uint = 0x00000634
	CKA_SEED                 uint = 0x00000637

	// PKCS#11 3.2: ML-KEM (FIPS 203).
	CKM_ML_KEM_KEY_PAIR_GEN uint = 0x0000000f
	CKM_ML_KEM              uint = 0x00000017

	// PKCS#11 3.2: ML-DSA (FIPS 204).
	CKM_ML_DSA_KEY_PAIR_GEN    uint = 0x0000001c
	CKM_ML_DSA                 uint = 0x0000001d
	CKM_HASH_ML_DSA            uint = 0x0000001f
	CKM_HASH_ML_DSA_SHA256     uint = 0x00000024
	CKM_HASH_ML_DSA_SHA384     uint = 0x00000025
	CKM_HASH_ML_DSA_SHA512     uint = 0x00000026
	CKM_ML_DSA_EXTERNAL_MU_GEN uint = 0x0000403b
	CKM_ML_DSA_EXTERNAL_MU     uint = 0x0000403c

	// PKCS#11 3.2: SLH-DSA (FIPS 205).
	CKM_SLH_DSA_KEY_PAIR_GEN uint = 0x0000002d
	CKM_SLH_DSA              uint = 0x0000002e
	CKM_HASH_SLH_DSA         uint = 0x00000034

	// PKCS#11 3.2: mechanism flags for key encapsulation.
	CKF_ENCAPSULATE uint = 0x10000000
	CKF_DECAPSULATE uint = 0x20000000

	// PKCS#11 3.2: CK_HEDGE_TYPE values of CK_SIGN_ADDITIONAL_CONTEXT.
	CKH_HEDGE_PREFERRED        uint = 0x00000000
	CKH_HEDGE_REQUIRED         uint = 0x00000001
	CKH_DETERMINISTIC_REQUIRED uint = 0x00000002
)

// PKCS#11 3.2 parameter sets (values of CKA_PARAMETER_SET).
const (
	CKP_ML_DSA_44 uint = 0x00000001
	CKP_ML_DSA_65 uint = 0x00000002
	CKP_ML_DSA_87 uint = 0x00000003

	CKP_ML_KEM_512  uint = 0x00000001
	CKP_ML_KEM_768  uint = 0x00000002
	CKP_ML_KEM_1024 uint = 0x00000003

	CKP_SLH_DSA_SHA2_128S  uint = 0x00000001
	CKP_SLH_DSA_SHAKE_128S uint = 0x00000002
	CKP_SLH_DSA_SHA2_128F  uint = 0x00000003
	CKP_SLH_DSA_SHAKE_128F uint = 0x00000004
	CKP_SLH_DSA_SHA2_192S  uint = 0x00000005
	CKP_SLH_DSA_SHAKE_192S uint = 0x00000006
	CKP_SLH_DSA_SHA2_192F  uint = 0x00000007
	CKP_SLH_DSA_SHAKE_192F uint = 0x00000008
	CKP_SLH_DSA_SHA2_256S  uint = 0x00000009
	CKP_SLH_DSA_SHAKE_256S uint = 0x0000000a
	CKP_SLH_DSA_SHA2_256F  uint = 0x0000000b
	CKP_SLH_DSA_SHAKE_256F uint = 0x0000000c
)
