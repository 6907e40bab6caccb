// Package chaos is the harness behind `make chaos`: it runs a qpki
// deployment of real processes on loopback (a three-node NATS JetStream
// cluster, two `qpki serve --store jetstream` front-ends behind a load
// balancer, two `qpki worker` processes whose CA key is on the PKCS#11
// test token, each through its own token daemon over a copy of the same
// token), drives a mixed load through it (ACME orders, EST enrollments,
// batches, revocations, CRLs) and meanwhile injects faults at random,
// seeded intervals: kill -9 of a front-end, a worker or a NATS node,
// SIGSTOP of a worker beyond AckWait, a token daemon restarted under a
// signature, a full file system under a front-end.
//
// At the end it checks what a relying party and an auditor would: every
// request got exactly one answer, every success exactly one certificate,
// no serial twice, no job with two certificates, the audit chain intact
// with every certificate accounted for, and issuance back within seconds
// of each fault.
package chaos

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Config is one run.
type Config struct {
	Duration  time.Duration // of the load and the faults
	Seed      uint64
	BinDir    string // qpki, qpki-testtokend, libqpki-testtoken.so (make build testtoken)
	Self      string // this program, which also runs the NATS nodes
	WorkDir   string // parent of the run's directory
	Keep      bool   // keep the run's directory even when it passes
	TmpfsSize int64  // bytes of the file system under the first front-end
	AckWait   time.Duration
	Out       io.Writer
}

// Run runs the whole thing and returns an error when a check fails.
func Run(ctx context.Context, cfg Config) (err error) {
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.TmpfsSize == 0 {
		cfg.TmpfsSize = 32 << 20
	}
	dir, err := os.MkdirTemp(cfg.WorkDir, "qpki-chaos-")
	if err != nil {
		return err
	}
	c := &cluster{cfg: cfg, dir: dir, qpki: filepath.Join(cfg.BinDir, "qpki"), tokend: filepath.Join(cfg.BinDir, "qpki-testtokend"),
		lib: filepath.Join(cfg.BinDir, "libqpki-testtoken.so")}
	for _, p := range []string{c.qpki, c.tokend, c.lib} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%v (run `make build testtoken` first)", err)
		}
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = c.detectAckWait()
		c.cfg.AckWait = cfg.AckWait
	}
	c.logf("chaos run: seed %d, %s of load and faults, AckWait %s, in %s", cfg.Seed, cfg.Duration, cfg.AckWait, dir)
	defer func() {
		c.shutdown()
		if err == nil && !cfg.Keep {
			os.RemoveAll(dir)
		} else {
			c.logf("the run's directory (logs in logs/) stays: %s", dir)
		}
	}()
	self := cfg.Self
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	if err := c.setup(ctx); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := c.start(ctx, self); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	issuer, err := c.issuingCert()
	if err != nil {
		return err
	}
	led := newLedger()
	h, err := startHTTP01(c.http01)
	if err != nil {
		return err
	}
	defer h.srv.Close()

	c.logf("deployment up; load and faults for %s", cfg.Duration)
	loadEnd := time.Now().Add(cfg.Duration)
	in := &injector{c: c, led: led, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), ackWait: cfg.AckWait}
	var wg sync.WaitGroup
	if err := c.startLoad(ctx, &wg, led, h, issuer, loadEnd); err != nil {
		return err
	}
	in.run(ctx, loadEnd)
	c.logf("faults done (%d); waiting for the load to end", len(in.faults))
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := c.waitHealthy(ctx, 90*time.Second); err != nil {
		led.problem("not healthy at the end: %v", err)
	}
	// A last CRL lists every revocation.
	c.crl(ctx, led, 1, issuer, 60*time.Second)
	au := c.auditCheck(ctx, led)
	rep := report(led, in.faults, au)
	for i := range c.feDir {
		// The CLI falls back to working on the CA dir in process when the
		// local socket does not answer: on a clustered CA that is a
		// second, local store beside the shared one.
		if _, err := os.Stat(filepath.Join(c.caDir(i), "ca.db")); err == nil {
			rep.warnings = append(rep.warnings, fmt.Sprintf("serve%d's CA dir has a ca.db: a CLI command ran in process on a clustered CA while its serve was down", i+1))
		}
	}
	rep.print(cfg.Out, cfg)
	if len(rep.failures) > 0 {
		return fmt.Errorf("chaos run failed (seed %d): %d check(s) failed", cfg.Seed, len(rep.failures))
	}
	return nil
}

// detectAckWait reads serve's --ack-wait default when it has the flag;
// without it, AckWait is the queue's old 30 s.
func (c *cluster) detectAckWait() time.Duration {
	out, _ := exec.Command(c.qpki, "worker", "--help").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, "--ack-wait") {
			continue
		}
		if i := strings.Index(line, "(default "); i >= 0 {
			if d, err := time.ParseDuration(strings.TrimSuffix(strings.Fields(line[i+len("(default "):])[0], ")")); err == nil {
				return d
			}
		}
		return 5 * time.Second
	}
	return 30 * time.Second
}

func (c *cluster) issuingCert() (*x509.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(c.caDir(1), "ca.crt"))
	if err != nil {
		return nil, err
	}
	return parseCertPEM(data)
}

// startLoad starts the load clients; each starts requests until loadEnd
// and gives the last one time to finish.
func (c *cluster) startLoad(ctx context.Context, wg *sync.WaitGroup, led *ledger, h *http01, issuer *x509.Certificate, loadEnd time.Time) error {
	const reqLimit = 90 * time.Second
	var accts []*acmeClient
	for range 3 {
		a, err := newACMEClient(ctx, c, h, led)
		if err != nil {
			return err
		}
		accts = append(accts, a)
	}
	run := func(fn func(n int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(loadEnd) && ctx.Err() == nil; n++ {
				fn(n)
			}
		}()
	}
	for i, a := range accts {
		run(func(n int) {
			cert, err := a.order(ctx, fmt.Sprintf("o%d.a%d.acme.chaos.test", n, i), reqLimit)
			if err == nil && n%4 == 3 {
				a.revoke(ctx, cert, reqLimit)
			}
		})
	}
	for i := range 2 {
		e := newESTClient(c, led)
		run(func(n int) { e.enroll(ctx, fmt.Sprintf("d%d.c%d.est.chaos.test", n, i), reqLimit) })
	}
	run(func(n int) {
		c.batch(ctx, led, n%2, fmt.Sprintf("b%d", n), 20, reqLimit)
		time.Sleep(2 * time.Second)
	})
	run(func(n int) {
		time.Sleep(5 * time.Second)
		if time.Now().Before(loadEnd) {
			c.crl(ctx, led, n%2, issuer, reqLimit)
		}
	})
	return nil
}
