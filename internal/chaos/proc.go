package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one child process of the run: a NATS node, a front-end, a
// worker or a token daemon. It can be killed, stopped, continued and
// started again with the same arguments; its output goes to a log file
// that grows across restarts.
type proc struct {
	name string
	path string
	args []string
	env  []string
	log  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped
}

func newProc(name, log, path string, env []string, args ...string) *proc {
	return &proc{name: name, path: path, args: args, env: env, log: log}
}

// start runs the process; it dies with the harness (Pdeathsig), so that
// no child outlives a crashed run.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.name)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s start %s\n", time.Now().UTC().Format(time.RFC3339Nano), p.name)
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.cmd, p.exited, p.stopped = cmd, exited, false
	return nil
}

// running reports whether the process has been started and not reaped.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// exitedEarly reports a process that ended without being told to.
func (p *proc) exitedEarly() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// signal sends sig and, for SIGKILL and SIGTERM, waits for the exit (up
// to wait, then SIGKILL).
func (p *proc) signal(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return errors.New(p.name + ": not running")
	}
	if sig == syscall.SIGTERM && p.isStopped() {
		cmd.Process.Signal(syscall.SIGCONT)
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.setStopped(true)
		return nil
	case syscall.SIGCONT:
		p.setStopped(false)
		return nil
	}
	select {
	case <-exited:
	case <-time.After(wait):
		cmd.Process.Kill()
		<-exited
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return nil
}

func (p *proc) kill() error { return p.signal(syscall.SIGKILL, 10*time.Second) }
func (p *proc) term() error { return p.signal(syscall.SIGTERM, 20*time.Second) }

func (p *proc) isStopped() bool   { p.mu.Lock(); defer p.mu.Unlock(); return p.stopped }
func (p *proc) setStopped(b bool) { p.mu.Lock(); p.stopped = b; p.mu.Unlock() }
