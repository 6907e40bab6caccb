package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// faultKind names one kind of fault the run injects.
type faultKind string

const (
	faultKillServe    faultKind = "kill -9 serve"
	faultKillWorker   faultKind = "kill -9 worker"
	faultKillNATS     faultKind = "kill -9 NATS node"
	faultStopWorker   faultKind = "SIGSTOP worker"
	faultRestartToken faultKind = "restart token daemon"
	faultDiskFull     faultKind = "disk full"
)

var faultKinds = []faultKind{faultKillServe, faultKillWorker, faultKillNATS, faultStopWorker, faultRestartToken, faultDiskFull}

// recoveryLimit is the longest a fault may keep issuance away: the loss
// of a NATS node costs leader elections (4-9 s).
func (k faultKind) recoveryLimit() time.Duration {
	if k == faultKillNATS {
		return 20 * time.Second
	}
	return 10 * time.Second
}

// fault is one injected fault.
type fault struct {
	kind   faultKind
	target string
	at     time.Time // injected
	healed time.Time // the process restarted or continued, the space freed
	// recovery is the time from at (for a full disk: from healed) to the
	// first issuance after it; ok is false when none came.
	recovery time.Duration
	ok       bool
	// stall is how long the requests that were in flight at the fault
	// took after it, at most: what a client caught by it waited.
	stall  time.Duration
	note   string
	failed string // a check of the fault itself that failed
}

// injector injects faults one after the other at random (seeded)
// intervals, each healed before the next.
type injector struct {
	c       *cluster
	led     *ledger
	rng     *rand.Rand
	ackWait time.Duration
	faults  []*fault
}

