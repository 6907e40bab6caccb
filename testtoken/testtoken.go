// Package testtoken builds and runs the qpki test token for tests: a
// PKCS#11 3.2 token for development and CI only, made of a C client
// library (build/libqpki-testtoken.so, sources in lib/) and a daemon
// (cmd/qpki-testtokend) that holds the keys, like a network HSM.
//
// A PKCS#11 module is loaded once per process and reads the daemon's
// socket from QPKI_TESTTOKEN_SOCKET when it is initialised, so one daemon
// serves a whole test binary, with one slot per token the tests need:
//
//	func TestMain(m *testing.M) { testtoken.Main(m, "ca-token", "other-token") }
//
//	func TestX(t *testing.T) {
//		d := testtoken.Get(t) // fails under CI=true when it cannot be built, skips otherwise
//		cfg := d.Config(t, "ca-token")
//		...
//	}
package testtoken

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The PINs of every test token; distinctive, so that tests can check that
// errors never contain them.
const (
	SocketEnv = "QPKI_TESTTOKEN_SOCKET"
	PINEnv    = "QPKI_TESTTOKEN_TEST_PIN"
	PIN       = "tt-pin-4c1e9a-qpki"
	SOPIN     = "tt-so-pin-77b02f-qpki"
)

// Paths are the built library and daemon.
type Paths struct {
	Lib    string // libqpki-testtoken.so
	Daemon string // qpki-testtokend
}

var (
	buildOnce  sync.Once
	buildPaths Paths
	buildDir   string
	buildErr   error
)

// RepoRoot returns the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// Build compiles the library with gcc and the daemon with go, once per
// process, into a temporary directory that Main removes. The flags are
// those of `make testtoken`.
func Build() (Paths, error) {
	buildOnce.Do(func() {
		removeStaleBuilds()
		buildDir, buildErr = os.MkdirTemp("", fmt.Sprintf("qpki-testtoken-build-%d-", os.Getpid()))
		if buildErr != nil {
			return
		}
		root := RepoRoot()
		p := Paths{Lib: filepath.Join(buildDir, "libqpki-testtoken.so"), Daemon: filepath.Join(buildDir, "qpki-testtokend")}
		srcs, err := filepath.Glob(filepath.Join(root, "testtoken", "lib", "*.c"))
		if err != nil || len(srcs) == 0 {
			buildErr = fmt.Errorf("testtoken: no C sources in %s", filepath.Join(root, "testtoken", "lib"))
			return
		}
		cc := os.Getenv("TESTTOKEN_CC")
		if cc == "" {
			cc = "gcc"
		}
		args := append([]string{"-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-pthread", "-o", p.Lib}, srcs...)
		if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("testtoken: building the library: %v\n%s", err, out)
			return
		}
		cmd := exec.Command("go", "build", "-o", p.Daemon, "./cmd/qpki-testtokend")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("testtoken: building the daemon: %v\n%s", err, out)
			return
		}
		buildPaths = p
	})
	return buildPaths, buildErr
}

// removeStaleBuilds removes the build directories of test processes that
// have exited (those whose TestMain could not remove them).
func removeStaleBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "qpki-testtoken-build-*-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "qpki-testtoken-build-%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// Daemon is a running qpki-testtokend.
type Daemon struct {
	Paths
	Dir    string   // the daemon's --dir
	Socket string   // the daemon's --socket
	Labels []string // the token in slot i is labelled Labels[i]
	Log    string   // the daemon's output

	args   []string
	mu     sync.Mutex
	cmd    *exec.Cmd
	waitCh chan error
}

// Start builds the token if needed and runs a daemon in dir with one
// initialised token per label (SO PIN SOPIN, user PIN PIN).
func Start(dir string, labels ...string) (*Daemon, error) {
	return StartArgs(dir, nil, labels...)
}

// StartArgs is Start with more daemon flags, such as --max-pin-tries.
func StartArgs(dir string, args []string, labels ...string) (*Daemon, error) {
	p, err := Build()
	if err != nil {
		return nil, err
	}
	if len(labels) == 0 {
		labels = []string{"qpki-test"}
	}
	d := &Daemon{Paths: p, Dir: dir, Socket: filepath.Join(dir, "token.sock"), Labels: labels,
		Log: filepath.Join(dir, "daemon.log"), args: args}
	return d, d.start()
}

