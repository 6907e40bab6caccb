package chaos

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	loopback = "127.0.0.1"
	caName   = "issuing" // the issuing CA's directory name, which names it in the cluster
	tokenPIN = "chaos-user-pin-5d1f"
	soPIN    = "chaos-so-pin-93ac"
	pinEnv   = "QPKI_CHAOS_TOKEN_PIN"
	tokenEnv = "QPKI_TESTTOKEN_SOCKET"
	keyLabel = "chaos-issuing"
	estUser  = "chaos-device"
	estPass  = "chaos-est-pass-61b2"
)

// cluster is everything the run starts: three NATS nodes, two token
// daemons, two workers, two front-ends and the balancer before them.
type cluster struct {
	cfg     Config
	dir     string
	qpki    string
	tokend  string
	lib     string
	natsURL string

	nats    []*proc
	tokens  []*proc
	workers []*proc
	fronts  []*proc
	feAddr  []string
	feDir   []string // each front-end's own tree: ca/ (the copy of the CA dirs) and data/
	lb      *balancer
	roots   *x509.CertPool
	http01  int // the port the front-ends send http-01 validations to
	tmpfs   string
}

// freePort returns a loopback port below the ephemeral range that was
// free a moment ago (a port from the ephemeral range may be taken by an
// outgoing connection before the program that is given it listens).
func freePort() (int, error) {
	for range 1000 {
		p := 20000 + rand.IntN(12768)
		l, err := net.Listen("tcp", loopback+":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("no free loopback port")
}

func (c *cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.cfg.Out, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// run runs a qpki command to its end and returns its output.
func (c *cluster) run(ctx context.Context, env []string, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.qpki, args...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("qpki %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// runStdout is run keeping standard output apart (a CRL, an export).
func (c *cluster) runStdout(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.qpki, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("qpki %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func (c *cluster) tokenEnv(i int) []string {
	return []string{tokenEnv + "=" + filepath.Join(c.dir, fmt.Sprintf("token%d", i+1), "token.sock"), pinEnv + "=" + tokenPIN}
}

// setup makes the CAs (a root with a file key, the issuing CA whose key
// is made on the test token), copies the token for the second daemon and
// the CA dirs for each front-end and worker, and mounts the tmpfs under
// the first front-end.
func (c *cluster) setup(ctx context.Context) error {
	for _, d := range []string{"logs", "token1", "src"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o700); err != nil {
			return err
		}
	}
	hsm := fmt.Sprintf("type: pkcs11\npkcs11:\n  lib: %s\n  token: %q\n  pin_env: %s\n", c.lib, "chaos", pinEnv)
	hsmPath := filepath.Join(c.dir, "hsm.yaml")
	if err := os.WriteFile(hsmPath, []byte(hsm), 0o600); err != nil {
		return err
	}
	c.tokens = make([]*proc, 2)
	for i := range c.tokens {
		d := filepath.Join(c.dir, fmt.Sprintf("token%d", i+1))
		c.tokens[i] = newProc(fmt.Sprintf("token%d", i+1), filepath.Join(c.dir, "logs", fmt.Sprintf("token%d.log", i+1)), c.tokend,
			[]string{"QPKI_TESTTOKEN_SO_PIN=" + soPIN, "QPKI_TESTTOKEN_PIN=" + tokenPIN},
			"--dir", d, "--socket", filepath.Join(d, "token.sock"), "--init-token", "chaos", "--kdf-iterations", "20000")
	}
	if err := c.startToken(0); err != nil {
		return err
	}
	src := filepath.Join(c.dir, "src")
	if _, err := c.run(ctx, nil, "", "ca", "init", "--profile", "ec/root-ca", "--var", "cn=qpki Chaos Root", "--ca-dir", filepath.Join(src, "root")); err != nil {
		return err
	}
	if _, err := c.run(ctx, c.tokenEnv(0), "", "ca", "init", "--profile", "ec/issuing-ca", "--parent", filepath.Join(src, "root"),
		"--var", "cn=qpki Chaos Issuing", "--ca-dir", filepath.Join(src, caName), "--hsm-config", hsmPath, "--key-label", keyLabel); err != nil {
		return err
	}
	// The root's key stays here: nothing that runs needs it.
	if err := os.Rename(filepath.Join(src, "root"), filepath.Join(c.dir, "root")); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(src, "root"), 0o700); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(c.dir, "root", "ca.crt"), filepath.Join(src, "root", "ca.crt")); err != nil {
		return err
	}
	if err := c.tokens[0].term(); err != nil {
		return err
	}
	// An HSM HA group: the second daemon holds a copy of the same token.
	if err := copyTree(filepath.Join(c.dir, "token1"), filepath.Join(c.dir, "token2")); err != nil {
		return err
	}
	pem, err := os.ReadFile(filepath.Join(c.dir, "root", "ca.crt"))
	if err != nil {
		return err
	}
	c.roots = x509.NewCertPool()
	if !c.roots.AppendCertsFromPEM(pem) {
		return errors.New("the root certificate does not parse")
	}

	// The first front-end's tree lives on a small tmpfs, to be filled.
	c.feDir = []string{filepath.Join(c.dir, "fe1"), filepath.Join(c.dir, "fe2")}
	if err := os.MkdirAll(c.feDir[0], 0o700); err != nil {
		return err
	}
	if err := mountTmpfs(c.feDir[0], c.cfg.TmpfsSize); err != nil {
		return err
	}
	c.tmpfs = c.feDir[0]
	for _, d := range append(c.feDir, filepath.Join(c.dir, "w1"), filepath.Join(c.dir, "w2")) {
		if err := copyTree(src, filepath.Join(d, "ca")); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o700); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) startToken(i int) error {
	if err := c.tokens[i].start(); err != nil {
		return err
	}
	sock := filepath.Join(c.dir, fmt.Sprintf("token%d", i+1), "token.sock")
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return nil
		}
		if c.tokens[i].exitedEarly() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("token daemon %d did not come up (see %s)", i+1, c.tokens[i].log)
}

// startNATS starts the three nodes and waits until JetStream answers.
func (c *cluster) startNATS(ctx context.Context, self string) error {
	const n = 3
	ports, routes := make([]int, n), make([]int, n)
	for i := range n {
		var err error
		if ports[i], err = freePort(); err != nil {
			return err
		}
		if routes[i], err = freePort(); err != nil {
			return err
		}
	}
	var urls []string
	for i := range n {
		var others []string
		for j := range n {
			if j != i {
				others = append(others, strconv.Itoa(routes[j]))
			}
		}
		name := fmt.Sprintf("nats%d", i+1)
		c.nats = append(c.nats, newProc(name, filepath.Join(c.dir, "logs", name+".log"), self, nil, NATSNodeCommand,
			"-name", name, "-port", strconv.Itoa(ports[i]), "-cluster-port", strconv.Itoa(routes[i]),
			"-routes", strings.Join(others, ","), "-store", filepath.Join(c.dir, name)))
		urls = append(urls, fmt.Sprintf("nats://%s:%d", loopback, ports[i]))
	}
	c.natsURL = strings.Join(urls, ",")
	for _, p := range c.nats {
		if err := p.start(); err != nil {
			return err
		}
	}
	return c.waitJetStream(ctx, 60*time.Second)
}

// waitJetStream waits until the cluster has a JetStream meta leader.
func (c *cluster) waitJetStream(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		nc, err := nats.Connect(c.natsURL, nats.Timeout(2*time.Second))
		if err == nil {
			js, _ := jetstream.New(nc)
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = js.AccountInfo(actx)
			cancel()
			nc.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the NATS cluster did not get a JetStream leader: %v", last)
}

func (c *cluster) newFrontends() error {
	for range 2 {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("%s:%d", loopback, port)
		c.feAddr = append(c.feAddr, addr)
	}
	var err error
	if c.lb, err = startBalancer(c.feAddr); err != nil {
		return err
	}
	if c.http01, err = freePort(); err != nil {
		return err
	}
	// The devices' names: the unlabelled EST endpoints grant the run's
	// EST names to every authenticated user.
	estConfig := filepath.Join(c.dir, "est.yaml")
	if err := os.WriteFile(estConfig, []byte("default:\n  names: {dns: [\".est.chaos.test\"]}\n"), 0o600); err != nil {
		return err
	}
	for i := range 2 {
		name := fmt.Sprintf("serve%d", i+1)
		ops, err := freePort()
		if err != nil {
			return err
		}
		c.fronts = append(c.fronts, newProc(name, filepath.Join(c.dir, "logs", name+".log"), c.qpki, nil, "serve",
			"--store", "jetstream", "--nats-url", c.natsURL, "--workers", "0",
			"--ca-dir", filepath.Join(c.feDir[i], "ca", caName), "--data-dir", filepath.Join(c.feDir[i], "data"),
			"--listen", c.feAddr[i], "--ops-listen", fmt.Sprintf("%s:%d", loopback, ops),
			"--acme-external-url", "https://"+c.lb.addr(), "--acme-resolve-to", loopback, "--acme-validation-allow", loopback+"/32",
			"--acme-http-port", strconv.Itoa(c.http01), "--acme-rate-ip", "0", "--acme-rate-orders", "0",
			"--acme-finalize-wait", "2s", "--acme-challenge-wait", "2s", "--est-config", estConfig,
			"--est-rate-ip", "0", "--est-rate-principal", "0"))
	}
	return nil
}

func (c *cluster) newWorkers() {
	for i := range 2 {
		name := fmt.Sprintf("worker%d", i+1)
		c.workers = append(c.workers, newProc(name, filepath.Join(c.dir, "logs", name+".log"), c.qpki, c.tokenEnv(i), "worker",
			"--nats-url", c.natsURL, "--ca-dir", filepath.Join(c.dir, fmt.Sprintf("w%d", i+1), "ca", caName),
			"--workers", "1"))
	}
}

// httpClient trusts the run's root only.
func (c *cluster) httpClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: c.roots}, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}}
}

