package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"time"
)

const (
	maxSessions = 10000
	// The texts a token shows, saying plainly what it is.
	slotDescription   = "qpki test token — development and CI only"
	tokenManufacturer = "qpki (development and CI only)"
	tokenModel        = "qpki-testtoken"
)

// server holds every slot, application and session. One mutex guards all
// of it; key generation, signing and PIN derivation run outside it.
type server struct {
	mu       sync.Mutex
	epoch    uint64 // random per start, in the top half of session handles
	slots    []*slot
	apps     map[[16]byte]*app
	sessions map[uint64]*session
	nextSess uint64
	maxTries int
	kdfIter  int
	logger   *log.Logger
	// model, when set, makes each signature cost a network HSM's wall time.
	model *hsmModel
}

// app is one process using the library (one C_Initialize): the login state
// of PKCS#11 belongs to it, across all of its connections.
type app struct {
	id    [16]byte
	conns int
	login map[uint64]uint64 // slot id -> CKU_USER or CKU_SO
}

type session struct {
	handle  uint64
	owner   *app
	slot    *slot
	rw      bool
	finding bool
	found   []uint64
	sign    *operation
	verify  *operation
}

type operation struct {
	mech mechanism
	key  uint64
}

func newServer(slots []*slot, maxTries, kdfIter int, logger *log.Logger) *server {
	var b [8]byte
	rand.Read(b[:])
	epoch := binary.BigEndian.Uint64(b[:])&0xffffff | 1
	return &server{
		epoch: epoch, slots: slots, apps: map[[16]byte]*app{}, sessions: map[uint64]*session{},
		maxTries: maxTries, kdfIter: kdfIter, logger: logger,
	}
}

// serve accepts connections until l is closed.
func (s *server) serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		go s.serveConn(c)
	}
}

// conn is one client connection, bound to its application by OP_HELLO.
type conn struct {
	srv       *server
	app       *app
	ulongSize int
}

func (s *server) serveConn(nc net.Conn) {
	defer nc.Close()
	c := &conn{srv: s}
	defer c.release()
	for {
		req, err := readFrame(nc)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logger.Printf("connection closed: %v", err)
			}
			return
		}
		reply, keep := c.handle(req)
		if err := writeFrame(nc, reply); err != nil || !keep {
			return
		}
	}
}

