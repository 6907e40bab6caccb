package hsm

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "p11v3.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// p11v3 reaches the PKCS#11 3.x functions of a module that miekg/pkcs11
// has loaded: the function list comes from C_GetInterface (3.2 when the
// module offers it) or, for 2.x modules, C_GetFunctionList. Both name the
// same module instance, so sessions and login are shared with
// miekg/pkcs11.
type p11v3 struct {
	m C.qp_module
}

var (
	p11v3Mu      sync.Mutex
	p11v3Modules = map[string]*p11v3{}
)

// loadP11v3 returns the 3.x view of the module at path. It holds its own
// reference to the library, never released, so that its function
// pointers stay valid whatever miekg/pkcs11 does with its handle.
func loadP11v3(path string) (*p11v3, error) {
	p11v3Mu.Lock()
	defer p11v3Mu.Unlock()
	if p, ok := p11v3Modules[path]; ok {
		return p, nil
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var errbuf [256]C.char
	p := &p11v3{}
	if C.qp_open(cpath, &p.m, &errbuf[0], C.size_t(len(errbuf))) != 0 {
		return nil, fmt.Errorf("PKCS#11 module %s: %s", path, C.GoString(&errbuf[0]))
	}
	p11v3Modules[path] = p
	return p, nil
}

// version returns the version of the function list in use.
func (p *p11v3) version() (major, minor int) { return int(p.m.major), int(p.m.minor) }

// has32 reports whether the module offers the PKCS#11 3.2 functions.
func (p *p11v3) has32() bool {
	major, minor := p.version()
	return major > 3 || (major == 3 && minor >= 2)
}

func ckr(rv C.qp_ulong) error {
	if rv == 0 {
		return nil
	}
	return pkcs11.Error(rv)
}

// bytesPtr returns a pointer to b's data, or nil for an empty slice.
func bytesPtr(b []byte) *C.uchar {
	if len(b) == 0 {
		return nil
	}
	return (*C.uchar)(unsafe.Pointer(&b[0]))
}

// sessionState runs C_GetSessionInfo and returns the session's state.
func (p *p11v3) sessionState(s pkcs11.SessionHandle) (uint, error) {
	var state C.qp_ulong
	if err := ckr(C.qp_session_state(&p.m, C.qp_ulong(s), &state)); err != nil {
		return 0, err
	}
	return uint(state), nil
}

// sign runs C_SignInit and C_Sign in one call into C. param is the
// mechanism parameter as miekg/pkcs11 lays it out (NewPSSParams, say).
// nice is added to the thread's nice value while the module signs (see
// PKCS11Config.SignNice).
func (p *p11v3) sign(nice int, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, mech uint, param, data []byte) ([]byte, error) {
	sigs, err := p.signMany(nice, s, key, mech, param, [][]byte{data})
	if err != nil {
		return nil, err
	}
	return sigs[0], nil
}

// signMany signs msgs, with one mechanism and key, in one call into C
// (qp_sign_many): a batch pays once the wait for the Go scheduler that
// each return from C may cost. It returns the signatures made, in order:
// fewer than msgs when one failed, with that failure's error.
func (p *p11v3) signMany(nice int, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, mech uint, param []byte, msgs [][]byte) ([][]byte, error) {
	n := len(msgs)
	if n == 0 {
		return nil, nil
	}
	var data []byte
	lens := make([]C.qp_ulong, n)
	for i, m := range msgs {
		data = append(data, m...)
		lens[i] = C.qp_ulong(len(m))
	}
	if len(data) == 0 {
		data = []byte{0} // a valid pointer for messages that are all empty
	}
	sigs := make([]*C.uchar, n) // C memory, filled in by qp_sign_many
	siglens := make([]C.qp_ulong, n)
	var done C.qp_ulong
	rv := C.qp_sign_many(&p.m, C.int(nice), C.qp_ulong(s), C.qp_ulong(mech), bytesPtr(param), C.qp_ulong(len(param)), C.qp_ulong(key),
		(*C.uchar)(unsafe.Pointer(&data[0])), &lens[0], C.qp_ulong(n), &sigs[0], &siglens[0], &done)
	out := make([][]byte, 0, int(done))
	for i := range sigs {
		if sigs[i] == nil {
			continue
		}
		if i < int(done) {
			out = append(out, C.GoBytes(unsafe.Pointer(sigs[i]), C.int(siglens[i])))
		}
		C.free(unsafe.Pointer(sigs[i]))
	}
	return out, ckr(rv)
}

// signWithContext runs C_SignInit with a CK_SIGN_ADDITIONAL_CONTEXT
// parameter and C_Sign.
func (p *p11v3) signWithContext(nice int, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, mech, hedge uint, ctx, data []byte) ([]byte, error) {
	if len(ctx) > 255 {
		return nil, errors.New("hsm: context of more than 255 bytes")
	}
	var sig *C.uchar
	var n C.qp_ulong
	rv := C.qp_sign_with_context(&p.m, C.int(nice), C.qp_ulong(s), C.qp_ulong(mech), C.qp_ulong(key), C.qp_ulong(hedge),
		bytesPtr(ctx), C.qp_ulong(len(ctx)), bytesPtr(data), C.qp_ulong(len(data)), &sig, &n)
	if err := ckr(rv); err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(sig))
	return C.GoBytes(unsafe.Pointer(sig), C.int(n)), nil
}

// encapsulate runs C_EncapsulateKey with the public key pub; the shared
// secret is left in a session object, which the caller reads and destroys.
func (p *p11v3) encapsulate(s pkcs11.SessionHandle, mech uint, pub pkcs11.ObjectHandle) ([]byte, pkcs11.ObjectHandle, error) {
	var ct *C.uchar
	var n, secret C.qp_ulong
	if err := ckr(C.qp_encapsulate(&p.m, C.qp_ulong(s), C.qp_ulong(mech), C.qp_ulong(pub), &ct, &n, &secret)); err != nil {
		return nil, 0, err
	}
	defer C.free(unsafe.Pointer(ct))
	return C.GoBytes(unsafe.Pointer(ct), C.int(n)), pkcs11.ObjectHandle(secret), nil
}

// decapsulate runs C_DecapsulateKey with the private key priv.
func (p *p11v3) decapsulate(s pkcs11.SessionHandle, mech uint, priv pkcs11.ObjectHandle, ct []byte) (pkcs11.ObjectHandle, error) {
	var secret C.qp_ulong
	rv := C.qp_decapsulate(&p.m, C.qp_ulong(s), C.qp_ulong(mech), C.qp_ulong(priv), bytesPtr(ct), C.qp_ulong(len(ct)), &secret)
	if err := ckr(rv); err != nil {
		return 0, err
	}
	return pkcs11.ObjectHandle(secret), nil
}

// priorityProbe reports whether this process may add delta (negative) to
// a thread's nice value; the error says why not.
func priorityProbe(delta int) error {
	switch rv := C.qp_priority_probe(C.int(delta)); rv {
	case 0:
		return nil
	case -1:
		return errors.New("not supported on this system")
	default:
		return fmt.Errorf("%w: needs CAP_SYS_NICE or an RLIMIT_NICE of at least %d (systemd: LimitNICE=%d)",
			syscall.Errno(rv), 20-delta, delta)
	}
}

// threadNice returns the nice value of the thread it runs on.
func threadNice() int { return int(C.qp_thread_nice()) }
