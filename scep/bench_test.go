package scep

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/server"
)

// BenchmarkPKIOperation measures PKCSReq enrollments per second with 32
// concurrent clients (RSA-2048 keys, AES-256-CBC, SHA-256, a static
// challenge), and their p50 and p99 latency, each a full round trip: a
// certificate signed through the queue, encrypted back and checked.
//
// With QPKI_SCEP_BENCH_URL (and QPKI_SCEP_BENCH_CHALLENGE) the same client
// drives another SCEP server instead, e.g. step-ca's SCEP provisioner
// (scripts/scep-bench.sh).
func BenchmarkPKIOperation(b *testing.B) {
	const clients = 32
	target, challenge := os.Getenv("QPKI_SCEP_BENCH_URL"), os.Getenv("QPKI_SCEP_BENCH_CHALLENGE")
	var ra *x509.Certificate
	if target == "" {
		b.Setenv("SCEP_BENCH_PW", "bench-static-secret")
		e := newEnvWith(b, func(o *Options) {
			o.Default = &Label{Challenge: ChallengeConfig{Kind: ChallengeStatic, PasswordEnv: "SCEP_BENCH_PW"}, Names: &enroll.NamePolicy{DNS: []string{".bench.example.com"}}}
		}, nil, func(c *server.Config) { c.Workers = 2; c.PublishCRL = false })
		target, challenge, ra = e.base, "bench-static-secret", e.ra
	} else {
		ra = fetchRA(b, target)
	}
	keys := make([]*rsa.PrivateKey, clients)
	cs := make([]*client, clients)
	for i := range keys {
		keys[i], _ = rsa.GenerateKey(rand.Reader, 2048)
		cs[i] = &client{t: b, key: keys[i], ra: ra, url: target, cipher: cms.OIDAES256CBC}
		cs[i].cert = selfSigned(b, keys[i])
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func(c *client) {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				name := fmt.Sprintf("d%d.bench.example.com", n)
				msg := c.message(PKCSReq, fmt.Sprintf("bench-%s-%d", run, n), c.csr(name, challenge, name))
				t0 := time.Now()
				ok := c.enrollOnce(msg)
				d := time.Since(t0)
				if !ok {
					failed.Add(1)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}(cs[i])
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d enrollments failed", f, b.N)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "enroll/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// enrollOnce posts a PKCSReq and reports whether it got a certificate,
// polling by resending while PENDING.
func (c *client) enrollOnce(msg []byte) bool {
	for range 100 {
		resp, err := http.Post(c.url+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(msg))
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r, err := c.parseRep(&http.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body))})
		if err != nil {
			c.t.Logf("CertRep: %v", err)
			return false
		}
		switch r.status {
		case StatusSuccess:
			return len(r.certs) > 0
		case StatusPending:
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c.t.Logf("FAILURE %v: %s", r.fail, r.reason)
		return false
	}
	return false
}

// fetchRA picks the RSA certificate that is not a CA from GetCACert (or
// the only one).
func fetchRA(b *testing.B, base string) *x509.Certificate {
	resp, err := http.Get(base + "?operation=GetCACert")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	certs, err := cms.ParseCertsOnly(data)
	if err != nil {
		if c, err2 := x509.ParseCertificate(data); err2 == nil {
			return c
		}
		b.Fatal(err)
	}
	for _, c := range certs {
		if c.PublicKeyAlgorithm == x509.RSA && !c.IsCA {
			return c
		}
	}
	for _, c := range certs {
		if c.PublicKeyAlgorithm == x509.RSA {
			return c
		}
	}
	b.Fatal("no RSA certificate in GetCACert")
	return nil
}
