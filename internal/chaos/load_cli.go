package chaos

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qpki/qpki/server"
)

// The CLI's requests go through a front-end's local socket. The harness
// checks that the socket answers first: without a running serve the CLI
// would work on the CA dir in process (see the report's findings).

func (c *cluster) caDir(fe int) string { return filepath.Join(c.feDir[fe], "ca", caName) }

// serving reports whether front-end fe's local API answers.
func (c *cluster) serving(fe int) bool {
	cl, err := server.Dial(c.caDir(fe))
	if err != nil {
		return false
	}
	cl.Close()
	return true
}

// batchFile writes a JSONL batch of n requests named prefix-i.
func (c *cluster) batchFile(prefix string, n int) (string, []string, error) {
	var b strings.Builder
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		name := ids[i] + ".batch.chaos.test"
		csr, err := newCSR(name)
		if err != nil {
			return "", nil, err
		}
		line, _ := json.Marshal(map[string]any{"id": ids[i], "profile": "ec/tls-server",
			"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), "vars": map[string]string{"dns_names": name}})
		b.Write(line)
		b.WriteByte('\n')
	}
	dir := filepath.Join(c.dir, "batches")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, prefix+".jsonl")
	return path, ids, os.WriteFile(path, []byte(b.String()), 0o600)
}

// batch submits a new batch of n through front-end fe; see submitBatch.
func (c *cluster) batch(ctx context.Context, led *ledger, fe int, prefix string, n int, limit time.Duration) error {
	b, err := c.newBatch(led, fe, prefix, n)
	if err != nil {
		return err
	}
	return c.submitBatch(ctx, led, b, limit)
}

// batchRun is a batch file, its lines' requests and its output dir.
type batchRun struct {
	fe     int
	prefix string
	path   string
	out    string
	reqs   []*request
	runs   int
}

func (c *cluster) newBatch(led *ledger, fe int, prefix string, n int) (*batchRun, error) {
	path, ids, err := c.batchFile(prefix, n)
	if err != nil {
		return nil, err
	}
	b := &batchRun{fe: fe, prefix: prefix, path: path, out: filepath.Join(c.feDir[fe], "out", prefix)}
	for _, id := range ids {
		b.reqs = append(b.reqs, led.begin(kindBatch, "batch:"+id))
	}
	return b, nil
}

// submitOnce runs `qpki batch submit` once and collects what it wrote.
func (c *cluster) submitOnce(ctx context.Context, led *ledger, b *batchRun) (done bool, out string, err error) {
	if b.runs++; b.runs > 1 {
		for _, r := range b.reqs {
			if len(r.certs) == 0 {
				led.retry(r)
			}
		}
	}
	out, err = c.run(ctx, nil, "", "batch", "submit", b.path, "--ca-dir", c.caDir(b.fe), "--out", b.out, "--concurrency", "32")
	return c.collectBatch(led, b.reqs, b.out) && err == nil, out, err
}

// submitBatch submits b again after each failure (a batch is resumable:
// the line id is the idempotency key) until every line has its
// certificate or the time is up.
func (c *cluster) submitBatch(ctx context.Context, led *ledger, b *batchRun, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !c.serving(b.fe) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		done, _, err := c.submitOnce(ctx, led, b)
		last = err
		if done {
			for _, r := range b.reqs {
				led.finish(r, nil, false)
			}
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, r := range b.reqs {
		if len(r.certs) == 0 {
			led.finish(r, fmt.Errorf("%w: %v", errNoAnswer, last), true)
		} else {
			led.finish(r, nil, false)
		}
	}
	return fmt.Errorf("batch %s: %w: %v", b.prefix, errNoAnswer, last)
}

// collectBatch reads the certificates written so far; it reports
// whether every line has one.
func (c *cluster) collectBatch(led *ledger, reqs []*request, out string) bool {
	all := true
	for _, r := range reqs {
		id := strings.TrimPrefix(r.id, "batch:")
		data, err := os.ReadFile(filepath.Join(out, id+".crt"))
		if err != nil {
			all = false
			continue
		}
		cert, err := parseCertPEM(data)
		if err != nil {
			led.problem("batch %s: %s.crt is corrupt: %v", out, id, err)
			all = false
			continue
		}
		led.deliver(r, cert)
	}
	return all
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// crl has front-end fe sign a CRL through the queue and checks that it
// verifies under the CA and lists every serial revoked before it was
// asked for.
func (c *cluster) crl(ctx context.Context, led *ledger, fe int, issuer *x509.Certificate, limit time.Duration) error {
	led.mu.Lock()
	want := make([]string, 0, len(led.revoked))
	for s := range led.revoked {
		want = append(want, s)
	}
	led.mu.Unlock()
	r := led.begin(kindCRL, fmt.Sprintf("crl:%d:%d", fe, time.Now().UnixNano()))
	deadline := time.Now().Add(limit)
	var last error
	tries := 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !c.serving(fe) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if tries++; tries > 1 {
			led.retry(r)
		}
		out, err := c.runStdout(ctx, "crl", "gen", "--ca-dir", c.caDir(fe))
		if err != nil {
			last = err
			time.Sleep(500 * time.Millisecond)
			continue
		}
		err = checkCRL(out, issuer, want)
		led.finish(r, err, false)
		if err != nil {
			led.problem("CRL from serve%d: %v", fe+1, err)
		}
		return err
	}
	err := fmt.Errorf("%w: %v", errNoAnswer, last)
	led.finish(r, err, true)
	return err
}

func checkCRLParses(data []byte) error {
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	_, err := x509.ParseRevocationList(data)
	return err
}

func checkCRL(data []byte, issuer *x509.Certificate, want []string) error {
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return fmt.Errorf("the CRL does not parse: %v", err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("the CRL's signature: %v", err)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[fmt.Sprintf("%x", e.SerialNumber)] = true
	}
	for _, s := range want {
		if !listed[s] {
			return fmt.Errorf("serial %s was revoked before the CRL was asked for, and the CRL does not list it", s)
		}
	}
	return nil
}
