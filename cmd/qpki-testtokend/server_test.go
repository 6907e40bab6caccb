package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testSOPIN   = "so-pin-for-tests"
	testUserPIN = "user-pin-for-tests"
)

// logBuffer collects the daemon's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newTestServer makes a server on dir with one slot initialised, with a
// user PIN, without a socket.
func newTestServer(t testing.TB, dir string) (*server, *logBuffer) {
	t.Helper()
	sl, err := loadSlot(filepath.Join(dir, "slot-0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	s := newServer([]*slot{sl}, 3, 1000, log.New(logs, "", 0))
	if !sl.state.Initialized {
		t.Setenv(soPINEnv, testSOPIN)
		t.Setenv(userPINEnv, testUserPIN)
		if err := initTokens(s, []string{"test"}); err != nil {
			t.Fatal(err)
		}
	}
	return s, logs
}

// client speaks the wire protocol to a conn without a socket.
type client struct {
	t testing.TB
	c *conn
}

func newClient(t testing.TB, s *server, app byte) *client {
	c := &conn{srv: s}
	e := &encoder{}
	e.u64(opHello)
	e.u64(wireVersion)
	e.bytes(bytes.Repeat([]byte{app}, 16))
	e.u64(8)
	e.u64(1)
	if reply, keep := c.handle(e.b); !keep || binary.BigEndian.Uint64(reply[1:9]) != CKR_OK {
		t.Fatalf("hello: %x", reply)
	}
	return &client{t: t, c: c}
}

type item any // uint64, []byte or []attribute (a template)

// call sends op with items and returns the rv and the reply's items.
func (cl *client) call(op uint64, items ...item) (uint64, *decoder) {
	e := &encoder{}
	e.u64(op)
	for _, it := range items {
		switch v := it.(type) {
		case uint64:
			e.u64(v)
		case int:
			e.u64(uint64(v))
		case []byte:
			e.bytes(v)
		case string:
			e.str(v)
		case []attribute:
			e.u64(uint64(len(v)))
			for _, a := range v {
				e.u64(a.typ)
				e.bytes(a.value)
			}
		default:
			cl.t.Fatalf("item %T", it)
		}
	}
	reply, _ := cl.c.handle(e.b)
	d := &decoder{b: reply}
	return d.u64(), d
}

func (cl *client) must(op uint64, items ...item) *decoder {
	cl.t.Helper()
	rv, d := cl.call(op, items...)
	if rv != CKR_OK {
		cl.t.Fatalf("op %d: CKR 0x%x", op, rv)
	}
	return d
}

func ul(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// mech encodes M for a mechanism without a parameter.
func mech(m uint64) []item { return []item{m, paramNone} }

func (cl *client) session(rw bool) uint64 {
	flags := uint64(CKF_SERIAL_SESSION)
	if rw {
		flags |= CKF_RW_SESSION
	}
	return cl.must(opOpenSession, 0, flags).u64()
}

func (cl *client) genMLDSA(s uint64, onToken bool) (pub, priv uint64) {
	args := []item{s}
	args = append(args, mech(CKM_ML_DSA_KEY_PAIR_GEN)...)
	args = append(args, []attribute{{CKA_PARAMETER_SET, ul(2)}, {CKA_TOKEN, boolBytes(onToken)}},
		[]attribute{{CKA_TOKEN, boolBytes(onToken)}, {CKA_LABEL, []byte("k")}})
	d := cl.must(opGenKeyPair, args...)
	return d.u64(), d.u64()
}

func (cl *client) sign(s, key uint64, msg []byte) (uint64, []byte) {
	args := append([]item{s}, mech(CKM_ML_DSA)...)
	if rv, _ := cl.call(opSignInit, append(args, key)...); rv != CKR_OK {
		return rv, nil
	}
	rv, d := cl.call(opSign, s, msg, modeOutput, 10000)
	if rv != CKR_OK {
		return rv, nil
	}
	d.u64()
	return rv, d.bytes(maxData)
}

// TestTokenSurvivesRestartAndInitPIN: a token key made before a restart
// signs after it, and after the SO set a new user PIN; the key material
// is on disk only sealed.
func TestTokenSurvivesRestartAndInitPIN(t *testing.T) {
	dir := t.TempDir()
	s, _ := newTestServer(t, dir)
	cl := newClient(t, s, 1)
	sess := cl.session(true)
	cl.must(opLogin, sess, CKU_USER, testUserPIN)
	pub, priv := cl.genMLDSA(sess, true)

	// Key material is never in the clear on disk.
	data, err := os.ReadFile(filepath.Join(dir, "slot-0", "objects", "1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f objectFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Sealed) == 0 || f.Attrs[CKA_VALUE] != nil || f.Attrs[CKA_SEED] != nil {
		t.Fatalf("private key object on disk: sealed %d bytes, CKA_VALUE %x", len(f.Sealed), f.Attrs[CKA_VALUE])
	}
	rv, d := cl.call(opGetAttrs, sess, priv, 2, CKA_VALUE, CKA_SEED)
	if rv != CKR_OK || d.u64() != 2 || d.u64() != attrSensitive {
		t.Fatalf("CKA_VALUE of a private key: rv 0x%x", rv)
	}

	// A new daemon on the same directory: the old session is gone, the key not.
	s2, _ := newTestServer(t, dir)
	if rv, _ := newClient(t, s2, 1).call(opSessionInfo, sess); rv != CKR_DEVICE_REMOVED {
		t.Fatalf("old session on a new daemon: 0x%x, want CKR_DEVICE_REMOVED", rv)
	}
	cl = newClient(t, s2, 1)
	sess = cl.session(true)
	if rv, _ := cl.sign(sess, priv, []byte("m")); rv != CKR_USER_NOT_LOGGED_IN {
		t.Fatalf("sign without login: 0x%x", rv)
	}
	for i := 0; i < 3; i++ {
		want := uint64(CKR_PIN_INCORRECT)
		if i == 2 {
			want = CKR_PIN_LOCKED
		}
		if rv, _ := cl.call(opLogin, sess, CKU_USER, "wrong pin"); rv != want {
			t.Fatalf("wrong PIN %d: 0x%x, want 0x%x", i, rv, want)
		}
	}
	if rv, _ := cl.call(opLogin, sess, CKU_USER, testUserPIN); rv != CKR_PIN_LOCKED {
		t.Fatalf("right PIN on a locked token: 0x%x", rv)
	}
	// The lock is on disk.
	s3, _ := newTestServer(t, dir)
	cl = newClient(t, s3, 2)
	sess = cl.session(true)
	if rv, _ := cl.call(opLogin, sess, CKU_USER, testUserPIN); rv != CKR_PIN_LOCKED {
		t.Fatalf("right PIN after a restart of a locked token: 0x%x", rv)
	}
	cl.must(opLogin, sess, CKU_SO, testSOPIN)
	cl.must(opInitPIN, sess, "the new user pin")
	cl.must(opLogout, sess)
	cl.must(opLogin, sess, CKU_USER, "the new user pin")
	rv, sig := cl.sign(sess, priv, []byte("m"))
	if rv != CKR_OK || len(sig) != 3309 {
		t.Fatalf("sign after C_InitPIN: 0x%x, %d bytes", rv, len(sig))
	}
	args := append([]item{sess}, mech(CKM_ML_DSA)...)
	cl.must(opVerifyInit, append(args, pub)...)
	cl.must(opVerify, sess, []byte("m"), sig)
}

// TestMalformedRequests sends broken frames and items over a real socket:
// the daemon answers or drops the connection, and keeps serving.
func TestMalformedRequests(t *testing.T) {
	dir := t.TempDir()
	s, logs := newTestServer(t, dir)
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go s.serve(l)

	roundTrip := func(nc net.Conn, payload []byte) ([]byte, error) {
		if err := writeFrame(nc, payload); err != nil {
			return nil, err
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		return readFrame(nc)
	}
	hello := func() net.Conn {
		nc, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		e := &encoder{}
		e.u64(opHello)
		e.u64(wireVersion)
		e.bytes(make([]byte, 16))
		e.u64(8)
		e.u64(0)
		if _, err := roundTrip(nc, e.b); err != nil {
			t.Fatal(err)
		}
		return nc
	}
	rvOf := func(reply []byte) uint64 {
		d := &decoder{b: reply}
		return d.u64()
	}

	// Frames that cannot be read end the connection.
	for _, raw := range [][]byte{{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, {0, 0x50, 0, 0}} {
		nc := hello()
		nc.Write(raw)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := readFrame(nc); err == nil {
			t.Errorf("frame header %x got a reply", raw)
		}
		nc.Close()
	}
	// A first request that is not a hello.
	nc, _ := net.Dial("unix", sock)
	e := &encoder{}
	e.u64(opSlotList)
	e.u64(1)
	if reply, err := roundTrip(nc, e.b); err != nil || rvOf(reply) != CKR_CRYPTOKI_NOT_INITIALIZED {
		t.Errorf("request before hello: %x %v", reply, err)
	}
	nc.Close()

	// Broken items get CKR_ARGUMENTS_BAD and the connection goes on.
	nc = hello()
	defer nc.Close()
	bad := [][]byte{
		{'X'},
		{'U', 1, 2},
		append(append([]byte{'U'}, make([]byte, 7)...), opSlotList),                            // op without its argument
		append(append([]byte{'U'}, make([]byte, 7)...), opLogin, 'B', 0xff, 0xff),              // truncated bytes item
		func() []byte { e := &encoder{}; e.u64(opSlotList); e.u64(1); e.u64(2); return e.b }(), // trailing item
		func() []byte { e := &encoder{}; e.u64(opFindInit); e.u64(1); e.u64(1 << 40); return e.b }(),
		func() []byte {
			e := &encoder{}
			e.u64(opGenKeyPair)
			e.u64(1)
			e.u64(CKM_ML_DSA_KEY_PAIR_GEN)
			e.u64(9)
			return e.b
		}(),
	}
	for _, payload := range bad {
		reply, err := roundTrip(nc, payload)
		if err != nil {
			t.Fatalf("payload %x: %v", payload, err)
		}
		if rv := rvOf(reply); rv != CKR_ARGUMENTS_BAD {
			t.Errorf("payload %x: CKR 0x%x, want CKR_ARGUMENTS_BAD", payload, rv)
		}
	}
	e = &encoder{}
	e.u64(9999)
	if reply, err := roundTrip(nc, e.b); err != nil || rvOf(reply) != CKR_FUNCTION_NOT_SUPPORTED {
		t.Errorf("unknown op: %x %v", reply, err)
	}
	// Still serving.
	e = &encoder{}
	e.u64(opSlotList)
	e.u64(1)
	if reply, err := roundTrip(nc, e.b); err != nil || rvOf(reply) != CKR_OK {
		t.Fatalf("slot list after bad requests: %x %v", reply, err)
	}
	if strings.Contains(logs.String(), "internal error") {
		t.Fatalf("the daemon panicked:\n%s", logs)
	}
}

// FuzzRequest feeds arbitrary payloads to a connection that said hello;
// the daemon must answer each without an internal error.
func FuzzRequest(f *testing.F) {
	add := func(items ...uint64) {
		e := &encoder{}
		for _, v := range items {
			e.u64(v)
		}
		f.Add(e.b)
	}
	add(opSlotList, 1)
	add(opOpenSession, 0, CKF_SERIAL_SESSION|CKF_RW_SESSION)
	add(opGenKeyPair, 0, CKM_EC_KEY_PAIR_GEN, paramNone, 0, 0)
	add(opSign, 0)
	add(opGetAttrs, 0, 1, 2, CKA_VALUE, CKA_LABEL)
	add(opMechInfo, 0, CKM_ML_KEM)
	f.Add([]byte("U\x00\x00\x00\x00\x00\x00\x00\x0eB\x00\x00\x00\x04pin!"))
	dir := f.TempDir()
	sl, err := loadSlot(filepath.Join(dir, "slot-0"), 0)
	if err != nil {
		f.Fatal(err)
	}
	logs := &logBuffer{}
	s := newServer([]*slot{sl}, 3, 1000, log.New(logs, "", 0))
	key := make([]byte, 32)
	wrap, _ := wrapTokenKey(key, []byte(testUserPIN), "user", 1000)
	s.initialize(sl, []byte(testSOPIN), []byte("fuzz                            "))
	sl.state.UserPIN = wrap
	f.Fuzz(func(t *testing.T, payload []byte) {
		cl := newClient(t, s, 7)
		cl.c.handle(payload)
		// A session and a key, then the payload again on a live session.
		sess := cl.session(true)
		cl.c.handle(payload)
		cl.call(opCloseSession, sess)
		cl.c.release()
		if strings.Contains(logs.String(), "internal error") {
			t.Fatalf("payload %x: %s", payload, logs)
		}
	})
}
