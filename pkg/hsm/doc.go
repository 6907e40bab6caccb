// Package hsm keeps CA and end-entity private keys in a PKCS#11 token.
//
// A --hsm-config file (LoadConfig) names the PKCS#11 module and selects one
// token by label, serial number or slot id; a selector that matches no token,
// or several, is an error, never a fall-back to another token. The user PIN
// comes from the environment variable the file's pin_env names or, when that
// is unset and a terminal is attached, from a prompt; it is never read from
// the file and never appears in an error.
//
// Open returns a Token: one module instance per library in the process (a
// PKCS#11 module is initialised once), one login per token and a bounded
// pool of sessions. Each signature holds its own session for the whole
// call, so signers run in parallel up to the pool size with no lock per key.
// When the token drops sessions or the login (CKR_SESSION_HANDLE_INVALID,
// CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_REMOVED), the call
// reopens its session, logs in again and retries once.
//
// Token.GenerateKey makes non-extractable, sensitive signing keys;
// Token.FindKey finds them again by label and CKA_ID; Token.Signer returns an
// algo.Signer whose algorithm comes from policy and must fit the key. A key
// is recorded in metadata as a KeyRef, and OpenSigner turns a KeyRef back into
// a signer.
//
// Post-quantum keys use a mechanism table (MechanismTable) chosen by the
// configuration's "mechanisms" key: "pkcs11-3.2" (the OASIS standard values)
// by default, or a vendor's table, so that a new vendor is a table entry.
//
// # PKCS#11 3.x
//
// github.com/miekg/pkcs11 speaks PKCS#11 2.40 (C_GetFunctionList). A small
// cgo layer beside it (p11v3.go, p11v3.c) reaches the 3.x functions of the
// same module instance through C_GetInterface, sharing its sessions and
// login:
//
//   - a context string (*algo.ContextOpts) for CKM_ML_DSA and CKM_SLH_DSA
//     goes in a CK_SIGN_ADDITIONAL_CONTEXT; without one the token signs
//     with an empty context;
//   - Token.Encapsulate and Token.Decapsulate run C_EncapsulateKey and
//     C_DecapsulateKey with CKM_ML_KEM (PKCS#11 3.2 modules only).
//
// The 3.2 constants and the key-type checks are in consts.go and
// mechtable.go. The qpki test token (testtoken/, cmd/qpki-testtokend) is a
// PKCS#11 3.2 token for development and CI that offers all of these.
package hsm
