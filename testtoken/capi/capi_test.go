package capi_test

import (
	"errors"
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/testtoken"
	"github.com/qpki/qpki/testtoken/capi"
)

const (
	checksToken = "capi-checks"
	fuzzToken   = "capi-fuzz"
	otherToken  = "capi-other"
)

var (
	daemon   *testtoken.Daemon
	setupErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qpki-capi-")
	if err != nil {
		setupErr = err
	} else {
		// Random sequences try wrong PINs: keep them from locking the token.
		daemon, setupErr = testtoken.StartArgs(dir, []string{"--max-pin-tries", "1000000", "--kdf-iterations", "1000"}, checksToken, fuzzToken, otherToken)
	}
	if setupErr == nil {
		os.Setenv(testtoken.SocketEnv, daemon.Socket)
		setupErr = capi.Load(daemon.Lib)
	}
	code := m.Run()
	if daemon != nil {
		daemon.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func setup(t testing.TB) *testtoken.Daemon {
	t.Helper()
	if setupErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("test token: %v", setupErr)
		}
		t.Skipf("test token: %v", setupErr)
	}
	return daemon
}

func slot(t testing.TB, label string) uint {
	s, ok := setup(t).Slot(label)
	if !ok {
		t.Fatalf("no slot %s", label)
	}
	return s
}

// TestChecks runs the scripted checks of return codes and conventions.
func TestChecks(t *testing.T) {
	if err := capi.Checks(slot(t, checksToken), testtoken.PIN); err != nil {
		t.Fatal(err)
	}
}

// TestDeviceRemovedAfterRestart: sessions of a daemon that restarted fail
// with CKR_DEVICE_REMOVED; new sessions work.
func TestDeviceRemovedAfterRestart(t *testing.T) {
	d := setup(t)
	s0 := slot(t, otherToken)
	if err := capi.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer capi.Finalize()
	s, err := capi.OpenLogin(s0, testtoken.PIN)
	if err != nil {
		t.Fatal(err)
	}
	if state, err := capi.SessionState(s); err != nil || state != 3 {
		t.Fatalf("state %d, %v", state, err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := capi.SessionState(s); !errors.Is(err, capi.CKR(0x32)) {
		t.Fatalf("old session after a restart: %v, want CKR_DEVICE_REMOVED (0x32)", err)
	}
	s, err = capi.OpenLogin(s0, testtoken.PIN)
	if err != nil {
		t.Fatalf("new session after a restart: %v", err)
	}
	if err := capi.SignECDSA(s, 2); err != nil {
		t.Fatal(err)
	}
}

// TestThreads signs from many threads at once, each on its own session.
func TestThreads(t *testing.T) {
	s0 := slot(t, otherToken)
	if err := capi.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer capi.Finalize()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := capi.OpenLogin(s0, testtoken.PIN)
			if err == nil {
				err = capi.SignECDSA(s, 10)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestRandomCallSequences runs random call sequences for a few seconds.
func TestRandomCallSequences(t *testing.T) {
	s := slot(t, fuzzToken)
	r := rand.New(rand.NewSource(20261127))
	deadline := time.Now().Add(8 * time.Second)
	n := 0
	for ; n < 3000 && time.Now().Before(deadline); n++ {
		prog := make([]byte, 20+r.Intn(400))
		r.Read(prog)
		if err := capi.Run(prog, s, testtoken.PIN); err != nil {
			t.Fatalf("program %d (%x): %v", n, prog, err)
		}
	}
	ok := capi.Successes()
	t.Logf("%d random call sequences; successes by operation: %v", n, ok)
	// The sequences reach the token's cryptography, not only its checks.
	for _, op := range []struct {
		i    int
		name string
	}{{4, "C_OpenSession"}, {6, "C_Login"}, {8, "C_GenerateKeyPair"}, {9, "C_SignInit"}, {10, "C_Sign"}, {16, "C_GetAttributeValue"}} {
		if ok[op.i] == 0 {
			t.Errorf("no random sequence got CKR_OK from %s", op.name)
		}
	}
}

func FuzzCallSequence(f *testing.F) {
	// Seeds: open, log in, make an ML-DSA-44 key, sign with a context.
	f.Add([]byte{4, 200, 0, 2, 6, 200, 0, 8, 200, 2, 1, 0, 0, 3, 1, 9, 200, 3, 200, 1, 5, 1, 2, 3, 4, 5, 0, 1, 200, 10, 200, 50, 2, 1, 1})
	f.Add([]byte{4, 200, 0, 2, 6, 200, 0, 8, 200, 0, 0, 2, 0, 0, 1, 18, 200, 0, 1, 0, 200, 1, 1, 19, 200, 0, 1, 0, 200, 1, 1})
	f.Add([]byte{1, 0, 2, 1, 1, 1, 3, 0, 1, 13, 200, 1, 0, 1, 14, 200, 5, 1, 15, 200, 16, 200, 3, 200})
	f.Add([]byte("random bytes are programs too"))
	f.Fuzz(func(t *testing.T, prog []byte) {
		s := slot(t, fuzzToken)
		if len(prog) > 2000 {
			prog = prog[:2000]
		}
		if err := capi.Run(prog, s, testtoken.PIN); err != nil {
			t.Fatal(err)
		}
	})
}
