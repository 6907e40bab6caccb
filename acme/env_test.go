package acme_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	xacme "golang.org/x/crypto/acme"

	"github.com/qpki/qpki/acme"
	"github.com/qpki/qpki/internal/testport"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/server"
)

// env is a running qpki serve with the ACME front-end, on a temporary
// CA (ec/root-ca and ec/issuing-ca), with validations sent to 127.0.0.1
// on test ports and a test DNS server.
type env struct {
	t        *testing.T
	dir      string
	caDir    string
	dataDir  string
	srv      *server.Server
	front    *acme.Frontend
	dirURL   string
	rootFile string
	roots    *x509.CertPool
	srvTweak func(*server.Config) // adjusts the server's configuration, if set
	httpPort int                  // where validations look for http-01 answers
	tlsPort  int                  // and tls-alpn-01 ones
	dns      *testDNS
}

// freePort returns a TCP port nobody listens on (for a client that
// insists on opening the listener itself).
func freePort(t *testing.T) int { return testport.Free(t) }

// newCA makes a root and an issuing CA under dir and returns the issuing
// CA's directory.
func newCA(t testing.TB, dir string) string {
	t.Helper()
	root, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "root"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "ACME Test Root"}})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	sub, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "issuing"), Profile: "ec/issuing-ca", Parent: root, Vars: map[string]any{"cn": "ACME Test Issuing CA"}})
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
	return filepath.Join(dir, "issuing")
}

// newEnv starts a server; tweak adjusts the ACME configuration.
func newEnv(t *testing.T, tweak func(*acme.Config)) *env {
	t.Helper()
	return newEnvServer(t, nil, tweak)
}

// newEnvServer is newEnv with srvTweak adjusting the server's
// configuration too.
func newEnvServer(t *testing.T, srvTweak func(*server.Config), tweak func(*acme.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, caDir: newCA(t, dir), dataDir: filepath.Join(dir, "data"), httpPort: freePort(t), tlsPort: freePort(t), srvTweak: srvTweak}
	e.dns = startDNS(t)
	cfg := acme.Config{DataDir: e.dataDir, Profiles: []string{"ec/tls-server", "ec/tls-client"},
		HTTPPort: e.httpPort, TLSPort: e.tlsPort, ResolveTo: "127.0.0.1", DNSResolver: e.dns.addr,
		ValidationTimeout: 5 * time.Second, CAAIdentities: []string{"qpki.test"},
		TermsOfService: "https://qpki.test/terms", Website: "https://qpki.test/"}
	if tweak != nil {
		tweak(&cfg)
	}
	e.start(cfg)
	return e
}

func (e *env) start(cfg acme.Config) {
	t := e.t
	front, err := acme.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	scfg := server.Config{CADir: e.caDir, DataDir: e.dataDir, Listen: "127.0.0.1:0", Workers: 1}
	if e.srvTweak != nil {
		e.srvTweak(&scfg)
	}
	srv, err := server.Start(context.Background(), scfg, front)
	if err != nil {
		front.Close()
		t.Fatal(err)
	}
	select {
	case <-srv.HTTPSReady():
	case <-time.After(time.Minute):
		t.Fatal("HTTPS listener did not start")
	}
	e.srv, e.front = srv, front
	t.Cleanup(e.stop)
	e.dirURL = "https://" + srv.Addr + acme.DirectoryPath
	roots, err := srv.Core.CA.Bundle("root", "")
	if err != nil {
		t.Fatal(err)
	}
	e.rootFile = filepath.Join(e.dir, "root.pem")
	if err := os.WriteFile(e.rootFile, ca.EncodeCerts(roots...), 0o644); err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	e.roots.AddCert(roots[0])
}

func (e *env) stop() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv = nil
	}
}

// httpClient trusts the test root.
func (e *env) httpClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}}}
}

// client returns a registered x/crypto/acme client with a new P-256 key.
func (e *env) client() *xacme.Client {
	e.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return e.clientWithKey(key, true)
}

func (e *env) clientWithKey(key crypto.Signer, register bool) *xacme.Client {
	e.t.Helper()
	c := &xacme.Client{Key: key, DirectoryURL: e.dirURL, HTTPClient: e.httpClient()}
	if register {
		if _, err := c.Register(context.Background(), &xacme.Account{Contact: []string{"mailto:ops@example.com"}}, xacme.AcceptTOS); err != nil {
			e.t.Fatal(err)
		}
	}
	return c
}

// serveHTTP01 answers http-01 challenges on the env's http-01 port.
func (e *env) serveHTTP01(answers *sync.Map) {
	e.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(e.httpPort))
	if err != nil {
		e.t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if v, ok := answers.Load(token); ok {
			w.Write([]byte(v.(string)))
			return
		}
		http.NotFound(w, r)
	})}
	go s.Serve(l)
	e.t.Cleanup(func() { s.Close() })
}

// testDNS is an authoritative-for-everything DNS server: every name has
// A 127.0.0.1; TXT and CAA records come from the test. It also takes TXT
// records over lego's httpreq protocol (POST /present, /cleanup with
// {"fqdn", "value"}).
type testDNS struct {
	addr    string // UDP and TCP
	httpURL string // httpreq endpoint
	mu      sync.Mutex
	txt     map[string][]string
	caa     map[string][]*dns.CAA
	queries []string
}

func startDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{txt: map[string][]string{}, caa: map[string][]*dns.CAA{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = pc.LocalAddr().String()
	tl, err := net.Listen("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: d}
	tcp := &dns.Server{Listener: tl, Handler: d}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.httpURL = "http://" + hl.Addr().String()
	hs := &http.Server{Handler: http.HandlerFunc(d.httpreq)}
	go hs.Serve(hl)
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		hs.Close()
	})
	return d
}

func (d *testDNS) setTXT(name string, values ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[dns.CanonicalName(name)] = values
}

func (d *testDNS) setCAA(name string, recs ...*dns.CAA) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.caa[dns.CanonicalName(name)] = recs
}

func (d *testDNS) httpreq(w http.ResponseWriter, r *http.Request) {
	var req struct {
		FQDN  string `json:"fqdn"`
		Value string `json:"value"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	name := dns.CanonicalName(req.FQDN)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch r.URL.Path {
	case "/present":
		d.txt[name] = append(d.txt[name], req.Value)
	case "/cleanup":
		d.txt[name] = slices.DeleteFunc(d.txt[name], func(v string) bool { return v == req.Value })
	default:
		http.NotFound(w, r)
	}
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) == 1 {
		qq := q.Question[0]
		name := dns.CanonicalName(qq.Name)
		hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Ttl: 1}
		d.mu.Lock()
		d.queries = append(d.queries, dns.TypeToString[qq.Qtype]+" "+name)
		switch qq.Qtype {
		case dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
		case dns.TypeTXT:
			hdr.Rrtype = dns.TypeTXT
			for _, v := range d.txt[name] {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{v}})
			}
		case dns.TypeCAA:
			for _, rr := range d.caa[name] {
				c := *rr
				c.Hdr = hdr
				c.Hdr.Rrtype = dns.TypeCAA
				m.Answer = append(m.Answer, &c)
			}
		case dns.TypeSOA:
			hdr.Rrtype = dns.TypeSOA
			m.Answer = append(m.Answer, &dns.SOA{Hdr: hdr, Ns: "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 1})
		case dns.TypeNS:
			hdr.Rrtype = dns.TypeNS
			m.Answer = append(m.Answer, &dns.NS{Hdr: hdr, Ns: "ns.test."})
		}
		d.mu.Unlock()
	}
	w.WriteMsg(m)
}
