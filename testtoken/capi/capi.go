// Package capi drives libqpki-testtoken through its C API, from Go tests:
// scripted checks of return codes and output conventions, and random call
// sequences (see driver.c and fuzz.c). It loads the library with dlopen
// and uses the PKCS#11 3.2 function list of C_GetInterface.
package capi

/*
#cgo CFLAGS: -I${SRCDIR}/../lib -Wall
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "driver.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"
)

// The module's state is global to the process: one caller at a time.
var mu sync.Mutex

// Load loads the library at path.
func Load(path string) error {
	mu.Lock()
	defer mu.Unlock()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [256]C.char
	if C.capi_load(cpath, &buf[0], C.size_t(len(buf))) != 0 {
		return errors.New(C.GoString(&buf[0]))
	}
	return nil
}

// Checks runs the scripted checks against the token in slot, whose user
// PIN is pin. The library must not be initialised; it is not afterwards.
func Checks(slot uint, pin string) error {
	mu.Lock()
	defer mu.Unlock()
	cpin := C.CString(pin)
	defer C.free(unsafe.Pointer(cpin))
	var buf [512]C.char
	if C.capi_checks(C.CK_SLOT_ID(slot), cpin, &buf[0], C.size_t(len(buf))) != 0 {
		return errors.New(C.GoString(&buf[0]))
	}
	return nil
}

// Run runs prog as a call sequence (see fuzz.c).
func Run(prog []byte, slot uint, pin string) error {
	mu.Lock()
	defer mu.Unlock()
	cpin := C.CString(pin)
	defer C.free(unsafe.Pointer(cpin))
	cprog := C.CBytes(prog)
	defer C.free(cprog)
	var buf [512]C.char
	if C.capi_run((*C.uchar)(cprog), C.size_t(len(prog)), C.CK_SLOT_ID(slot), cpin, &buf[0], C.size_t(len(buf))) != 0 {
		return errors.New(C.GoString(&buf[0]))
	}
	return nil
}

// CKR is a PKCS#11 return value.
type CKR uint

func (r CKR) Error() string { return fmt.Sprintf("CKR 0x%x", uint(r)) }

func ckr(rv C.CK_RV) error {
	if rv == 0 {
		return nil
	}
	return CKR(rv)
}

// Initialize calls C_Initialize.
func Initialize() error { return ckr(C.capi_initialize()) }

// Finalize calls C_Finalize.
func Finalize() error { return ckr(C.capi_finalize()) }

// OpenLogin opens a read-write session on slot and logs the user in.
func OpenLogin(slot uint, pin string) (uint, error) {
	cpin := C.CString(pin)
	defer C.free(unsafe.Pointer(cpin))
	var s C.CK_SESSION_HANDLE
	err := ckr(C.capi_open_login(C.CK_SLOT_ID(slot), cpin, &s))
	return uint(s), err
}

// SessionState calls C_GetSessionInfo and returns the session state.
func SessionState(s uint) (uint, error) {
	var state C.CK_ULONG
	err := ckr(C.capi_session_state(C.CK_SESSION_HANDLE(s), &state))
	return uint(state), err
}

// SignECDSA makes a P-256 session key and signs and verifies n times.
func SignECDSA(s uint, n int) error { return ckr(C.capi_sign_ecdsa(C.CK_SESSION_HANDLE(s), C.int(n))) }

// Successes returns how many calls of each operation of Run returned
// CKR_OK so far, by operation number (see fuzz.c): 8 is
// C_GenerateKeyPair, 10 C_Sign, 12 C_Verify, 18 C_EncapsulateKey, 19
// C_DecapsulateKey.
func Successes() []uint64 {
	mu.Lock()
	defer mu.Unlock()
	out := make([]uint64, C.CAPI_OPS)
	for i := range out {
		out[i] = uint64(C.capi_ok[i])
	}
	return out
}
