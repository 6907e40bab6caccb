package hsm

import (
	"fmt"

	"github.com/miekg/pkcs11"
)

// MechanismName returns the CKM_ name of m, or its value in hex.
func MechanismName(m uint) string {
	if n, ok := mechanismNames[m]; ok {
		return n
	}
	if m >= pkcs11.CKM_VENDOR_DEFINED {
		return fmt.Sprintf("vendor-defined 0x%08X", m)
	}
	return fmt.Sprintf("0x%08X", m)
}

var keyTypeNames = map[uint]string{
	pkcs11.CKK_RSA:    "CKK_RSA",
	pkcs11.CKK_DSA:    "CKK_DSA",
	pkcs11.CKK_DH:     "CKK_DH",
	pkcs11.CKK_EC:     "CKK_EC",
	pkcs11.CKK_AES:    "CKK_AES",
	pkcs11.CKK_DES3:   "CKK_DES3",
	CKK_EC_EDWARDS:    "CKK_EC_EDWARDS",
	CKK_EC_MONTGOMERY: "CKK_EC_MONTGOMERY",
	CKK_ML_KEM:        "CKK_ML_KEM",
	CKK_ML_DSA:        "CKK_ML_DSA",
	CKK_SLH_DSA:       "CKK_SLH_DSA",
}

// KeyTypeName returns the CKK_ name of a key type, or its value in hex.
func KeyTypeName(k uint) string {
	if n, ok := keyTypeNames[k]; ok {
		return n
	}
	if k >= pkcs11.CKK_VENDOR_DEFINED {
		return fmt.Sprintf("vendor-defined 0x%08X", k)
	}
	return fmt.Sprintf("0x%08X", k)
}

// mechanismFlagNames spells CK_MECHANISM_INFO flags.
var mechanismFlagNames = []struct {
	flag uint
	name string
}{
	{pkcs11.CKF_HW, "hw"},
	{pkcs11.CKF_ENCRYPT, "encrypt"},
	{pkcs11.CKF_DECRYPT, "decrypt"},
	{pkcs11.CKF_DIGEST, "digest"},
	{pkcs11.CKF_SIGN, "sign"},
	{pkcs11.CKF_SIGN_RECOVER, "sign_recover"},
	{pkcs11.CKF_VERIFY, "verify"},
	{pkcs11.CKF_VERIFY_RECOVER, "verify_recover"},
	{pkcs11.CKF_GENERATE, "generate"},
	{pkcs11.CKF_GENERATE_KEY_PAIR, "generate_key_pair"},
	{pkcs11.CKF_WRAP, "wrap"},
	{pkcs11.CKF_UNWRAP, "unwrap"},
	{pkcs11.CKF_DERIVE, "derive"},
	{CKF_ENCAPSULATE, "encapsulate"},
	{CKF_DECAPSULATE, "decapsulate"},
}

// tokenFlagNames spells CK_TOKEN_INFO flags.
var tokenFlagNames = []struct {
	flag uint
	name string
}{
	{pkcs11.CKF_RNG, "rng"},
	{pkcs11.CKF_WRITE_PROTECTED, "write_protected"},
	{pkcs11.CKF_LOGIN_REQUIRED, "login_required"},
	{pkcs11.CKF_USER_PIN_INITIALIZED, "user_pin_initialized"},
	{pkcs11.CKF_RESTORE_KEY_NOT_NEEDED, "restore_key_not_needed"},
	{pkcs11.CKF_CLOCK_ON_TOKEN, "clock_on_token"},
	{pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH, "protected_authentication_path"},
	{pkcs11.CKF_DUAL_CRYPTO_OPERATIONS, "dual_crypto_operations"},
	{pkcs11.CKF_TOKEN_INITIALIZED, "token_initialized"},
	{pkcs11.CKF_SECONDARY_AUTHENTICATION, "secondary_authentication"},
	{pkcs11.CKF_USER_PIN_COUNT_LOW, "user_pin_count_low"},
	{pkcs11.CKF_USER_PIN_FINAL_TRY, "user_pin_final_try"},
	{pkcs11.CKF_USER_PIN_LOCKED, "user_pin_locked"},
	{pkcs11.CKF_USER_PIN_TO_BE_CHANGED, "user_pin_to_be_changed"},
	{pkcs11.CKF_SO_PIN_COUNT_LOW, "so_pin_count_low"},
	{pkcs11.CKF_SO_PIN_FINAL_TRY, "so_pin_final_try"},
	{pkcs11.CKF_SO_PIN_LOCKED, "so_pin_locked"},
	{pkcs11.CKF_SO_PIN_TO_BE_CHANGED, "so_pin_to_be_changed"},
	{pkcs11.CKF_ERROR_STATE, "error_state"},
}

var slotFlagNames = []struct {
	flag uint
	name string
}{
	{pkcs11.CKF_TOKEN_PRESENT, "token_present"},
	{pkcs11.CKF_REMOVABLE_DEVICE, "removable_device"},
	{pkcs11.CKF_HW_SLOT, "hw_slot"},
}

func flagList(flags uint, names []struct {
	flag uint
	name string
}) []string {
	out := []string{}
	for _, f := range names {
		if flags&f.flag != 0 {
			out = append(out, f.name)
		}
	}
	return out
}
