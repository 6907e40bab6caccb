// Command qpki-estload measures EST simpleenroll throughput: N keep-alive
// TLS clients, each on its own connection, post pre-made CSRs as fast as
// the server answers, and it prints enrollments per second with latency
// percentiles.
//
// Without -url it starts a server in-process on a fresh CA whose key is
// ecdsa-p256 (a root and an issuing CA, like `qpki ca init`), with the
// EST front-end, the embedded queue and -workers signer sessions; the
// load generator shares the machine with it.
//
//	qpki-estload -clients 32 -n 20000 -auth cert
//	qpki-estload -clients 32 -n 5000 -auth basic -auth-cache-ttl 5m
//	qpki-estload -url https://ca:8443/.well-known/est -root root.pem -cert dev.pem -key dev.key
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	qenroll "github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/est"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/server"
)

type config struct {
	clients  int
	n        int
	auth     string
	workers  int
	cacheTTL time.Duration
	url      string
	root     string
	cert     string
	key      string
	user     string
	pass     string
	verbose  bool
	cpuProf  string
	log      io.Writer // progress lines
}

func main() {
	var c config
	flag.IntVar(&c.clients, "clients", 32, "concurrent keep-alive TLS clients")
	flag.IntVar(&c.n, "n", 10000, "enrollments")
	flag.StringVar(&c.auth, "auth", "cert", "cert (TLS client certificates) or basic (HTTP Basic)")
	flag.IntVar(&c.workers, "workers", 2, "signer sessions of the in-process server")
	flag.DurationVar(&c.cacheTTL, "auth-cache-ttl", est.DefaultAuthCacheTTL, "HTTP Basic credential cache of the in-process server (0: off)")
	flag.StringVar(&c.url, "url", "", "EST base URL of a running server (default: start one in-process)")
	flag.StringVar(&c.root, "root", "", "with -url: root CA (PEM) of the server's TLS certificate")
	flag.StringVar(&c.cert, "cert", "", "with -url: client certificate (PEM) for -auth cert")
	flag.StringVar(&c.key, "key", "", "with -url: client key (PEM) for -auth cert")
	flag.StringVar(&c.user, "user", "", "with -url: HTTP Basic user for -auth basic")
	flag.StringVar(&c.pass, "pass", "", "with -url: HTTP Basic password (better: QPKI_EST_PASSWORD)")
	flag.BoolVar(&c.verbose, "v", false, "print the first errors")
	flag.StringVar(&c.cpuProf, "cpuprofile", "", "write a CPU profile of the timed run (server and clients) to FILE")
	flag.Parse()
	c.log = os.Stdout
	fig, err := run(c)
	if fig != nil {
		fmt.Println(fig)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "qpki-estload:", err)
		os.Exit(1)
	}
}

// figures are one run's results.
type figures struct {
	n                  int
	elapsed            time.Duration
	p50, p90, p99, max time.Duration
}

func (f *figures) rate() float64 { return float64(f.n) / f.elapsed.Seconds() }

func (f *figures) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("%d enrollments in %.2fs: %.0f/s; latency p50 %v, p90 %v, p99 %v, max %v (GOMAXPROCS %d)",
		f.n, f.elapsed.Seconds(), f.rate(), r(f.p50), r(f.p90), r(f.p99), r(f.max), runtime.GOMAXPROCS(0))
}

// target is where and as whom the clients enroll.
type target struct {
	url   string
	roots *x509.CertPool
	certs []tls.Certificate // one per client, or one for all
	user  string
	pass  string
}

