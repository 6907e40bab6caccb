package hsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// A PKCS#11 module may be initialised only once per process, so every user
// of the same library shares one module, counted by references; the last
// release finalises it.
type module struct {
	key  string
	path string
	ctx  *pkcs11.Ctx
	info pkcs11.Info
	refs int
	// initialised is false when someone else in the process had already
	// called C_Initialize; then C_Finalize is theirs to call.
	initialised bool
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*module{}
)

func moduleKey(lib string) string {
	if !strings.ContainsRune(lib, '/') {
		return lib // resolved by the dynamic loader
	}
	if abs, err := filepath.Abs(lib); err == nil {
		lib = abs
	}
	if real, err := filepath.EvalSymlinks(lib); err == nil {
		lib = real
	}
	return lib
}

// openModule loads and initialises lib, or returns the process's existing
// instance of it.
func openModule(lib string) (*module, error) {
	if lib == "" {
		return nil, errors.New("no PKCS#11 module given")
	}
	key := moduleKey(lib)
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m, ok := modules[key]; ok {
		m.refs++
		return m, nil
	}
	if strings.ContainsRune(lib, '/') {
		st, err := os.Stat(lib)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("PKCS#11 module %s does not exist (check pkcs11.lib)", lib)
		case err != nil:
			return nil, fmt.Errorf("PKCS#11 module %s: %v", lib, err)
		case st.IsDir():
			return nil, fmt.Errorf("PKCS#11 module %s is a directory, not a shared library (check pkcs11.lib)", lib)
		}
	}
	ctx := pkcs11.New(lib)
	if ctx == nil {
		return nil, fmt.Errorf("cannot load PKCS#11 module %s: not a loadable shared library with C_GetFunctionList (check pkcs11.lib)", lib)
	}
	m := &module{key: key, path: lib, ctx: ctx, refs: 1, initialised: true}
	if err := ctx.Initialize(); err != nil {
		if !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			ctx.Destroy()
			return nil, fmt.Errorf("PKCS#11 module %s: C_Initialize: %v", lib, err)
		}
		m.initialised = false
	}
	info, err := ctx.GetInfo()
	if err != nil {
		if m.initialised {
			ctx.Finalize()
		}
		ctx.Destroy()
		return nil, fmt.Errorf("PKCS#11 module %s: C_GetInfo: %v", lib, err)
	}
	m.info = info
	modules[key] = m
	return m, nil
}

// release drops one reference; the last one finalises the module.
func (m *module) release() {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules, m.key)
	if m.initialised {
		m.ctx.Finalize()
	}
	m.ctx.Destroy()
}

func isCKR(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

func ckrCode(err error) (uint, bool) {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e), true
	}
	return 0, false
}
