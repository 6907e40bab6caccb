package va

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/qpki/qpki/pkg/store"
)

func TestCAAPermits(t *testing.T) {
	v := New(Config{CAAIdentities: []string{"ca.test"}})
	rr := func(flag uint8, tag, value string) *dns.CAA { return &dns.CAA{Flag: flag, Tag: tag, Value: value} }
	for _, tc := range []struct {
		name     string
		set      []*dns.CAA
		wildcard bool
		ok       bool
	}{
		{"ours", []*dns.CAA{rr(0, "issue", "ca.test")}, false, true},
		{"case", []*dns.CAA{rr(0, "ISSUE", "CA.Test")}, false, true},
		{"theirs", []*dns.CAA{rr(0, "issue", "other.test")}, false, false},
		{"nobody", []*dns.CAA{rr(0, "issue", ";")}, false, false},
		{"iodef only", []*dns.CAA{rr(0, "iodef", "mailto:a@b.test")}, false, true},
		{"unknown critical", []*dns.CAA{rr(0, "issue", "ca.test"), rr(128, "future", "x")}, false, false},
		{"unknown non-critical", []*dns.CAA{rr(0, "issue", "ca.test"), rr(0, "future", "x")}, false, true},
		{"issuewild wins for wildcards", []*dns.CAA{rr(0, "issue", "ca.test"), rr(0, "issuewild", "other.test")}, true, false},
		{"issuewild ignored otherwise", []*dns.CAA{rr(0, "issue", "ca.test"), rr(0, "issuewild", "other.test")}, false, true},
		{"issue for wildcards", []*dns.CAA{rr(0, "issue", "ca.test")}, true, true},
		{"account", []*dns.CAA{rr(0, "issue", "ca.test; accounturi=https://acme/acct/1")}, false, true},
		{"other account", []*dns.CAA{rr(0, "issue", "ca.test; accounturi=https://acme/acct/2")}, false, false},
		{"method", []*dns.CAA{rr(0, "issue", "ca.test; validationmethods=dns-01,http-01")}, false, true},
		{"other method", []*dns.CAA{rr(0, "issue", "ca.test; validationmethods=dns-01")}, false, false},
		{"any of several", []*dns.CAA{rr(0, "issue", "other.test"), rr(0, "issue", "ca.test")}, false, true},
	} {
		if ok, why := v.caaPermits(tc.set, tc.wildcard, "https://acme/acct/1", "http-01"); ok != tc.ok {
			t.Errorf("%s: permits %v (%s), want %v", tc.name, ok, why, tc.ok)
		}
	}
}

func alpnCert(t *testing.T, names []string, ips []net.IP, digest []byte, critical bool) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		DNSNames: names, IPAddresses: ips}
	if digest != nil {
		v, _ := asn1.Marshal(digest)
		tmpl.ExtraExtensions = []pkix.Extension{{Id: OIDACMEIdentifier, Critical: critical, Value: v}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestALPNCert(t *testing.T) {
	ka := "token.thumb"
	sum := sha256.Sum256([]byte(ka))
	wrong := sha256.Sum256([]byte("other"))
	id := store.ACMEIdentifier{Type: "dns", Value: "a.example.com"}
	ip := store.ACMEIdentifier{Type: "ip", Value: "192.0.2.1"}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		id   store.ACMEIdentifier
		ok   bool
	}{
		{"good", alpnCert(t, []string{"a.example.com"}, nil, sum[:], true), id, true},
		{"good ip", alpnCert(t, nil, []net.IP{net.ParseIP("192.0.2.1")}, sum[:], true), ip, true},
		{"not critical", alpnCert(t, []string{"a.example.com"}, nil, sum[:], false), id, false},
		{"wrong digest", alpnCert(t, []string{"a.example.com"}, nil, wrong[:], true), id, false},
		{"no extension", alpnCert(t, []string{"a.example.com"}, nil, nil, true), id, false},
		{"two names", alpnCert(t, []string{"a.example.com", "b.example.com"}, nil, sum[:], true), id, false},
		{"other name", alpnCert(t, []string{"b.example.com"}, nil, sum[:], true), id, false},
		{"short digest", alpnCert(t, []string{"a.example.com"}, nil, sum[:16], true), id, false},
	} {
		if p := checkALPNCert(tc.cert, tc.id, ka); (p == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, p)
		}
	}
}