func run(c config) (*figures, error) {
	if c.auth != "cert" && c.auth != "basic" {
		return nil, fmt.Errorf("-auth %q: want cert or basic", c.auth)
	}
	if c.clients < 1 || c.n < c.clients {
		return nil, errors.New("want -clients ≥ 1 and -n ≥ -clients")
	}
	if c.log == nil {
		c.log = io.Discard
	}
	var t *target
	var err error
	if c.url == "" {
		var stop func()
		t, stop, err = startServer(c)
		if err != nil {
			return nil, err
		}
		defer stop()
	} else if t, err = external(c); err != nil {
		return nil, err
	}
	fmt.Fprintf(c.log, "making %d CSRs...\n", c.n)
	csrs := makeCSRs(c.n)
	clients := make([]*http.Client, c.clients)
	for i := range clients {
		cfg := &tls.Config{RootCAs: t.roots, ClientSessionCache: tls.NewLRUClientSessionCache(1)}
		if c.auth == "cert" {
			cfg.Certificates = []tls.Certificate{t.certs[i%len(t.certs)]}
		}
		clients[i] = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: cfg,
			MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: false}}
	}
	// Warm up: one request per client opens its connection.
	warm := makeCSRs(c.clients)
	if err := load(clients, warm, t, nil); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	lat := make([]time.Duration, len(csrs))
	fmt.Fprintf(c.log, "enrolling: %d requests, %d clients, auth %s\n", c.n, c.clients, c.auth)
	if c.cpuProf != "" {
		f, err := os.Create(c.cpuProf)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	err = load(clients, csrs, t, lat)
	el := time.Since(start)
	if err != nil && !c.verbose {
		return nil, err
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return &figures{n: len(csrs), elapsed: el, p50: pct(0.50), p90: pct(0.90), p99: pct(0.99), max: lat[len(lat)-1]}, err
}

// load posts every CSR once, spread over the clients; a 202 is retried
// after a short pause, as a device would after Retry-After.
func load(clients []*http.Client, csrs [][]byte, t *target, lat []time.Duration) error {
	var next atomic.Int64
	var firstErr error
	var errs atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(csrs) {
					return
				}
				t0 := time.Now()
				err := enroll(cl, t, csrs[i])
				if lat != nil {
					lat[i] = time.Since(t0)
				}
				if err != nil {
					errs.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("%d failed requests, the first: %w", errs.Load(), firstErr)
	}
	return nil
}

func enroll(cl *http.Client, t *target, csr []byte) error {
	for {
		req, _ := http.NewRequest("POST", t.url+"/simpleenroll", bytes.NewReader(csr))
		req.Header.Set("Content-Type", "application/pkcs10")
		if t.user != "" {
			req.SetBasicAuth(t.user, t.pass)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			der, err := base64.StdEncoding.DecodeString(string(bytes.ReplaceAll(body, []byte("\n"), nil)))
			if err != nil {
				return err
			}
			_, err = cms.ParseCertsOnly(der)
			return err
		case http.StatusAccepted:
			time.Sleep(100 * time.Millisecond)
		default:
			return fmt.Errorf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		}
	}
}

// makeCSRs makes n distinct P-256 CSRs, base64 as EST sends them.
func makeCSRs(n int) [][]byte {
	out := make([][]byte, n)
	var wg sync.WaitGroup
	per := (n + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
	for lo := 0; lo < n; lo += per {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				name := fmt.Sprintf("d%d-%x.example.com", i, randBytes(4))
				der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
					Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
				if err != nil {
					panic(err)
				}
				out[i] = []byte(base64.StdEncoding.EncodeToString(der))
			}
		}(lo, min(lo+per, n))
	}
	wg.Wait()
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// startServer makes a P-256 CA, a device CA with one client certificate
// per client, an HTTP Basic user, and starts qpki's server with EST.
func startServer(c config) (*target, func(), error) {
	dir, err := os.MkdirTemp("", "qpki-estload-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	fail := func(err error) (*target, func(), error) { cleanup(); return nil, nil, err }
	raw, err := profile.Builtin("ec/issuing-ca")
	if err != nil {
		return fail(err)
	}
	raw = regexp.MustCompile(`(?m)^algorithm: .*$`).ReplaceAll(raw, []byte("algorithm: ecdsa-p256"))
	raw = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(raw, []byte("name: estload/issuing-ca-p256"))
	prof := filepath.Join(dir, "issuing-p256.yaml")
	if err := os.WriteFile(prof, raw, 0o644); err != nil {
		return fail(err)
	}
	root, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "root"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Load Root"}})
	if err != nil {
		return fail(err)
	}
	rootCert, _ := root.Certificate("")
	if _, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "issuing"), Profile: prof, Parent: root, Vars: map[string]any{"cn": "Load Issuing CA"}}); err != nil {
		root.Close()
		return fail(err)
	}
	root.Close()
	devCA, devKey, err := selfSigned("Load Device CA")
	if err != nil {
		return fail(err)
	}
	t := &target{roots: x509.NewCertPool()}
	t.roots.AddCert(rootCert)
	for i := 0; i < c.clients; i++ {
		cert, err := clientCert(devCA, devKey, fmt.Sprintf("device-%d", i))
		if err != nil {
			return fail(err)
		}
		t.certs = append(t.certs, cert)
	}
	data := filepath.Join(dir, "data")
	if c.auth == "basic" {
		t.user, t.pass = "load", "load-password"
		if _, err := est.SetUser(data, t.user, []byte(t.pass), nil); err != nil {
			return fail(err)
		}
	}
	// The load's names are granted as an operator would: under example.com.
	fe, err := est.New(est.Options{ClientCAs: []*x509.Certificate{devCA}, DataDir: data, AuthCacheTTL: c.cacheTTL, Wait: time.Minute,
		Default: &est.Label{Names: &qenroll.NamePolicy{DNS: []string{".example.com"}}}}, nil)
	if err != nil {
		return fail(err)
	}
	srv, err := server.Start(context.Background(), server.Config{CADir: filepath.Join(dir, "issuing"), DataDir: data,
		Listen: "127.0.0.1:0", Workers: c.workers}, fe)
	if err != nil {
		return fail(err)
	}
	<-srv.HTTPSReady()
	t.url = "https://" + srv.Addr + "/.well-known/est"
	fmt.Fprintf(c.log, "in-process server %s, CA key ecdsa-p256, %d signer sessions\n", t.url, c.workers)
	return t, func() { srv.Shutdown(); cleanup() }, nil
}

func external(c config) (*target, error) {
	t := &target{url: c.url, roots: x509.NewCertPool(), user: c.user, pass: c.pass}
	if p := os.Getenv("QPKI_EST_PASSWORD"); p != "" {
		t.pass = p
	}
	if c.root != "" {
		pem, err := os.ReadFile(c.root)
		if err != nil {
			return nil, err
		}
		if !t.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificate", c.root)
		}
	}
	if c.auth == "cert" {
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, fmt.Errorf("-cert/-key: %v", err)
		}
		t.certs = []tls.Certificate{pair}
	}
	return t, nil
}

func selfSigned(cn string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func clientCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string) (tls.Certificate, error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
