package va

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/qpki/qpki/pkg/store"
)

// zoneDNS is a DNS server on loopback answering A queries from a table;
// a name with several addresses answers them in turn, one per query (a
// rebinding name).
type zoneDNS struct {
	addr string
	mu   sync.Mutex
	a    map[string][]string
	n    map[string]int
}

func startZoneDNS(t *testing.T) *zoneDNS {
	t.Helper()
	z := &zoneDNS{a: map[string][]string{}, n: map[string]int{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: z}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return z
}

func (z *zoneDNS) setA(name string, addrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.a[dns.CanonicalName(name)] = addrs
}

func (z *zoneDNS) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) == 1 {
		qq := q.Question[0]
		name := dns.CanonicalName(qq.Name)
		hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Rrtype: qq.Qtype, Ttl: 0}
		z.mu.Lock()
		switch qq.Qtype {
		case dns.TypeA:
			if addrs := z.a[name]; len(addrs) > 0 {
				a := addrs[z.n[name]%len(addrs)]
				z.n[name]++
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(a)})
			}
		}
		z.mu.Unlock()
	}
	w.WriteMsg(m)
}

// egressEnv: an attacker's validation server on 127.0.0.1 (the allowed
// network, standing for the public Internet) and an "internal" server on
// 127.0.0.2 (standing for the metadata service or any internal host) on
// the same port, which no validation may reach.
type egressEnv struct {
	va       *VA
	dns      *zoneDNS
	internal atomic.Int32 // connections the internal server saw
}

const internalSecret = "internal-secret-credentials"

func newEgressEnv(t *testing.T, attacker http.HandlerFunc) *egressEnv {
	t.Helper()
	e := &egressEnv{dns: startZoneDNS(t)}
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(pub.Addr().String())
	priv, err := net.Listen("tcp", "127.0.0.2:"+port)
	if err != nil {
		t.Fatal(err)
	}
	ps := &http.Server{Handler: attacker}
	is := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(internalSecret))
	}), ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			e.internal.Add(1)
		}
	}}
	go ps.Serve(pub)
	go is.Serve(priv)
	t.Cleanup(func() { ps.Close(); is.Close() })
	p, _ := strconv.Atoi(port)
	e.dns.setA("attacker.test", "127.0.0.1")
	e.dns.setA("internal.test", "127.0.0.2")
	e.va = New(Config{HTTPPort: p, TLSPort: p, Resolver: e.dns.addr, Timeout: 5 * time.Second,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	return e
}

// TestValidationRefusesInternalTargets: http-01 and tls-alpn-01 never
// reach a special-purpose address, neither directly nor through a
// redirect (to an IP literal, to a name, or to a name that rebinds
// between lookups); the problem is a connection problem that names the
// refused address and carries nothing the internal server sent.
func TestValidationRefusesInternalTargets(t *testing.T) {
	e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		switch tok {
		case "to-ip":
			http.Redirect(w, r, "http://127.0.0.2/latest/meta-data/", http.StatusFound)
		case "to-ip6":
			http.Redirect(w, r, "http://[::1]/latest/meta-data/", http.StatusFound)
		case "to-name":
			http.Redirect(w, r, "http://internal.test/latest/meta-data/", http.StatusFound)
		case "to-https-name":
			http.Redirect(w, r, "https://internal.test/latest/meta-data/", http.StatusMovedPermanently)
		case "to-rebind":
			http.Redirect(w, r, "http://rebind.test/.well-known/acme-challenge/to-rebind", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	// rebind.test answers the allowed address, then the internal one.
	e.dns.setA("rebind.test", "127.0.0.1", "127.0.0.2")
	attacker := store.ACMEIdentifier{Type: "dns", Value: "attacker.test"}
	for _, tc := range []struct {
		name      string
		id        store.ACMEIdentifier
		challenge string
		token     string
		names     string // what the detail must name
	}{
		{"redirect to an IP literal", attacker, "http-01", "to-ip", "127.0.0.2"},
		{"redirect to an IPv6 literal", attacker, "http-01", "to-ip6", "::1"},
		{"redirect to an internal name", attacker, "http-01", "to-name", "127.0.0.2"},
		{"redirect to an internal name over https", attacker, "http-01", "to-https-name", "127.0.0.2"},
		{"rebinding name", store.ACMEIdentifier{Type: "dns", Value: "rebind.test"}, "http-01", "to-rebind", "127.0.0.2"},
		{"internal name", store.ACMEIdentifier{Type: "dns", Value: "internal.test"}, "http-01", "x", "127.0.0.2"},
		{"internal address", store.ACMEIdentifier{Type: "ip", Value: "127.0.0.2"}, "http-01", "x", "127.0.0.2"},
		{"metadata address", store.ACMEIdentifier{Type: "ip", Value: "169.254.169.254"}, "http-01", "x", "169.254.169.254"},
		{"tls-alpn-01 to an internal name", store.ACMEIdentifier{Type: "dns", Value: "internal.test"}, "tls-alpn-01", "x", "127.0.0.2"},
		{"tls-alpn-01 to an internal address", store.ACMEIdentifier{Type: "ip", Value: "10.0.0.1"}, "tls-alpn-01", "x", "10.0.0.1"},
	} {
		prob := e.va.Validate(context.Background(), tc.id, tc.challenge, tc.token, tc.token+".thumb")
		if !prob.HasType("connection") {
			t.Errorf("%s: %v, want a connection problem", tc.name, prob)
			continue
		}
		if !strings.Contains(prob.Detail, tc.names) {
			t.Errorf("%s: %q does not name %s", tc.name, prob.Detail, tc.names)
		}
		if strings.Contains(prob.Detail, internalSecret) {
			t.Errorf("%s: the problem carries the internal answer: %q", tc.name, prob.Detail)
		}
	}
	if n := e.internal.Load(); n != 0 {
		t.Fatalf("the internal server was reached %d times", n)
	}
}

// TestRedirectLimit: ten redirects (through names) are followed, an
// eleventh is not.
func TestRedirectLimit(t *testing.T) {
	e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		name, hops, _ := strings.Cut(tok, "-")
		n, _ := strconv.Atoi(hops)
		if n == 0 {
			w.Write([]byte(name + ".thumb"))
			return
		}
		http.Redirect(w, r, "http://attacker.test/.well-known/acme-challenge/"+name+"-"+strconv.Itoa(n-1), http.StatusTemporaryRedirect)
	})
	id := store.ACMEIdentifier{Type: "dns", Value: "attacker.test"}
	if p := e.va.Validate(context.Background(), id, "http-01", "ten-10", "ten.thumb"); p != nil {
		t.Fatalf("ten redirects: %v", p)
	}
	if p := e.va.Validate(context.Background(), id, "http-01", "eleven-11", "eleven.thumb"); !p.HasType("connection") || !strings.Contains(p.Detail, "redirects") {
		t.Fatalf("eleven redirects: %v, want a connection problem", p)
	}
}

// TestProblemCarriesNoBody: a wrong answer is described, not echoed.
func TestProblemCarriesNoBody(t *testing.T) {
	const body = "some-body-the-validation-target-sent"
	e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body))
	})
	p := e.va.Validate(context.Background(), store.ACMEIdentifier{Type: "dns", Value: "attacker.test"}, "http-01", "tok", "tok.thumb")
	if !p.HasType("incorrectResponse") {
		t.Fatalf("%v, want incorrectResponse", p)
	}
	if strings.Contains(p.Detail, body) || strings.Contains(p.Detail, body[:10]) {
		t.Fatalf("the problem echoes the answer: %q", p.Detail)
	}
}
