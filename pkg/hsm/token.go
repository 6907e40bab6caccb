package hsm

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// DefaultMaxSessions is the session pool size when Open is given none.
const DefaultMaxSessions = 4

// Option adjusts Open.
type Option func(*options)

type options struct {
	maxSessions int
}

// WithMaxSessions bounds the number of sessions open at once on the token,
// which is also the number of concurrent signatures. Tokens opened more
// than once in a process share one pool, sized by the largest request.
func WithMaxSessions(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxSessions = n
		}
	}
}

// Token is an open PKCS#11 token: a session pool and one login, shared by
// every Open of the same token in the process. Close it when done.
type Token struct {
	st        *tokenState
	closeOnce sync.Once
}

// tokenState is what every Token on one slot shares.
type tokenState struct {
	regKey string
	mod    *module
	cfg    *Config // of the first Open
	slot   uint
	label  string
	serial string
	info   pkcs11.TokenInfo
	table  *MechanismTable
	mechs  map[uint]bool

	needLogin      bool
	pin            string
	pinSource      string
	logoutAfterUse bool

	pool *pool

	mu       sync.Mutex // guards loggedIn and active
	loggedIn bool
	active   int

	refs int // guarded by tokensMu

	recoveries atomic.Int64 // times the sessions were reopened, for tests

	signV3Once sync.Once
	signV3     *p11v3 // signs in one call into C; nil: through miekg/pkcs11
	signNice   int    // added to a signing thread's nice value (PKCS11Config.SignNice)
}

var (
	tokensMu sync.Mutex
	tokens   = map[string]*tokenState{}
)

// OpenFile loads an --hsm-config file and opens the token it names.
func OpenFile(path string, opts ...Option) (*Token, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return Open(cfg, opts...)
}

// Open loads the configuration's module, selects its token and logs in.
// A token that is not there, a wrong PIN or a missing module is an error.
// Opening a token that is already open in the process shares its session
// pool and login; the settings of the first Open (pin_env,
// logout_after_use, mechanisms, sign_nice) stay in force.
func Open(cfg *Config, opts ...Option) (*Token, error) {
	o := options{maxSessions: DefaultMaxSessions}
	for _, f := range opts {
		f(&o)
	}
	table, err := cfg.MechanismTable()
	if err != nil {
		return nil, fmt.Errorf("hsm: %v", err)
	}
	mod, err := openModule(cfg.PKCS11.Lib)
	if err != nil {
		return nil, fmt.Errorf("hsm: %v", err)
	}
	pt, err := selectToken(mod, cfg)
	if err != nil {
		mod.release()
		return nil, fmt.Errorf("hsm: %v", err)
	}

	tokensMu.Lock()
	defer tokensMu.Unlock()
	regKey := fmt.Sprintf("%s#%d", mod.key, pt.slot)
	if st, ok := tokens[regKey]; ok {
		mod.release() // the shared state holds its own reference
		st.refs++
		st.pool.grow(o.maxSessions)
		return &Token{st: st}, nil
	}

	st := &tokenState{
		regKey:         regKey,
		mod:            mod,
		cfg:            cfg,
		slot:           pt.slot,
		label:          pt.label(),
		serial:         pt.serial(),
		info:           pt.info,
		table:          table,
		mechs:          map[uint]bool{},
		needLogin:      pt.info.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0,
		logoutAfterUse: cfg.PKCS11.LogoutAfterUse,
		signNice:       cfg.PKCS11.signNice(),
		refs:           1,
	}
	limit := o.maxSessions
	if max := pt.info.MaxSessionCount; max != pkcs11.CK_EFFECTIVELY_INFINITE && max != pkcs11.CK_UNAVAILABLE_INFORMATION && int(max) < limit {
		limit = int(max)
	}
	st.pool = newPool(limit)
	if ms, err := mod.ctx.GetMechanismList(pt.slot); err == nil {
		for _, m := range ms {
			st.mechs[m.Mechanism] = true
		}
	}
	if st.needLogin {
		pin, source, err := cfg.pinFor(pt)
		if err != nil {
			mod.release()
			return nil, fmt.Errorf("hsm: token %q: %v", st.label, err)
		}
		st.pin, st.pinSource = pin, source
	}
	// Log in now, so that a wrong PIN shows at once rather than at the
	// first signature.
	if err := st.withSession(func(pkcs11.SessionHandle) error { return nil }); err != nil {
		st.shutdown()
		return nil, err
	}
	tokens[regKey] = st
	return &Token{st: st}, nil
}

// Close releases this handle; the last handle on a token logs out, closes
// its sessions and, when no other token uses the module, finalises it.
func (t *Token) Close() error {
	t.closeOnce.Do(func() {
		tokensMu.Lock()
		defer tokensMu.Unlock()
		t.st.refs--
		if t.st.refs == 0 {
			delete(tokens, t.st.regKey)
			t.st.shutdown()
		}
	})
	return nil
}

// Label returns the token label.
func (t *Token) Label() string { return t.st.label }

// Serial returns the token serial number.
func (t *Token) Serial() string { return t.st.serial }

// Slot returns the slot id holding the token.
func (t *Token) Slot() uint { return t.st.slot }

// Config returns the configuration the token was first opened with.
func (t *Token) Config() *Config { return t.st.cfg }

// MechanismTable returns the post-quantum mechanism table in use.
func (t *Token) MechanismTable() *MechanismTable { return t.st.table }