// TestHTTP01 runs http-01 against a real HTTP server: answers, wrong
// answers, redirects within and beyond the rules.
func TestHTTP01(t *testing.T) {
	var target string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/acme-challenge/good":
			w.Write([]byte("good.thumb\n"))
		case "/.well-known/acme-challenge/redirect":
			http.Redirect(w, r, "http://"+r.Host+"/.well-known/acme-challenge/good", http.StatusFound)
		case "/.well-known/acme-challenge/loop":
			http.Redirect(w, r, "/.well-known/acme-challenge/loop", http.StatusFound)
		case "/.well-known/acme-challenge/port":
			http.Redirect(w, r, "http://a.example.com:8080/x", http.StatusFound)
		case "/.well-known/acme-challenge/big":
			w.Write(make([]byte, 20000))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	target = srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(target)
	p, _ := strconv.Atoi(port)
	v := New(Config{HTTPPort: p, ResolveTo: netip.MustParseAddr("127.0.0.1"), Timeout: 5 * time.Second})
	id := store.ACMEIdentifier{Type: "dns", Value: "a.example.com"}
	for token, want := range map[string]string{"good": "", "redirect": "", "wrong": "unauthorized", "loop": "connection",
		"port": "connection", "big": "unauthorized"} {
		ka := token + ".thumb"
		if token == "redirect" {
			ka = "good.thumb"
		}
		prob := v.Validate(context.Background(), id, "http-01", token, ka)
		switch {
		case want == "" && prob != nil:
			t.Errorf("%s: %v", token, prob)
		case want != "" && !prob.HasType(want):
			t.Errorf("%s: %v, want %s", token, prob, want)
		}
	}
	if p := v.Validate(context.Background(), id, "http-01", "good", "good.other"); !p.HasType("incorrectResponse") {
		t.Errorf("wrong key authorization: %v", p)
	}
	// Nobody listening.
	closed := New(Config{HTTPPort: 1, ResolveTo: netip.MustParseAddr("127.0.0.1"), Timeout: time.Second})
	if p := closed.Validate(context.Background(), id, "http-01", "good", "good.thumb"); !p.HasType("connection") {
		t.Errorf("refused connection: %v", p)
	}
}

// TestTimeout: a validation that the client never answers ends within
// the configured time as a connection problem, for each challenge type.
func TestTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // accepted, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	p, _ := strconv.Atoi(port)
	const timeout = 300 * time.Millisecond
	v := New(Config{HTTPPort: p, TLSPort: p, ResolveTo: netip.MustParseAddr("127.0.0.1"), Timeout: timeout})
	id := store.ACMEIdentifier{Type: "dns", Value: "slow.example.com"}
	for _, typ := range []string{"http-01", "tls-alpn-01"} {
		start := time.Now()
		prob := v.Validate(context.Background(), id, typ, "tok", "tok.thumb")
		if took := time.Since(start); took > timeout+time.Second {
			t.Errorf("%s: took %v, timeout %v", typ, took, timeout)
		}
		if prob == nil || !(prob.HasType("connection") || prob.HasType("tls")) {
			t.Errorf("%s: %v, want a connection or tls problem", typ, prob)
		}
	}
}

// TestCAAWithoutResolver: without --acme-dns-resolver, CAA is asked of
// the system's DNS servers, and a CAA lookup that cannot be made fails
// the check (it used to be skipped); only SkipCAA skips it.
func TestCAAWithoutResolver(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("search example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := resolvConf
	resolvConf = conf
	defer func() { resolvConf = old }()
	v := New(Config{CAAIdentities: []string{"qpki.test"}, Timeout: 2 * time.Second})
	if p := v.CheckCAA(context.Background(), "example.com", false, "https://acct", "http-01"); !p.HasType("dns") || !strings.Contains(p.Detail, "no DNS server") {
		t.Fatalf("CAA without a DNS server: %v, want a dns problem", p)
	}
	skip := New(Config{CAAIdentities: []string{"qpki.test"}, SkipCAA: true})
	if p := skip.CheckCAA(context.Background(), "example.com", false, "https://acct", "http-01"); p != nil || skip.CAAEnabled() {
		t.Fatalf("CAA checked with SkipCAA: %v", p)
	}
}
