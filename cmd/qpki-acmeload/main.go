// Command qpki-acmeload drives full ACME flows against a server to
// measure it: N accounts register once, then each runs newOrder →
// http-01 → finalize → certificate download in a loop, for a new name
// every time. It answers the http-01 challenges itself and can serve DNS
// (every name is 127.0.0.1) for servers that resolve names, like pebble.
//
// It reports completed orders per second and the latency from finalize
// to the order being valid, and from newOrder to the downloaded
// certificate.
//
//	qpki-acmeload -directory https://127.0.0.1:8443/acme/directory -ca root.pem \
//	    -accounts 64 -duration 30s -http-listen 127.0.0.1:5002
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

func main() {
	var (
		dirURL     = flag.String("directory", "https://127.0.0.1:8443/acme/directory", "ACME directory URL")
		caFile     = flag.String("ca", "", "PEM file with the root that signed the server's TLS certificate")
		insecure   = flag.Bool("insecure", false, "do not check the server's TLS certificate")
		accounts   = flag.Int("accounts", 32, "concurrent accounts, each running one flow at a time")
		duration   = flag.Duration("duration", 20*time.Second, "how long to run")
		rate       = flag.Float64("rate", 0, "start at most this many orders per second (0: as fast as the server allows)")
		warmup     = flag.Duration("warmup", 2*time.Second, "flows run before measuring")
		httpListen = flag.String("http-listen", "127.0.0.1:5002", "where to answer http-01 challenges")
		dnsListen  = flag.String("dns-listen", "", "also answer DNS here: every name is 127.0.0.1 (for pebble -dnsserver)")
		suffix     = flag.String("suffix", "load.example.com", "names ordered are o<N>.a<M>.<suffix>")
		poll       = flag.Duration("poll", 10*time.Millisecond, "polling interval for processing authorizations and orders")
		label      = flag.String("label", "", "name of the server in the report")
		asJSON     = flag.Bool("json", false, "print the report as JSON")
	)
	flag.Parse()
	if err := run(config{*dirURL, *caFile, *insecure, *accounts, *duration, *rate, *warmup, *httpListen, *dnsListen, *suffix, *poll, *label, *asJSON}); err != nil {
		fmt.Fprintln(os.Stderr, "qpki-acmeload:", err)
		os.Exit(1)
	}
}

type config struct {
	dirURL, caFile        string
	insecure              bool
	accounts              int
	duration              time.Duration
	rate                  float64
	warmup                time.Duration
	httpListen, dnsListen string
	suffix                string
	poll                  time.Duration
	label                 string
	asJSON                bool
}

