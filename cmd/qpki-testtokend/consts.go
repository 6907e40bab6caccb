package main

// PKCS#11 identifiers the daemon uses, with the values of the OASIS
// PKCS#11 3.2 headers (pkcs11t.h). The PKCS#11 spelling is kept so that
// they can be searched for in the specification.
const (
	CKR_OK                             = 0x000
	CKR_SLOT_ID_INVALID                = 0x003
	CKR_GENERAL_ERROR                  = 0x005
	CKR_FUNCTION_FAILED                = 0x006
	CKR_ARGUMENTS_BAD                  = 0x007
	CKR_ATTRIBUTE_READ_ONLY            = 0x010
	CKR_ATTRIBUTE_SENSITIVE            = 0x011
	CKR_ATTRIBUTE_TYPE_INVALID         = 0x012
	CKR_ATTRIBUTE_VALUE_INVALID        = 0x013
	CKR_ACTION_PROHIBITED              = 0x01b
	CKR_DATA_LEN_RANGE                 = 0x021
	CKR_DEVICE_ERROR                   = 0x030
	CKR_DEVICE_MEMORY                  = 0x031
	CKR_DEVICE_REMOVED                 = 0x032
	CKR_ENCRYPTED_DATA_LEN_RANGE       = 0x041
	CKR_FUNCTION_NOT_SUPPORTED         = 0x054
	CKR_KEY_HANDLE_INVALID             = 0x060
	CKR_KEY_TYPE_INCONSISTENT          = 0x063
	CKR_KEY_FUNCTION_NOT_PERMITTED     = 0x068
	CKR_MECHANISM_INVALID              = 0x070
	CKR_MECHANISM_PARAM_INVALID        = 0x071
	CKR_OBJECT_HANDLE_INVALID          = 0x082
	CKR_OPERATION_ACTIVE               = 0x090
	CKR_OPERATION_NOT_INITIALIZED      = 0x091
	CKR_PIN_INCORRECT                  = 0x0a0
	CKR_PIN_INVALID                    = 0x0a1
	CKR_PIN_LEN_RANGE                  = 0x0a2
	CKR_PIN_LOCKED                     = 0x0a4
	CKR_SESSION_CLOSED                 = 0x0b0
	CKR_SESSION_COUNT                  = 0x0b1
	CKR_SESSION_HANDLE_INVALID         = 0x0b3
	CKR_SESSION_PARALLEL_NOT_SUPPORTED = 0x0b4
	CKR_SESSION_READ_ONLY              = 0x0b5
	CKR_SESSION_EXISTS                 = 0x0b6
	CKR_SESSION_READ_ONLY_EXISTS       = 0x0b7
	CKR_SESSION_READ_WRITE_SO_EXISTS   = 0x0b8
	CKR_SIGNATURE_INVALID              = 0x0c0
	CKR_SIGNATURE_LEN_RANGE            = 0x0c1
	CKR_TEMPLATE_INCOMPLETE            = 0x0d0
	CKR_TEMPLATE_INCONSISTENT          = 0x0d1
	CKR_TOKEN_NOT_RECOGNIZED           = 0x0e1
	CKR_USER_ALREADY_LOGGED_IN         = 0x100
	CKR_USER_NOT_LOGGED_IN             = 0x101
	CKR_USER_PIN_NOT_INITIALIZED       = 0x102
	CKR_USER_TYPE_INVALID              = 0x103
	CKR_USER_ANOTHER_ALREADY_LOGGED_IN = 0x104
	CKR_CURVE_NOT_SUPPORTED            = 0x140
	CKR_BUFFER_TOO_SMALL               = 0x150
	CKR_CRYPTOKI_NOT_INITIALIZED       = 0x190
)