// HasMechanism reports whether the token lists mechanism m.
func (t *Token) HasMechanism(m uint) bool { return t.st.mechs[m] }

func (st *tokenState) shutdown() {
	ctx := st.mod.ctx
	idle := st.pool.close()
	st.mu.Lock()
	if st.loggedIn && len(idle) > 0 {
		ctx.Logout(idle[0])
	}
	st.loggedIn = false
	st.mu.Unlock()
	for _, s := range idle {
		ctx.CloseSession(s)
	}
	st.mod.release()
}

func (st *tokenState) login(s pkcs11.SessionHandle) error {
	err := st.mod.ctx.Login(s, pkcs11.CKU_USER, st.pin)
	if err == nil {
		return nil
	}
	code, _ := ckrCode(err)
	switch code {
	case pkcs11.CKR_USER_ALREADY_LOGGED_IN:
		return nil
	case pkcs11.CKR_PIN_INCORRECT:
		return fmt.Errorf("hsm: login to token %q failed: wrong PIN (CKR_PIN_INCORRECT; PIN from %s)", st.label, st.pinSource)
	case pkcs11.CKR_PIN_LOCKED:
		return fmt.Errorf("hsm: login to token %q failed: the user PIN is locked (CKR_PIN_LOCKED)", st.label)
	case pkcs11.CKR_PIN_EXPIRED:
		return fmt.Errorf("hsm: login to token %q failed: the user PIN has expired (CKR_PIN_EXPIRED)", st.label)
	case pkcs11.CKR_PIN_LEN_RANGE:
		return fmt.Errorf("hsm: login to token %q failed: PIN length out of the token's range (CKR_PIN_LEN_RANGE; PIN from %s)", st.label, st.pinSource)
	case pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
		return fmt.Errorf("hsm: login to token %q failed: the user PIN is not initialised (CKR_USER_PIN_NOT_INITIALIZED)", st.label)
	}
	if isStale(err) {
		return err // the caller reopens the session and retries
	}
	return fmt.Errorf("hsm: login to token %q failed: %v", st.label, err)
}

// lease is a session taken from the pool for one operation.
type lease struct {
	s       pkcs11.SessionHandle
	open    bool // s is an open session
	counted bool // counted in tokenState.active
}

func (st *tokenState) acquire(fresh bool) (lease, error) {
	s, ok, err := st.pool.get(fresh)
	if err != nil {
		return lease{}, err
	}
	if !ok {
		s, err = st.mod.ctx.OpenSession(st.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			st.pool.put(0, false)
			if isStale(err) {
				return lease{}, err
			}
			return lease{}, fmt.Errorf("hsm: token %q: C_OpenSession: %v", st.label, err)
		}
	}
	l := lease{s: s, open: true, counted: true}
	st.mu.Lock()
	st.active++
	if st.needLogin && !st.loggedIn {
		err = st.login(s)
		if err == nil {
			st.loggedIn = true
		}
	}
	st.mu.Unlock()
	return l, err
}

func (st *tokenState) release(l lease, stale bool) {
	ctx := st.mod.ctx
	if l.counted {
		st.mu.Lock()
		st.active--
		if st.logoutAfterUse && st.active == 0 && st.loggedIn && !stale {
			ctx.Logout(l.s)
			st.loggedIn = false
		}
		st.mu.Unlock()
	}
	if !l.open {
		return
	}
	if !st.pool.put(l.s, !stale) {
		ctx.CloseSession(l.s)
	}
}

// recover forgets sessions and login state after an error that says the
// token dropped them (all sessions closed, device removed, logged out).
func (st *tokenState) recover() {
	st.recoveries.Add(1)
	for _, s := range st.pool.drain() {
		st.mod.ctx.CloseSession(s)
	}
	st.mu.Lock()
	st.loggedIn = false
	st.mu.Unlock()
}

// withSession runs fn on a pooled, logged-in session. When the token has
// dropped the session or the login, the session is reopened, the login
// redone and fn run once more.
func (st *tokenState) withSession(fn func(s pkcs11.SessionHandle) error) error {
	for attempt := 0; ; attempt++ {
		l, err := st.acquire(attempt > 0)
		if err == nil {
			err = fn(l.s)
		}
		stale := isStale(err)
		st.release(l, stale)
		if stale && attempt == 0 {
			st.recover()
			continue
		}
		if stale {
			return fmt.Errorf("hsm: token %q: %w (after reopening the session)", st.label, err)
		}
		return err
	}
}

// sessionLoggedIn reports whether s is in a user state. Some tokens
// (SoftHSM2) answer a logged-out session's use of a private key with
// CKR_OBJECT_HANDLE_INVALID rather than CKR_USER_NOT_LOGGED_IN.
func (st *tokenState) sessionLoggedIn(s pkcs11.SessionHandle) bool {
	if !st.needLogin {
		return true
	}
	si, err := st.mod.ctx.GetSessionInfo(s)
	if err != nil {
		return false
	}
	return si.State == pkcs11.CKS_RO_USER_FUNCTIONS || si.State == pkcs11.CKS_RW_USER_FUNCTIONS
}

// isStale reports errors after which a fresh session and login may succeed.
func isStale(err error) bool {
	code, ok := ckrCode(err)
	if !ok {
		return false
	}
	switch code {
	case pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_DEVICE_REMOVED,
		// An operation left active on the session (a module that failed
		// half-way): only a fresh session signs again.
		pkcs11.CKR_OPERATION_ACTIVE:
		return true
	}
	return false
}