// waitHTTPS waits until front-end i answers /healthz over TLS.
func (c *cluster) waitHTTPS(ctx context.Context, i int, limit time.Duration) error {
	hc := c.httpClient(2 * time.Second)
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := hc.Get("https://" + c.feAddr[i] + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if c.fronts[i].exitedEarly() {
			return fmt.Errorf("%s exited (see %s)", c.fronts[i].name, c.fronts[i].log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: HTTPS not up after %s (see %s)", c.fronts[i].name, limit, c.fronts[i].log)
}

// start brings everything up in order: NATS, the first front-end (it
// declares the streams and buckets), the token daemons and workers, the
// second front-end; then the EST user.
func (c *cluster) start(ctx context.Context, self string) error {
	c.logf("starting 3 NATS nodes")
	if err := c.startNATS(ctx, self); err != nil {
		return err
	}
	if err := c.newFrontends(); err != nil {
		return err
	}
	c.newWorkers()
	c.logf("starting serve1, token daemons, workers, serve2")
	if err := c.fronts[0].start(); err != nil {
		return err
	}
	for i := range c.tokens {
		if err := c.startToken(i); err != nil {
			return err
		}
	}
	for _, w := range c.workers {
		if err := w.start(); err != nil {
			return err
		}
	}
	if err := c.waitHTTPS(ctx, 0, 90*time.Second); err != nil {
		return err
	}
	if err := c.fronts[1].start(); err != nil {
		return err
	}
	if err := c.waitHTTPS(ctx, 1, 90*time.Second); err != nil {
		return err
	}
	_, err := c.run(ctx, nil, estPass+"\n", "est", "user", "add", estUser, "--store", "jetstream", "--nats-url", c.natsURL, "--ca", caName)
	return err
}

// shutdown stops every process, front-ends first, and removes the tmpfs.
func (c *cluster) shutdown() {
	if c.lb != nil {
		c.lb.close()
	}
	for _, group := range [][]*proc{c.fronts, c.workers, c.tokens, c.nats} {
		for _, p := range group {
			if p.running() {
				p.term()
			}
		}
	}
	if c.tmpfs != "" {
		if err := unmountTmpfs(c.tmpfs); err != nil {
			c.logf("unmounting %s: %v", c.tmpfs, err)
		}
		c.tmpfs = ""
	}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	st, err := os.Stat(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, st.Mode().Perm())
}

// copyTree copies a directory of regular files (sockets are skipped).
func copyTree(from, to string) error {
	return filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case info.IsDir():
			return os.MkdirAll(dst, info.Mode().Perm()|0o700)
		case info.Mode().IsRegular():
			return copyFile(p, dst)
		}
		return nil
	})
}