func (c *conn) release() {
	if c.app == nil {
		return
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	c.app.conns--
	if c.app.conns > 0 {
		return
	}
	// The application's last connection is gone: it exited or finalized.
	for h, ss := range s.sessions {
		if ss.owner == c.app {
			s.closeSession(h)
		}
	}
	delete(s.apps, c.app.id)
}

// handle answers one request; keep is false when the connection must end.
func (c *conn) handle(req []byte) (reply []byte, keep bool) {
	out := &encoder{}
	defer func() {
		if r := recover(); r != nil {
			c.srv.logger.Printf("internal error answering a request: %v", r)
			out = &encoder{}
			out.u64(CKR_GENERAL_ERROR)
			reply, keep = out.b, true
		}
	}()
	d := &decoder{b: req}
	op := d.u64()
	if d.err != nil {
		out.u64(CKR_ARGUMENTS_BAD)
		return out.b, c.app != nil
	}
	if c.app == nil {
		if op != opHello {
			out.u64(CKR_CRYPTOKI_NOT_INITIALIZED)
			return out.b, false
		}
		rv := c.hello(d, out)
		return out.b, rv == CKR_OK
	}
	res := &encoder{}
	rv := c.dispatch(op, d, res)
	out.u64(rv)
	out.b = append(out.b, res.b...)
	return out.b, true
}

func (c *conn) hello(d *decoder, out *encoder) uint64 {
	version := d.u64()
	id := d.bytes(16)
	ulongSize := d.u64()
	d.u64() // pid, for logs
	if !d.done() || len(id) != 16 || (ulongSize != 4 && ulongSize != 8) {
		out.u64(CKR_ARGUMENTS_BAD)
		return CKR_ARGUMENTS_BAD
	}
	if version != wireVersion {
		out.u64(CKR_GENERAL_ERROR)
		return CKR_GENERAL_ERROR
	}
	s := c.srv
	s.mu.Lock()
	a := s.apps[[16]byte(id)]
	if a == nil {
		a = &app{id: [16]byte(id), login: map[uint64]uint64{}}
		s.apps[a.id] = a
	}
	a.conns++
	s.mu.Unlock()
	c.app, c.ulongSize = a, int(ulongSize)
	out.u64(CKR_OK)
	out.u64(s.epoch)
	return CKR_OK
}

func (c *conn) dispatch(op uint64, d *decoder, e *encoder) uint64 {
	switch op {
	case opSlotList:
		return c.slotList(d, e)
	case opSlotInfo:
		return c.slotInfo(d, e)
	case opTokenInfo:
		return c.tokenInfo(d, e)
	case opMechList:
		return c.mechList(d, e)
	case opMechInfo:
		return c.mechInfo(d, e)
	case opInitToken:
		return c.initToken(d)
	case opInitPIN:
		return c.initPIN(d)
	case opSetPIN:
		return c.setPIN(d)
	case opOpenSession:
		return c.openSession(d, e)
	case opCloseSession:
		return c.closeSession(d)
	case opCloseAll:
		return c.closeAll(d)
	case opSessionInfo:
		return c.sessionInfo(d, e)
	case opLogin:
		return c.login(d)
	case opLogout:
		return c.logout(d)
	case opDestroy:
		return c.destroy(d)
	case opGetAttrs:
		return c.getAttrs(d, e)
	case opSetAttrs:
		return c.setAttrs(d)
	case opFindInit:
		return c.findInit(d)
	case opFind:
		return c.find(d, e)
	case opFindFinal:
		return c.findFinal(d)
	case opGenKeyPair:
		return c.generateKeyPair(d, e)
	case opSignInit:
		return c.opInit(d, true)
	case opSign:
		return c.sign(d, e)
	case opVerifyInit:
		return c.opInit(d, false)
	case opVerify:
		return c.verify(d)
	case opEncapsulate:
		return c.encapsulate(d, e)
	case opDecapsulate:
		return c.decapsulate(d, e)
	}
	return CKR_FUNCTION_NOT_SUPPORTED
}

// Lookups; the caller holds s.mu.

func (s *server) slotByID(id uint64) (*slot, uint64) {
	if id >= uint64(len(s.slots)) {
		return nil, CKR_SLOT_ID_INVALID
	}
	return s.slots[id], CKR_OK
}

func (s *server) session(a *app, h uint64) (*session, uint64) {
	if h == 0 {
		return nil, CKR_SESSION_HANDLE_INVALID
	}
	if h>>32 != s.epoch {
		// A session of an earlier daemon: the device went away meanwhile.
		return nil, CKR_DEVICE_REMOVED
	}
	ss := s.sessions[h]
	if ss == nil || ss.owner != a {
		return nil, CKR_SESSION_HANDLE_INVALID
	}
	return ss, CKR_OK
}

func (ss *session) loggedIn() (uint64, bool) {
	u, ok := ss.owner.login[ss.slot.id]
	return u, ok
}

func (ss *session) user() bool {
	u, ok := ss.loggedIn()
	return ok && u == CKU_USER
}

func (ss *session) state() uint64 {
	u, ok := ss.loggedIn()
	switch {
	case ok && u == CKU_SO:
		return CKS_RW_SO_FUNCTIONS
	case ok && ss.rw:
		return CKS_RW_USER_FUNCTIONS
	case ok:
		return CKS_RO_USER_FUNCTIONS
	case ss.rw:
		return CKS_RW_PUBLIC_SESSION
	}
	return CKS_RO_PUBLIC_SESSION
}

// object returns an object the session can see. A private object seen
// without a login gives CKR_USER_NOT_LOGGED_IN, which callers that must
// not reveal it turn into CKR_OBJECT_HANDLE_INVALID.
func (ss *session) object(h uint64) (*object, uint64) {
	o := ss.slot.objects[h]
	if o == nil || (o.owner != nil && o.owner != ss.owner) {
		return nil, CKR_OBJECT_HANDLE_INVALID
	}
	if o.isPrivate() && !ss.user() {
		return nil, CKR_USER_NOT_LOGGED_IN
	}
	return o, CKR_OK
}

func (ss *session) visible(h uint64) (*object, uint64) {
	o, rv := ss.object(h)
	if rv == CKR_USER_NOT_LOGGED_IN {
		rv = CKR_OBJECT_HANDLE_INVALID
	}
	return o, rv
}

func (ss *session) key(h uint64) (*object, uint64) {
	o, rv := ss.object(h)
	if rv == CKR_OBJECT_HANDLE_INVALID {
		rv = CKR_KEY_HANDLE_INVALID
	}
	return o, rv
}

// closeSession ends a session and its session objects; the application's
// last session on a token logs it out of that token.
func (s *server) closeSession(h uint64) {
	ss := s.sessions[h]
	if ss == nil {
		return
	}
	delete(s.sessions, h)
	for oh, o := range ss.slot.objects {
		if o.session == h {
			delete(ss.slot.objects, oh)
		}
	}
	for _, other := range s.sessions {
		if other.owner == ss.owner && other.slot == ss.slot {
			return
		}
	}
	delete(ss.owner.login, ss.slot.id)
	s.forgetKeyIfUnused(ss.slot)
}

// forgetKeyIfUnused drops the token key when nobody is logged in.
func (s *server) forgetKeyIfUnused(sl *slot) {
	for _, a := range s.apps {
		if _, ok := a.login[sl.id]; ok {
			return
		}
	}
	clear(sl.tokenKey)
	sl.tokenKey = nil
}

// Slots, tokens and mechanisms.

func (c *conn) slotList(d *decoder, e *encoder) uint64 {
	d.u64() // token present: every slot holds a token
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	e.u64(uint64(len(c.srv.slots)))
	for i := range c.srv.slots {
		e.u64(uint64(i))
	}
	return CKR_OK
}

func (c *conn) slotInfo(d *decoder, e *encoder) uint64 {
	id := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	if _, rv := c.srv.slotByID(id); rv != CKR_OK {
		return rv
	}
	e.str(slotDescription)
	e.str("qpki")
	e.u64(CKF_TOKEN_PRESENT)
	e.u64(1 << 8)
	e.u64(1 << 8)
	return CKR_OK
}

func (c *conn) tokenInfo(d *decoder, e *encoder) uint64 {
	id := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, rv := s.slotByID(id)
	if rv != CKR_OK {
		return rv
	}
	st := &sl.state
	flags := uint64(CKF_LOGIN_REQUIRED | CKF_RESTORE_KEY_NOT_NEEDED)
	if st.Initialized {
		flags |= CKF_TOKEN_INITIALIZED
	}
	if st.UserPIN != nil {
		flags |= CKF_USER_PIN_INITIALIZED
	}
	flags |= pinFlags(st.UserFails, s.maxTries, CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED)
	flags |= pinFlags(st.SOFails, s.maxTries, CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED)
	var count, rw uint64
	for _, ss := range s.sessions {
		if ss.slot == sl {
			count++
			if ss.rw {
				rw++
			}
		}
	}
	const unavailable = ^uint64(0)
	e.str(st.Label)
	e.str(tokenManufacturer)
	e.str(tokenModel)
	e.str(st.Serial)
	for _, v := range []uint64{flags, 0, count, 0, rw, maxPIN, minPINLen, unavailable, unavailable, unavailable, unavailable} {
		e.u64(v)
	}
	e.u64(1 << 8)
	e.u64(1 << 8)
	e.str("")
	return CKR_OK
}

func pinFlags(fails, max int, low, final, locked uint64) uint64 {
	switch {
	case fails >= max:
		return locked
	case fails == max-1:
		return low | final
	case fails > 0:
		return low
	}
	return 0
}

func (c *conn) mechList(d *decoder, e *encoder) uint64 {
	id := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	if _, rv := c.srv.slotByID(id); rv != CKR_OK {
		return rv
	}
	ms := mechanismList()
	e.u64(uint64(len(ms)))
	for _, m := range ms {
		e.u64(m)
	}
	return CKR_OK
}

func (c *conn) mechInfo(d *decoder, e *encoder) uint64 {
	id, typ := d.u64(), d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	if _, rv := c.srv.slotByID(id); rv != CKR_OK {
		return rv
	}
	info, ok := mechanisms[typ]
	if !ok {
		return CKR_MECHANISM_INVALID
	}
	e.u64(info.min)
	e.u64(info.max)
	e.u64(info.flags)
	return CKR_OK
}

// PINs and logins.

func pinLenOK(pin []byte) bool { return len(pin) >= minPINLen && len(pin) <= maxPIN }

// checkPIN derives the key for one PIN attempt outside the lock and counts
// the result. It returns the token key when the PIN is right. The caller
// holds s.mu, which checkPIN releases while it derives.
func (s *server) checkPIN(sl *slot, so bool, pin []byte) ([]byte, uint64) {
	fails, wrap, role := &sl.state.UserFails, sl.state.UserPIN, "user"
	if so {
		fails, wrap, role = &sl.state.SOFails, sl.state.SOPIN, "so"
	}
	if *fails >= s.maxTries {
		return nil, CKR_PIN_LOCKED
	}
	var key []byte
	ok := false
	if pinLenOK(pin) {
		s.mu.Unlock()
		key, ok = unwrapTokenKey(wrap, pin, role)
		s.mu.Lock()
	}
	if !ok {
		*fails++
		if err := sl.save(); err != nil {
			return nil, CKR_DEVICE_ERROR
		}
		if *fails >= s.maxTries {
			return nil, CKR_PIN_LOCKED
		}
		return nil, CKR_PIN_INCORRECT
	}
	if *fails != 0 {
		*fails = 0
		if err := sl.save(); err != nil {
			return nil, CKR_DEVICE_ERROR
		}
	}
	return key, CKR_OK
}

func (c *conn) initToken(d *decoder) uint64 {
	id := d.u64()
	pin := d.bytes(maxPIN)
	label := d.bytes(32)
	if !d.done() || len(label) != 32 {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, rv := s.slotByID(id)
	if rv != CKR_OK {
		return rv
	}
	for _, ss := range s.sessions {
		if ss.slot == sl {
			return CKR_SESSION_EXISTS
		}
	}
	if !pinLenOK(pin) {
		return CKR_PIN_LEN_RANGE
	}
	if sl.state.Initialized {
		if _, rv := s.checkPIN(sl, true, pin); rv != CKR_OK {
			return rv
		}
		// checkPIN let go of the lock: a session may have opened meanwhile.
		for _, ss := range s.sessions {
			if ss.slot == sl {
				return CKR_SESSION_EXISTS
			}
		}
	}
	return s.initialize(sl, pin, label)
}

// initialize (re)makes a token: a new token key, no user PIN, no objects.
func (s *server) initialize(sl *slot, soPIN, label []byte) uint64 {
	key := make([]byte, 32)
	rand.Read(key)
	wrap, err := wrapTokenKey(key, soPIN, "so", s.kdfIter)
	if err != nil {
		return CKR_FUNCTION_FAILED
	}
	for _, o := range sl.objects {
		if err := sl.removeObject(o); err != nil {
			return CKR_DEVICE_ERROR
		}
	}
	sl.state.Initialized = true
	sl.state.Label = string(bytes.TrimRight(label, " "))
	sl.state.SOPIN, sl.state.UserPIN = wrap, nil
	sl.state.SOFails, sl.state.UserFails = 0, 0
	clear(sl.tokenKey)
	sl.tokenKey = nil
	if err := sl.save(); err != nil {
		return CKR_DEVICE_ERROR
	}
	s.logger.Printf("slot %d: token %q initialised", sl.id, sl.state.Label)
	return CKR_OK
}

func (c *conn) initPIN(d *decoder) uint64 {
	h := d.u64()
	pin := d.bytes(maxPIN)
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	if ss.state() != CKS_RW_SO_FUNCTIONS {
		return CKR_USER_NOT_LOGGED_IN
	}
	if !pinLenOK(pin) {
		return CKR_PIN_LEN_RANGE
	}
	if ss.slot.tokenKey == nil {
		return CKR_DEVICE_ERROR
	}
	wrap, err := wrapTokenKey(ss.slot.tokenKey, pin, "user", s.kdfIter)
	if err != nil {
		return CKR_FUNCTION_FAILED
	}
	ss.slot.state.UserPIN, ss.slot.state.UserFails = wrap, 0
	if err := ss.slot.save(); err != nil {
		return CKR_DEVICE_ERROR
	}
	return CKR_OK
}

func (c *conn) setPIN(d *decoder) uint64 {
	h := d.u64()
	oldPIN, newPIN := d.bytes(maxPIN), d.bytes(maxPIN)
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	if !ss.rw {
		return CKR_SESSION_READ_ONLY
	}
	if !pinLenOK(newPIN) {
		return CKR_PIN_LEN_RANGE
	}
	so := ss.state() == CKS_RW_SO_FUNCTIONS
	sl := ss.slot
	if !so && sl.state.UserPIN == nil {
		return CKR_USER_PIN_NOT_INITIALIZED
	}
	key, rv := s.checkPIN(sl, so, oldPIN)
	if rv != CKR_OK {
		return rv
	}
	role := "user"
	if so {
		role = "so"
	}
	wrap, err := wrapTokenKey(key, newPIN, role, s.kdfIter)
	if err != nil {
		return CKR_FUNCTION_FAILED
	}
	if so {
		sl.state.SOPIN = wrap
	} else {
		sl.state.UserPIN = wrap
	}
	if err := sl.save(); err != nil {
		return CKR_DEVICE_ERROR
	}
	return CKR_OK
}

func (c *conn) login(d *decoder) uint64 {
	h, userType := d.u64(), d.u64()
	pin := d.bytes(maxPIN)
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	switch userType {
	case CKU_SO, CKU_USER:
	case CKU_CONTEXT_SPECIFIC:
		return CKR_OPERATION_NOT_INITIALIZED // no key needs re-authentication
	default:
		return CKR_USER_TYPE_INVALID
	}
	sl := ss.slot
	if !sl.state.Initialized {
		return CKR_TOKEN_NOT_RECOGNIZED
	}
	if u, ok := ss.loggedIn(); ok {
		if u == userType {
			return CKR_USER_ALREADY_LOGGED_IN
		}
		return CKR_USER_ANOTHER_ALREADY_LOGGED_IN
	}
	if userType == CKU_SO {
		for _, other := range s.sessions {
			if other.owner == c.app && other.slot == sl && !other.rw {
				return CKR_SESSION_READ_ONLY_EXISTS
			}
		}
	} else if sl.state.UserPIN == nil {
		return CKR_USER_PIN_NOT_INITIALIZED
	}
	key, rv := s.checkPIN(sl, userType == CKU_SO, pin)
	if rv != CKR_OK {
		return rv
	}
	// The lock was let go while the PIN was checked.
	if ss, rv = s.session(c.app, h); rv != CKR_OK {
		return rv
	}
	if _, ok := ss.loggedIn(); ok {
		return CKR_USER_ALREADY_LOGGED_IN
	}
	c.app.login[sl.id] = userType
	sl.tokenKey = key
	return CKR_OK
}

func (c *conn) logout(d *decoder) uint64 {
	h := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	if _, ok := ss.loggedIn(); !ok {
		return CKR_USER_NOT_LOGGED_IN
	}
	delete(c.app.login, ss.slot.id)
	// Private session objects of the application go, and so do its
	// operations, which may use private keys.
	for _, other := range s.sessions {
		if other.owner != c.app || other.slot != ss.slot {
			continue
		}
		other.sign, other.verify, other.finding, other.found = nil, nil, false, nil
		for oh, o := range ss.slot.objects {
			if o.session == other.handle && o.isPrivate() {
				delete(ss.slot.objects, oh)
			}
		}
	}
	s.forgetKeyIfUnused(ss.slot)
	return CKR_OK
}

// Sessions.

func (c *conn) openSession(d *decoder, e *encoder) uint64 {
	id, flags := d.u64(), d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	if flags&CKF_SERIAL_SESSION == 0 {
		return CKR_SESSION_PARALLEL_NOT_SUPPORTED
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, rv := s.slotByID(id)
	if rv != CKR_OK {
		return rv
	}
	if !sl.state.Initialized {
		return CKR_TOKEN_NOT_RECOGNIZED
	}
	rw := flags&CKF_RW_SESSION != 0
	if u, ok := c.app.login[sl.id]; ok && u == CKU_SO && !rw {
		return CKR_SESSION_READ_WRITE_SO_EXISTS
	}
	if len(s.sessions) >= maxSessions {
		return CKR_SESSION_COUNT
	}
	var h uint64
	for h == 0 || s.sessions[h] != nil {
		s.nextSess = (s.nextSess + 1) & 0xffffffff
		h = s.epoch<<32 | s.nextSess
		if s.nextSess == 0 {
			h = 0
		}
	}
	s.sessions[h] = &session{handle: h, owner: c.app, slot: sl, rw: rw}
	e.u64(h)
	return CKR_OK
}

func (c *conn) closeSession(d *decoder) uint64 {
	h := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, rv := s.session(c.app, h); rv != CKR_OK {
		return rv
	}
	s.closeSession(h)
	return CKR_OK
}

func (c *conn) closeAll(d *decoder) uint64 {
	id := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, rv := s.slotByID(id)
	if rv != CKR_OK {
		return rv
	}
	for h, ss := range s.sessions {
		if ss.owner == c.app && ss.slot == sl {
			s.closeSession(h)
		}
	}
	return CKR_OK
}

func (c *conn) sessionInfo(d *decoder, e *encoder) uint64 {
	h := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	flags := uint64(CKF_SERIAL_SESSION)
	if ss.rw {
		flags |= CKF_RW_SESSION
	}
	e.u64(ss.slot.id)
	e.u64(ss.state())
	e.u64(flags)
	e.u64(0)
	return CKR_OK
}

// Objects.

func (c *conn) destroy(d *decoder) uint64 {
	h, oh := d.u64(), d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	o, rv := ss.visible(oh)
	if rv != CKR_OK {
		return rv
	}
	if o.isToken() && !ss.rw {
		return CKR_SESSION_READ_ONLY
	}
	if !o.flag(CKA_DESTROYABLE) {
		return CKR_ACTION_PROHIBITED
	}
	if err := ss.slot.removeObject(o); err != nil {
		return CKR_DEVICE_ERROR
	}
	return CKR_OK
}

func (c *conn) getAttrs(d *decoder, e *encoder) uint64 {
	h, oh := d.u64(), d.u64()
	n := d.count(maxTemplate)
	types := make([]uint64, n)
	for i := range types {
		types[i] = d.u64()
	}
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	o, rv := ss.visible(oh)
	if rv != CKR_OK {
		return rv
	}
	e.u64(uint64(n))
	for _, t := range types {
		v, status := o.readable(t)
		if status == attrOK && v == nil && t == CKA_VALUE && o.class() == CKO_SECRET_KEY {
			m, mrv := ss.slot.material(o)
			if mrv != CKR_OK {
				status = attrSensitive
			}
			v = m
		}
		e.u64(status)
		e.bytes(external(t, v, c.ulongSize))
	}
	return CKR_OK
}

func (c *conn) setAttrs(d *decoder) uint64 {
	h, oh := d.u64(), d.u64()
	attrs := d.template()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	o, rv := ss.visible(oh)
	if rv != CKR_OK {
		return rv
	}
	if o.isToken() && !ss.rw {
		return CKR_SESSION_READ_ONLY
	}
	if !o.flag(CKA_MODIFIABLE) {
		return CKR_ACTION_PROHIBITED
	}
	changes := map[uint64][]byte{}
	for _, a := range attrs {
		spec, ok := attrSpecs[a.typ]
		if !ok || !spec.allows(o.class()) {
			return CKR_ATTRIBUTE_TYPE_INVALID
		}
		if !spec.modifiable {
			return CKR_ATTRIBUTE_READ_ONLY
		}
		v, rv := canonical(a.typ, a.value, c.ulongSize)
		if rv != CKR_OK {
			return rv
		}
		changes[a.typ] = v
	}
	old := make(map[uint64][]byte, len(changes))
	for t, v := range changes {
		old[t] = o.attrs[t]
		o.attrs[t] = v
	}
	if o.isToken() {
		if err := ss.slot.saveObject(o); err != nil {
			for t, v := range old {
				o.attrs[t] = v
			}
			return CKR_DEVICE_ERROR
		}
	}
	return CKR_OK
}

func (c *conn) findInit(d *decoder) uint64 {
	h := d.u64()
	search := d.template()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	if ss.finding {
		return CKR_OPERATION_ACTIVE
	}
	var found []uint64
	for _, oh := range sortedHandles(ss.slot.objects) {
		if o, rv := ss.visible(oh); rv == CKR_OK && o.matches(search, c.ulongSize) {
			found = append(found, oh)
		}
	}
	ss.finding, ss.found = true, found
	return CKR_OK
}

func (c *conn) find(d *decoder, e *encoder) uint64 {
	h := d.u64()
	max := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	if !ss.finding {
		return CKR_OPERATION_NOT_INITIALIZED
	}
	n := min(uint64(len(ss.found)), max, maxFindBatch)
	e.u64(n)
	for _, oh := range ss.found[:n] {
		e.u64(oh)
	}
	ss.found = ss.found[n:]
	return CKR_OK
}

func (c *conn) findFinal(d *decoder) uint64 {
	h := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	if !ss.finding {
		return CKR_OPERATION_NOT_INITIALIZED
	}
	ss.finding, ss.found = false, nil
	return CKR_OK
}

// addObject stores a new object made in session ss: a token object on
// disk with its material sealed, a session object in memory.
func (s *server) addObject(ss *session, attrs map[uint64][]byte, material []byte) (*object, uint64) {
	sl := ss.slot
	o := &object{attrs: attrs}
	if !o.isToken() {
		o.handle = sl.nextSessionID
		sl.nextSessionID++
		o.material, o.session, o.owner = material, ss.handle, ss.owner
		o.attrs[CKA_UNIQUE_ID] = fmt.Appendf(nil, "%s-s%d", sl.state.Serial, o.handle)
		sl.objects[o.handle] = o
		return o, CKR_OK
	}
	o.handle = sl.state.NextHandle
	o.attrs[CKA_UNIQUE_ID] = fmt.Appendf(nil, "%s-%d", sl.state.Serial, o.handle)
	if material != nil {
		if sl.tokenKey == nil {
			return nil, CKR_USER_NOT_LOGGED_IN
		}
		sealed, err := seal(sl.tokenKey, objectAAD(o.handle), material)
		if err != nil {
			return nil, CKR_FUNCTION_FAILED
		}
		o.sealed = sealed
	}
	sl.state.NextHandle++
	if err := sl.save(); err != nil {
		return nil, CKR_DEVICE_ERROR
	}
	if err := sl.saveObject(o); err != nil {
		return nil, CKR_DEVICE_ERROR
	}
	sl.objects[o.handle] = o
	return o, CKR_OK
}

// Key pairs.

var keyGenTypes = map[uint64]uint64{
	CKM_EC_KEY_PAIR_GEN:      CKK_EC,
	CKM_ML_DSA_KEY_PAIR_GEN:  CKK_ML_DSA,
	CKM_SLH_DSA_KEY_PAIR_GEN: CKK_SLH_DSA,
	CKM_ML_KEM_KEY_PAIR_GEN:  CKK_ML_KEM,
}

// keyDefaults are the attributes of a new key before its template applies.
func keyDefaults(class, keyType, genMech uint64, local bool) map[uint64][]byte {
	f, t := boolBytes(false), boolBytes(true)
	kem := keyType == CKK_ML_KEM
	m := map[uint64][]byte{
		CKA_CLASS: ulongBytes(class), CKA_KEY_TYPE: ulongBytes(keyType),
		CKA_TOKEN: f, CKA_PRIVATE: boolBytes(class != CKO_PUBLIC_KEY), CKA_MODIFIABLE: t, CKA_COPYABLE: f,
		CKA_DESTROYABLE: t, CKA_LABEL: {}, CKA_ID: {}, CKA_START_DATE: {}, CKA_END_DATE: {},
		CKA_DERIVE: f, CKA_LOCAL: boolBytes(local), CKA_KEY_GEN_MECHANISM: ulongBytes(genMech),
	}
	switch class {
	case CKO_PUBLIC_KEY:
		m[CKA_SUBJECT] = []byte{}
		m[CKA_ENCRYPT], m[CKA_VERIFY], m[CKA_VERIFY_RECOVER], m[CKA_WRAP] = f, boolBytes(!kem), f, f
		m[CKA_TRUSTED], m[CKA_ENCAPSULATE] = f, boolBytes(kem)
	case CKO_PRIVATE_KEY:
		m[CKA_SUBJECT] = []byte{}
		m[CKA_SENSITIVE], m[CKA_DECRYPT], m[CKA_SIGN], m[CKA_SIGN_RECOVER] = t, f, boolBytes(!kem), f
		m[CKA_UNWRAP], m[CKA_EXTRACTABLE], m[CKA_ALWAYS_SENSITIVE], m[CKA_NEVER_EXTRACTABLE] = f, f, t, t
		m[CKA_WRAP_WITH_TRUSTED], m[CKA_ALWAYS_AUTHENTICATE], m[CKA_DECAPSULATE] = f, f, boolBytes(kem)
	case CKO_SECRET_KEY:
		m[CKA_SENSITIVE], m[CKA_EXTRACTABLE] = t, f
		for _, a := range []uint64{CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY, CKA_WRAP, CKA_UNWRAP, CKA_TRUSTED, CKA_WRAP_WITH_TRUSTED} {
			m[a] = f
		}
	}
	return m
}

func (c *conn) generateKeyPair(d *decoder, e *encoder) uint64 {
	h := d.u64()
	m := d.mechanism()
	pubA, privA := d.template(), d.template()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	keyType, ok := keyGenTypes[m.typ]
	if !ok {
		return CKR_MECHANISM_INVALID
	}
	if m.hasContext || m.hasRaw {
		return CKR_MECHANISM_PARAM_INVALID
	}
	pubT, rv := parseTemplate(pubA, CKO_PUBLIC_KEY, c.ulongSize)
	if rv != CKR_OK {
		return rv
	}
	privT, rv := parseTemplate(privA, CKO_PRIVATE_KEY, c.ulongSize)
	if rv != CKR_OK {
		return rv
	}
	for _, t := range []template{pubT, privT} {
		if kt, ok := t.ulong(CKA_KEY_TYPE); ok && kt != keyType {
			return CKR_TEMPLATE_INCONSISTENT
		}
		_, hasCurve := t[CKA_EC_PARAMS]
		_, hasSet := t[CKA_PARAMETER_SET]
		if (keyType == CKK_EC && hasSet) || (keyType != CKK_EC && hasCurve) {
			return CKR_TEMPLATE_INCONSISTENT
		}
	}
	// Private keys are always private, sensitive and never extractable.
	if !privT.flag(CKA_PRIVATE, true) || !privT.flag(CKA_SENSITIVE, true) ||
		privT.flag(CKA_EXTRACTABLE, false) || privT.flag(CKA_ALWAYS_AUTHENTICATE, false) {
		return CKR_ATTRIBUTE_VALUE_INVALID
	}
	onToken := pubT.flag(CKA_TOKEN, false) || privT.flag(CKA_TOKEN, false)

	s := c.srv
	s.mu.Lock()
	ss, rv := s.session(c.app, h)
	if rv == CKR_OK && !ss.user() {
		rv = CKR_USER_NOT_LOGGED_IN
	}
	if rv == CKR_OK && onToken && !ss.rw {
		rv = CKR_SESSION_READ_ONLY
	}
	s.mu.Unlock()
	if rv != CKR_OK {
		return rv
	}

	kp, rv := generate(m.typ, pubT, privT)
	if rv != CKR_OK {
		return rv
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, rv = s.session(c.app, h); rv != CKR_OK {
		return rv
	}
	if !ss.user() {
		return CKR_USER_NOT_LOGGED_IN
	}
	pubAttrs := keyDefaults(CKO_PUBLIC_KEY, keyType, m.typ, true)
	privAttrs := keyDefaults(CKO_PRIVATE_KEY, keyType, m.typ, true)
	for t, v := range pubT {
		pubAttrs[t] = v
	}
	for t, v := range privT {
		privAttrs[t] = v
	}
	for t, v := range kp.pub {
		pubAttrs[t] = v
	}
	for t, v := range kp.priv {
		privAttrs[t] = v
	}
	priv, rv := s.addObject(ss, privAttrs, kp.material)
	if rv != CKR_OK {
		return rv
	}
	pub, rv := s.addObject(ss, pubAttrs, nil)
	if rv != CKR_OK {
		ss.slot.removeObject(priv)
		return rv
	}
	e.u64(pub.handle)
	e.u64(priv.handle)
	return CKR_OK
}

// Signatures.

func (c *conn) opInit(d *decoder, signing bool) uint64 {
	h := d.u64()
	m := d.mechanism()
	kh := d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	if (signing && ss.sign != nil) || (!signing && ss.verify != nil) {
		return CKR_OPERATION_ACTIVE
	}
	keyType, ok := signMechanism(m.typ)
	if !ok {
		return CKR_MECHANISM_INVALID
	}
	if rv := checkSignParams(m); rv != CKR_OK {
		return rv
	}
	o, rv := ss.key(kh)
	if rv != CKR_OK {
		return rv
	}
	wantClass, usage := uint64(CKO_PUBLIC_KEY), uint64(CKA_VERIFY)
	if signing {
		wantClass, usage = CKO_PRIVATE_KEY, CKA_SIGN
	}
	if o.class() != wantClass || o.keyType() != keyType {
		return CKR_KEY_TYPE_INCONSISTENT
	}
	if !o.flag(usage) {
		return CKR_KEY_FUNCTION_NOT_PERMITTED
	}
	op := &operation{mech: m, key: kh}
	if signing {
		ss.sign = op
	} else {
		ss.verify = op
	}
	return CKR_OK
}

func (c *conn) sign(d *decoder, e *encoder) uint64 {
	h := d.u64()
	data := d.bytes(maxData)
	mode, capacity := d.u64(), d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		s.mu.Unlock()
		return rv
	}
	op := ss.sign
	if op == nil {
		s.mu.Unlock()
		return CKR_OPERATION_NOT_INITIALIZED
	}
	if mode == modeAbort {
		ss.sign = nil
		s.mu.Unlock()
		return CKR_OK
	}
	o, rv := ss.key(op.key)
	if rv != CKR_OK {
		ss.sign = nil
		s.mu.Unlock()
		return rv
	}
	n := signatureLen(o)
	switch {
	case n == 0:
		ss.sign = nil
		s.mu.Unlock()
		return CKR_FUNCTION_FAILED
	case mode == modeLength:
		s.mu.Unlock()
		e.u64(uint64(n))
		e.bytes(nil)
		return CKR_OK
	case mode != modeOutput:
		ss.sign = nil
		s.mu.Unlock()
		return CKR_ARGUMENTS_BAD
	case capacity < uint64(n):
		s.mu.Unlock()
		e.u64(uint64(n))
		return CKR_BUFFER_TOO_SMALL
	}
	ss.sign = nil
	material, rv := ss.slot.material(o)
	slotID := ss.slot.id
	s.mu.Unlock()
	if rv != CKR_OK {
		return rv
	}
	s.model.sign(slotID)
	sig, rv := sign(o, material, op.mech, data)
	if rv != CKR_OK {
		return rv
	}
	if len(sig) != n {
		return CKR_FUNCTION_FAILED
	}
	e.u64(uint64(n))
	e.bytes(sig)
	return CKR_OK
}

func (c *conn) verify(d *decoder) uint64 {
	h := d.u64()
	data, sig := d.bytes(maxData), d.bytes(maxData)
	abort := false
	if len(d.b) > 0 {
		abort = d.u64() == 1
	}
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	s := c.srv
	s.mu.Lock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		s.mu.Unlock()
		return rv
	}
	op := ss.verify
	ss.verify = nil
	if op == nil {
		s.mu.Unlock()
		return CKR_OPERATION_NOT_INITIALIZED
	}
	if abort {
		s.mu.Unlock()
		return CKR_OK
	}
	o, rv := ss.key(op.key)
	s.mu.Unlock()
	if rv != CKR_OK {
		return rv
	}
	return verify(o, op.mech, data, sig)
}

// Key encapsulation.

// secretAttrs builds a shared-secret key object from a C_EncapsulateKey or
// C_DecapsulateKey template.
func (c *conn) secretAttrs(ss *session, attrs []attribute, secret []byte) (map[uint64][]byte, []byte, uint64) {
	t, rv := parseTemplate(attrs, CKO_SECRET_KEY, c.ulongSize)
	if rv != CKR_OK {
		return nil, nil, rv
	}
	keyType, ok := t.ulong(CKA_KEY_TYPE)
	if !ok {
		keyType = CKK_GENERIC_SECRET
	}
	n, ok := t.ulong(CKA_VALUE_LEN)
	if !ok {
		n = uint64(len(secret))
	}
	switch {
	case keyType != CKK_GENERIC_SECRET && keyType != CKK_AES:
		return nil, nil, CKR_TEMPLATE_INCONSISTENT
	case n == 0 || n > uint64(len(secret)):
		return nil, nil, CKR_TEMPLATE_INCONSISTENT
	case keyType == CKK_AES && n != 16 && n != 24 && n != 32:
		return nil, nil, CKR_TEMPLATE_INCONSISTENT
	}
	m := keyDefaults(CKO_SECRET_KEY, keyType, ^uint64(0), false)
	for typ, v := range t {
		m[typ] = v
	}
	m[CKA_KEY_TYPE] = ulongBytes(keyType)
	m[CKA_VALUE_LEN] = ulongBytes(n)
	m[CKA_ALWAYS_SENSITIVE] = boolBytes(t.flag(CKA_SENSITIVE, true))
	m[CKA_NEVER_EXTRACTABLE] = boolBytes(!t.flag(CKA_EXTRACTABLE, false))
	private := t.flag(CKA_PRIVATE, true)
	onToken := t.flag(CKA_TOKEN, false)
	switch {
	case onToken && !private:
		return nil, nil, CKR_TEMPLATE_INCONSISTENT
	case onToken && !ss.rw:
		return nil, nil, CKR_SESSION_READ_ONLY
	case private && !ss.user():
		return nil, nil, CKR_USER_NOT_LOGGED_IN
	}
	return m, append([]byte(nil), secret[:n]...), CKR_OK
}

func (c *conn) encapsulate(d *decoder, e *encoder) uint64 {
	h := d.u64()
	m := d.mechanism()
	kh := d.u64()
	attrs := d.template()
	mode, capacity := d.u64(), d.u64()
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	if m.typ != CKM_ML_KEM {
		return CKR_MECHANISM_INVALID
	}
	if m.hasContext || m.hasRaw {
		return CKR_MECHANISM_PARAM_INVALID
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	o, rv := ss.key(kh)
	if rv != CKR_OK {
		return rv
	}
	if o.class() != CKO_PUBLIC_KEY || o.keyType() != CKK_ML_KEM {
		return CKR_KEY_TYPE_INCONSISTENT
	}
	if !o.flag(CKA_ENCAPSULATE) {
		return CKR_KEY_FUNCTION_NOT_PERMITTED
	}
	n := ciphertextLen(o)
	switch {
	case n == 0:
		return CKR_FUNCTION_FAILED
	case mode == modeLength:
		e.u64(uint64(n))
		e.bytes(nil)
		e.u64(0)
		return CKR_OK
	case mode != modeOutput:
		return CKR_ARGUMENTS_BAD
	case capacity < uint64(n):
		e.u64(uint64(n))
		return CKR_BUFFER_TOO_SMALL
	}
	ct, secret, rv := encapsulate(o)
	if rv != CKR_OK {
		return rv
	}
	attrsOut, value, rv := c.secretAttrs(ss, attrs, secret)
	if rv != CKR_OK {
		return rv
	}
	key, rv := s.addObject(ss, attrsOut, value)
	if rv != CKR_OK {
		return rv
	}
	e.u64(uint64(len(ct)))
	e.bytes(ct)
	e.u64(key.handle)
	return CKR_OK
}

func (c *conn) decapsulate(d *decoder, e *encoder) uint64 {
	h := d.u64()
	m := d.mechanism()
	kh := d.u64()
	attrs := d.template()
	ct := d.bytes(maxData)
	if !d.done() {
		return CKR_ARGUMENTS_BAD
	}
	if m.typ != CKM_ML_KEM {
		return CKR_MECHANISM_INVALID
	}
	if m.hasContext || m.hasRaw {
		return CKR_MECHANISM_PARAM_INVALID
	}
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, rv := s.session(c.app, h)
	if rv != CKR_OK {
		return rv
	}
	o, rv := ss.key(kh)
	if rv != CKR_OK {
		return rv
	}
	if o.class() != CKO_PRIVATE_KEY || o.keyType() != CKK_ML_KEM {
		return CKR_KEY_TYPE_INCONSISTENT
	}
	if !o.flag(CKA_DECAPSULATE) {
		return CKR_KEY_FUNCTION_NOT_PERMITTED
	}
	material, rv := ss.slot.material(o)
	if rv != CKR_OK {
		return rv
	}
	secret, rv := decapsulate(o, material, ct)
	if rv != CKR_OK {
		return rv
	}
	attrsOut, value, rv := c.secretAttrs(ss, attrs, secret)
	if rv != CKR_OK {
		return rv
	}
	key, rv := s.addObject(ss, attrsOut, value)
	if rv != CKR_OK {
		return rv
	}
	e.u64(key.handle)
	return CKR_OK
}