func run(c config) error {
	tlsCfg := &tls.Config{InsecureSkipVerify: c.insecure}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return err
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
			return errors.New("-ca holds no certificate")
		}
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tlsCfg,
		MaxIdleConns: 4 * c.accounts, MaxIdleConnsPerHost: 4 * c.accounts, IdleConnTimeout: time.Minute}}

	tokens := &sync.Map{}
	stop, err := serveHTTP01(c.httpListen, tokens)
	if err != nil {
		return err
	}
	defer stop()
	if c.dnsListen != "" {
		stop, err := serveDNS(c.dnsListen)
		if err != nil {
			return err
		}
		defer stop()
	}

	ctx := context.Background()
	dir, err := fetchDirectory(hc, c.dirURL)
	if err != nil {
		return err
	}

	// Accounts first, untimed.
	accts := make([]*account, c.accounts)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range accts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := newAccount(ctx, hc, dir)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			accts[i] = a
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}

	var starts <-chan time.Time
	if c.rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / c.rate))
		defer t.Stop()
		starts = t.C
	}
	runID := time.Now().UnixNano() % 1_000_000
	var mu sync.Mutex
	var finalize, total []time.Duration
	var done, failed atomic.Int64
	var errs []string
	measureFrom := time.Now().Add(c.warmup)
	end := measureFrom.Add(c.duration)
	for i, a := range accts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(end); n++ {
				if starts != nil {
					select {
					case <-starts:
					case <-time.After(time.Until(end)):
						return
					}
				}
				name := fmt.Sprintf("o%d.a%d.r%d.%s", n, i, runID, c.suffix)
				tm, err := a.flow(ctx, name, tokens, c.poll)
				if tm.start.Before(measureFrom) || tm.done.After(end) {
					continue
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
					continue
				}
				done.Add(1)
				mu.Lock()
				finalize = append(finalize, tm.valid.Sub(tm.finalize))
				total = append(total, tm.done.Sub(tm.start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r := report{Server: c.label, Directory: c.dirURL, Accounts: c.accounts, Seconds: c.duration.Seconds(), TargetRate: c.rate,
		Orders: done.Load(), Failed: failed.Load(), Errors: errs}
	r.OrdersPerSecond = float64(r.Orders) / c.duration.Seconds()
	r.Finalize = summarize(finalize)
	r.Total = summarize(total)
	if c.asJSON {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	fmt.Printf("%s: %d accounts, %.0fs: %d orders (%.1f/s), %d failed\n", orDefault(c.label, c.dirURL), c.accounts, c.duration.Seconds(), r.Orders, r.OrdersPerSecond, r.Failed)
	fmt.Printf("  finalize→valid  p50 %s  p90 %s  p99 %s  max %s\n", ms(r.Finalize.P50), ms(r.Finalize.P90), ms(r.Finalize.P99), ms(r.Finalize.Max))
	fmt.Printf("  order→cert      p50 %s  p90 %s  p99 %s  max %s\n", ms(r.Total.P50), ms(r.Total.P90), ms(r.Total.P99), ms(r.Total.Max))
	for _, e := range errs {
		fmt.Printf("  error: %s\n", strings.TrimSpace(e))
	}
	return nil
}

func fetchDirectory(hc *http.Client, url string) (directory, error) {
	var dir directory
	resp, err := hc.Get(url)
	if err != nil {
		return dir, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dir); err != nil || dir.NewOrder == "" {
		return dir, fmt.Errorf("directory %s: not an ACME directory (%v)", url, err)
	}
	return dir, nil
}

type report struct {
	Server          string    `json:"server,omitempty"`
	Directory       string    `json:"directory"`
	Accounts        int       `json:"accounts"`
	Seconds         float64   `json:"seconds"`
	TargetRate      float64   `json:"target_rate,omitempty"`
	Orders          int64     `json:"orders"`
	Failed          int64     `json:"failed"`
	OrdersPerSecond float64   `json:"orders_per_second"`
	Finalize        latencies `json:"finalize_to_valid_ms"`
	Total           latencies `json:"order_to_cert_ms"`
	Errors          []string  `json:"errors,omitempty"`
}

type latencies struct {
	P50, P90, P99, Max float64
}

func summarize(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(q * float64(len(ds)-1))
		return float64(ds[i]) / float64(time.Millisecond)
	}
	return latencies{at(0.50), at(0.90), at(0.99), at(1)}
}

func ms(v float64) string { return fmt.Sprintf("%.1fms", v) }

func orDefault(s, d string) string {
	if s != "" {
		return s
	}
	return d
}

// serveHTTP01 answers http-01 requests from the token map.
func serveHTTP01(addr string, tokens *sync.Map) (func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http-01 listener: %w", err)
	}
	s := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if v, found := tokens.Load(token); ok && found {
			w.Write([]byte(v.(string)))
			return
		}
		http.NotFound(w, r)
	})}
	go s.Serve(l)
	return func() { s.Close() }, nil
}

// serveDNS answers A 127.0.0.1 for every name, and nothing else.
func serveDNS(addr string) (func(), error) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(127, 0, 0, 1)})
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("DNS listener: %w", err)
	}
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("DNS listener: %w", err)
	}
	udp, tcp := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: tl, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	return func() { udp.Shutdown(); tcp.Shutdown() }, nil
}