const (
	CKU_SO               = 0
	CKU_USER             = 1
	CKU_CONTEXT_SPECIFIC = 2

	CKS_RO_PUBLIC_SESSION = 0
	CKS_RO_USER_FUNCTIONS = 1
	CKS_RW_PUBLIC_SESSION = 2
	CKS_RW_USER_FUNCTIONS = 3
	CKS_RW_SO_FUNCTIONS   = 4

	CKF_RW_SESSION     = 0x2
	CKF_SERIAL_SESSION = 0x4

	// Slot flags.
	CKF_TOKEN_PRESENT = 0x1
	CKF_HW_SLOT       = 0x4

	// Token flags.
	CKF_LOGIN_REQUIRED         = 0x4
	CKF_USER_PIN_INITIALIZED   = 0x8
	CKF_RESTORE_KEY_NOT_NEEDED = 0x20
	CKF_TOKEN_INITIALIZED      = 0x400
	CKF_USER_PIN_COUNT_LOW     = 0x10000
	CKF_USER_PIN_FINAL_TRY     = 0x20000
	CKF_USER_PIN_LOCKED        = 0x40000
	CKF_SO_PIN_COUNT_LOW       = 0x100000
	CKF_SO_PIN_FINAL_TRY       = 0x200000
	CKF_SO_PIN_LOCKED          = 0x400000

	// Mechanism flags.
	CKF_SIGN              = 0x800
	CKF_VERIFY            = 0x2000
	CKF_GENERATE_KEY_PAIR = 0x10000
	CKF_EC_F_P            = 0x100000
	CKF_EC_NAMEDCURVE     = 0x800000
	CKF_EC_UNCOMPRESS     = 0x1000000
	CKF_ENCAPSULATE       = 0x10000000
	CKF_DECAPSULATE       = 0x20000000

	CKF_ARRAY_ATTRIBUTE = 0x40000000
)

const (
	CKO_DATA        = 0
	CKO_CERTIFICATE = 1
	CKO_PUBLIC_KEY  = 2
	CKO_PRIVATE_KEY = 3
	CKO_SECRET_KEY  = 4

	CKK_EC             = 0x03
	CKK_GENERIC_SECRET = 0x10
	CKK_AES            = 0x1f
	CKK_ML_KEM         = 0x49
	CKK_ML_DSA         = 0x4a
	CKK_SLH_DSA        = 0x4b

	CKM_ML_KEM_KEY_PAIR_GEN  = 0x0f
	CKM_ML_KEM               = 0x17
	CKM_ML_DSA_KEY_PAIR_GEN  = 0x1c
	CKM_ML_DSA               = 0x1d
	CKM_SLH_DSA_KEY_PAIR_GEN = 0x2d
	CKM_SLH_DSA              = 0x2e
	CKM_EC_KEY_PAIR_GEN      = 0x1040
	CKM_ECDSA                = 0x1041

	CKH_HEDGE_PREFERRED        = 0
	CKH_HEDGE_REQUIRED         = 1
	CKH_DETERMINISTIC_REQUIRED = 2
)

// Attributes.
const (
	CKA_CLASS               = 0x000
	CKA_TOKEN               = 0x001
	CKA_PRIVATE             = 0x002
	CKA_LABEL               = 0x003
	CKA_UNIQUE_ID           = 0x004
	CKA_APPLICATION         = 0x010
	CKA_VALUE               = 0x011
	CKA_OBJECT_ID           = 0x012
	CKA_TRUSTED             = 0x086
	CKA_KEY_TYPE            = 0x100
	CKA_SUBJECT             = 0x101
	CKA_ID                  = 0x102
	CKA_SENSITIVE           = 0x103
	CKA_ENCRYPT             = 0x104
	CKA_DECRYPT             = 0x105
	CKA_WRAP                = 0x106
	CKA_UNWRAP              = 0x107
	CKA_SIGN                = 0x108
	CKA_SIGN_RECOVER        = 0x109
	CKA_VERIFY              = 0x10a
	CKA_VERIFY_RECOVER      = 0x10b
	CKA_DERIVE              = 0x10c
	CKA_START_DATE          = 0x110
	CKA_END_DATE            = 0x111
	CKA_PUBLIC_KEY_INFO     = 0x129
	CKA_VALUE_LEN           = 0x161
	CKA_EXTRACTABLE         = 0x162
	CKA_LOCAL               = 0x163
	CKA_NEVER_EXTRACTABLE   = 0x164
	CKA_ALWAYS_SENSITIVE    = 0x165
	CKA_KEY_GEN_MECHANISM   = 0x166
	CKA_MODIFIABLE          = 0x170
	CKA_COPYABLE            = 0x171
	CKA_DESTROYABLE         = 0x172
	CKA_EC_PARAMS           = 0x180
	CKA_EC_POINT            = 0x181
	CKA_ALWAYS_AUTHENTICATE = 0x202
	CKA_WRAP_WITH_TRUSTED   = 0x210
	CKA_ALLOWED_MECHANISMS  = 0x40000600
	CKA_PARAMETER_SET       = 0x61d
	CKA_ENCAPSULATE         = 0x633
	CKA_DECAPSULATE         = 0x634
	CKA_SEED                = 0x637
)