func (d *Daemon) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	log, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	labels := ""
	for i, l := range d.Labels {
		if i > 0 {
			labels += ","
		}
		labels += l
	}
	cmd := exec.Command(d.Daemon, "--dir", d.Dir, "--socket", d.Socket,
		"--slots", fmt.Sprint(len(d.Labels)), "--init-token", labels,
		// Cheap PIN derivation keeps the PIN tests fast; the default is 600000.
		"--kdf-iterations", "20000")
	cmd.Args = append(cmd.Args, d.args...)
	cmd.Env = append(os.Environ(), "QPKI_TESTTOKEN_SO_PIN="+SOPIN, "QPKI_TESTTOKEN_PIN="+PIN)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(d.Log)
			return fmt.Errorf("testtoken: the daemon exited: %v\n%s", err, out)
		default:
		}
		if c, err := net.Dial("unix", d.Socket); err == nil {
			c.Close()
			d.cmd, d.waitCh = cmd, exited
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	return errors.New("testtoken: the daemon did not start listening in 15s")
}

// Stop ends the daemon with SIGTERM.
func (d *Daemon) Stop() error { return d.stop(syscall.SIGTERM) }

// Kill ends the daemon at once, as a crash would.
func (d *Daemon) Kill() error { return d.stop(syscall.SIGKILL) }

func (d *Daemon) stop(sig syscall.Signal) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(sig)
	select {
	case <-d.waitCh:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.waitCh
	}
	d.cmd = nil
	return nil
}

// Restart kills the daemon and starts it again on the same tokens and
// socket: open sessions then fail with CKR_DEVICE_REMOVED.
func (d *Daemon) Restart() error {
	if err := d.Kill(); err != nil {
		return err
	}
	return d.start()
}

// Slot returns the slot id of the token labelled label.
func (d *Daemon) Slot(label string) (uint, bool) {
	for i, l := range d.Labels {
		if l == label {
			return uint(i), true
		}
	}
	return 0, false
}

// ConfigYAML returns an --hsm-config for the token labelled label, whose
// PIN is read from PINEnv.
func (d *Daemon) ConfigYAML(label string) string {
	return fmt.Sprintf("type: pkcs11\npkcs11:\n  lib: %s\n  token: %q\n  pin_env: %s\n", d.Lib, label, PINEnv)
}

// Config writes ConfigYAML into a temporary file of t.
func (d *Daemon) Config(t testing.TB, label string) string {
	t.Helper()
	if _, ok := d.Slot(label); !ok {
		t.Fatalf("testtoken: no token labelled %q (declare it in testtoken.Main)", label)
	}
	path := filepath.Join(t.TempDir(), "hsm.yaml")
	if err := os.WriteFile(path, []byte(d.ConfigYAML(label)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	mainDaemon *Daemon
	mainErr    error
)

// Main runs a test binary's tests with a daemon serving one token per
// label: it builds the token, starts the daemon in a temporary directory,
// exports SocketEnv and PINEnv, and removes everything afterwards.
func Main(m *testing.M, labels ...string) {
	dir, err := os.MkdirTemp("", "qpki-testtoken-")
	if err == nil {
		mainDaemon, mainErr = Start(dir, labels...)
	} else {
		mainErr = err
	}
	if mainErr == nil {
		os.Setenv(SocketEnv, mainDaemon.Socket)
		os.Setenv(PINEnv, PIN)
	}
	code := m.Run()
	if mainDaemon != nil {
		mainDaemon.Stop()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Get returns the daemon that Main started. When the token could not be
// built or started, it fails the test under CI=true and skips it
// otherwise.
func Get(t testing.TB) *Daemon {
	t.Helper()
	if mainDaemon == nil && mainErr == nil {
		t.Fatal("testtoken: Get needs testtoken.Main in TestMain")
	}
	if mainErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testtoken: %v", mainErr)
		}
		t.Skipf("testtoken: %v", mainErr)
	}
	return mainDaemon
}

var (
	sharedOnce   sync.Once
	sharedDaemon *Daemon
	sharedErr    error
)

// SharedToken is the label of the token of Shared.
const SharedToken = "qpki-shared"

// Shared returns a daemon with one token, SharedToken, started on first
// use for packages whose TestMain does not call Main. It lives as long as
// the test process (the daemon exits with its parent and removes its
// directory) and exports SocketEnv and PINEnv. Like Get, it fails under
// CI=true when the token cannot be built or started, and skips otherwise.
func Shared(t testing.TB) *Daemon {
	t.Helper()
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qpki-testtoken-shared-")
		if err != nil {
			sharedErr = err
			return
		}
		sharedDaemon, sharedErr = StartArgs(dir, []string{"--ephemeral"}, SharedToken)
		if sharedErr != nil {
			os.RemoveAll(dir)
			return
		}
		os.Setenv(SocketEnv, sharedDaemon.Socket)
		os.Setenv(PINEnv, PIN)
	})
	if sharedErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testtoken: %v", sharedErr)
		}
		t.Skipf("testtoken: %v", sharedErr)
	}
	return sharedDaemon
}