func (in *injector) run(ctx context.Context, until time.Time) {
	var order []faultKind
	n := 0
	for {
		gap := time.Duration(1000+in.rng.IntN(2000)) * time.Millisecond
		if time.Until(until) < gap+8*time.Second {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		if len(order) == 0 {
			order = append([]faultKind(nil), faultKinds...)
			in.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		k := order[0]
		order = order[1:]
		n++
		f := in.inject(ctx, k)
		in.faults = append(in.faults, f)
		msg := fmt.Sprintf("fault %d: %s %s", n, f.kind, f.target)
		if f.note != "" {
			msg += " (" + f.note + ")"
		}
		if f.failed != "" {
			msg += " FAILED: " + f.failed
		}
		in.c.logf("%s", msg)
		if err := in.c.waitHealthy(ctx, 90*time.Second); err != nil {
			f.failed = strings.TrimSpace(f.failed + " " + err.Error())
			in.c.logf("not healthy after %s: %v", f.kind, err)
		}
	}
}

func (in *injector) pick(n int) int { return in.rng.IntN(n) }

func (in *injector) sleep(ctx context.Context, lo, hi time.Duration) {
	d := lo + time.Duration(in.rng.Int64N(int64(hi-lo)+1))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (in *injector) inject(ctx context.Context, k faultKind) *fault {
	c := in.c
	f := &fault{kind: k}
	restart := func(p *proc, start func() error) {
		if err := start(); err != nil {
			f.failed = fmt.Sprintf("restarting %s: %v", p.name, err)
		}
		f.healed = time.Now()
	}
	switch k {
	case faultKillServe:
		i := in.pick(len(c.fronts))
		p := c.fronts[i]
		f.target, f.at = p.name, time.Now()
		p.kill()
		in.sleep(ctx, time.Second, 3*time.Second)
		restart(p, p.start)
	case faultKillWorker:
		p := c.workers[in.pick(len(c.workers))]
		f.target, f.at = p.name, time.Now()
		p.kill()
		in.sleep(ctx, time.Second, 3*time.Second)
		restart(p, p.start)
	case faultKillNATS:
		i := in.pick(len(c.nats))
		p := c.nats[i]
		f.target, f.at = p.name, time.Now()
		p.kill()
		in.sleep(ctx, 2*time.Second, 4*time.Second)
		restart(p, p.start)
	case faultStopWorker:
		p := c.workers[in.pick(len(c.workers))]
		f.target, f.at = p.name, time.Now()
		p.signal(syscall.SIGSTOP, 0)
		in.sleep(ctx, in.ackWait+time.Second, in.ackWait+3*time.Second)
		p.signal(syscall.SIGCONT, 0)
		f.healed = time.Now()
		f.note = fmt.Sprintf("stopped %.1fs, AckWait %s", f.healed.Sub(f.at).Seconds(), in.ackWait)
	case faultRestartToken:
		i := in.pick(len(c.tokens))
		p := c.tokens[i]
		f.target, f.at = p.name, time.Now()
		p.kill()
		in.sleep(ctx, 0, time.Second)
		restart(p, func() error { return c.startToken(i) })
	case faultDiskFull:
		in.diskFull(ctx, f)
	}
	return f
}

// diskFull fills the tmpfs under serve1's CA dir, data dir and batch
// output: a batch through serve1 must then fail with a clear error and
// leave no corrupt file; once the space is back, the same batch must
// complete.
func (in *injector) diskFull(ctx context.Context, f *fault) {
	c := in.c
	f.target, f.at = "serve1 tmpfs", time.Now()
	if err := fill(c.tmpfs); err != nil {
		f.failed = "filling: " + err.Error()
		free(c.tmpfs)
		return
	}
	b, err := c.newBatch(in.led, 0, fmt.Sprintf("full-%d", len(in.faults)+1), 5)
	if err == nil {
		for range 20 {
			if c.serving(0) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		var msg string
		var done bool
		done, msg, err = c.submitOnce(ctx, in.led, b)
		switch {
		case err == nil || done:
			f.failed = "a batch into a full file system reported success"
		case !strings.Contains(msg, "no space left on device"):
			f.failed = "the batch failed without saying the disk is full: " + lastLine(msg)
		default:
			f.note = "batch: " + lineWith(msg, "no space left on device")
		}
	} else {
		f.failed = err.Error()
	}
	if err := free(c.tmpfs); err != nil {
		f.failed = strings.TrimSpace(f.failed + " freeing: " + err.Error())
	}
	f.healed = time.Now()
	if bad := corruptFiles(c.feDir[0]); len(bad) > 0 {
		f.failed = strings.TrimSpace(f.failed + " corrupt files: " + strings.Join(bad, ", "))
	}
	if b == nil {
		return
	}
	// Issuance through serve1 into the tmpfs resumes.
	if err := c.submitBatch(ctx, in.led, b, 60*time.Second); err != nil {
		f.failed = strings.TrimSpace(f.failed + " after freeing: " + err.Error())
		return
	}
	f.recovery, f.ok = time.Since(f.healed), true
}

// lineWith is the first line of s that contains sub, shortened.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			l = strings.TrimSpace(l)
			if len(l) > 90 {
				l = "..." + l[len(l)-87:]
			}
			return l
		}
	}
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// corruptFiles lists the files under dir that are neither what they
// say they are nor the harness's own: a certificate or CRL that does
// not parse, a temporary file left behind, an empty file that is not a
// lock.
func corruptFiles(dir string) []string {
	var bad []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || info.Mode()&os.ModeSocket != 0 {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.Base(p)
		data, _ := os.ReadFile(p)
		switch {
		case name == fillName:
		case strings.HasSuffix(name, ".crt"):
			if _, err := parseCertPEM(data); err != nil {
				bad = append(bad, rel)
			}
		case strings.HasSuffix(name, ".crl"):
			if err := checkCRLParses(data); err != nil {
				bad = append(bad, rel)
			}
		case strings.HasPrefix(name, ".") || strings.Contains(name, ".tmp"):
			bad = append(bad, rel+" (temporary file left)")
		case strings.HasSuffix(name, ".lock"):
			// A lock file (flock) holds no data: empty is what it is.
		case info.Size() == 0:
			bad = append(bad, rel+" (empty)")
		}
		return nil
	})
	return bad
}

// waitHealthy waits until every process runs and answers: JetStream has
// a leader, both front-ends serve HTTPS, both token daemons listen.
func (c *cluster) waitHealthy(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, group := range [][]*proc{c.nats, c.tokens, c.workers, c.fronts} {
		for _, p := range group {
			if !p.running() {
				return fmt.Errorf("%s is not running (see %s)", p.name, p.log)
			}
		}
	}
	if err := c.waitJetStream(ctx, time.Until(deadline)); err != nil {
		return err
	}
	for i := range c.fronts {
		if err := c.waitHTTPS(ctx, i, time.Until(deadline)); err != nil {
			return err
		}
	}
	for i := range c.tokens {
		sock := filepath.Join(c.dir, fmt.Sprintf("token%d", i+1), "token.sock")
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return fmt.Errorf("token%d: %v", i+1, err)
		}
		conn.Close()
	}
	return nil
}
