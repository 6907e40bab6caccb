package edge_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/edge"
)

func mustProxies(t *testing.T, cidrs ...string) *edge.Proxies {
	t.Helper()
	p, err := edge.ParseProxies(cidrs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseProxiesRefusesGarbage(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.1/8/9"} {
		if _, err := edge.ParseProxies([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestClientAddr walks the forwarding headers from the right: the first
// hop that is not a trusted proxy is the client; from an untrusted peer
// the headers count for nothing.
func TestClientAddr(t *testing.T) {
	p := mustProxies(t, "10.0.0.0/8", "2001:db8:1::/48", "192.0.2.7")
	for _, c := range []struct {
		name, peer string
		header     map[string][]string
		want       string
	}{
		{"untrusted peer: headers ignored", "198.51.100.1:4000",
			map[string][]string{"X-Forwarded-For": {"203.0.113.9"}, "Forwarded": {"for=203.0.113.9"}}, "198.51.100.1:4000"},
		{"trusted peer, no header", "10.1.2.3:4000", nil, "10.1.2.3:4000"},
		{"xff: one hop", "10.1.2.3:4000", map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9:0"},
		{"xff: a spoofed left hop does not count", "10.1.2.3:4000",
			map[string][]string{"X-Forwarded-For": {"1.1.1.1, 203.0.113.9, 10.9.9.9"}}, "203.0.113.9:0"},
		{"xff: several lines are one list", "10.1.2.3:4000",
			map[string][]string{"X-Forwarded-For": {"1.1.1.1", "203.0.113.9", "192.0.2.7"}}, "203.0.113.9:0"},
		{"xff: every hop trusted gives the leftmost", "10.1.2.3:4000",
			map[string][]string{"X-Forwarded-For": {"10.0.0.5, 10.0.0.6"}}, "10.0.0.5:0"},
		{"xff: garbage stops the walk at the proxy that wrote it", "10.1.2.3:4000",
			map[string][]string{"X-Forwarded-For": {"203.0.113.9, nonsense"}}, "10.1.2.3:4000"},
		{"forwarded without xff", "10.1.2.3:4000",
			map[string][]string{"Forwarded": {`for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711"`}},
			"[2001:db8:cafe::17]:4711"},
		{"xff wins: a client's Forwarded behind an xff balancer is not believed", "10.1.2.3:4000",
			map[string][]string{"Forwarded": {"for=198.51.100.99"}, "X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9:0"},
		{"forwarded: trusted hops skipped", "[2001:db8:1::5]:443",
			map[string][]string{"Forwarded": {"for=198.51.100.77, for=10.0.0.1;by=10.0.0.2"}}, "198.51.100.77:0"},
		{"forwarded: an obfuscated hop stops the walk", "10.1.2.3:4000",
			map[string][]string{"Forwarded": {"for=198.51.100.77, for=_hidden"}}, "10.1.2.3:4000"},
		{"ipv4-mapped peer is trusted as ipv4", "[::ffff:10.1.2.3]:4000",
			map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9:0"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for k, vs := range c.header {
			for _, v := range vs {
				r.Header.Add(k, v)
			}
		}
		if got := p.ClientAddr(r).String(); got != c.want {
			t.Errorf("%s: client %s, want %s", c.name, got, c.want)
		}
	}
}

// TestRequestID keeps a plain client id and replaces anything else.
func TestRequestID(t *testing.T) {
	for _, c := range []struct {
		in   string
		keep bool
	}{
		{"abc-123_x.y:z", true},
		{strings.Repeat("a", edge.MaxRequestID), true},
		{strings.Repeat("a", edge.MaxRequestID+1), false},
		{"has space", false},
		{"<script>", false},
		{"line\nbreak", false},
		{"", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.in != "" {
			r.Header["X-Request-Id"] = []string{c.in}
		}
		got := edge.RequestID(r)
		if (got == c.in) != c.keep {
			t.Errorf("%q → %q (keep %v)", c.in, got, c.keep)
		}
		r2 := httptest.NewRequest("GET", "/", nil)
		r2.Header.Set("X-Request-Id", got)
		if edge.RequestID(r2) != got {
			t.Errorf("the id %q given for %q is not kept itself", got, c.in)
		}
	}
}

// echoServer serves, on a real loopback listener wrapped by p, the
// client address and request id each request ends up with.
func echoServer(t *testing.T, p *edge.Proxies) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RemoteAddr+" "+r.Header.Get("X-Request-Id"))
	}))}
	go hs.Serve(p.Listener(ln))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// proxyV2 is a PROXY protocol v2 header: PROXY command, TCP over IPv4
// (or IPv6), src → dst.
func proxyV2(src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x21) // version 2, command PROXY
	var addrs []byte
	if src.Addr().Is4() {
		b = append(b, 0x11) // AF_INET, STREAM
		s, d := src.Addr().As4(), dst.Addr().As4()
		addrs = append(append(addrs, s[:]...), d[:]...)
	} else {
		b = append(b, 0x21) // AF_INET6, STREAM
		s, d := src.Addr().As16(), dst.Addr().As16()
		addrs = append(append(addrs, s[:]...), d[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
	addrs = binary.BigEndian.AppendUint16(addrs, dst.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)))
	return append(b, addrs...)
}

// rawGET sends prefix (a PROXY header, or nothing) and then a GET over
// a fresh connection, and returns the body, or the error.
func rawGET(t *testing.T, addr string, prefix []byte, header string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header + "\r\n"
	if _, err := c.Write(append(prefix, req...)); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// TestProxyProtocolV2 sends PROXY v2 headers, written byte by byte, to a
// real listener: from a trusted peer the header's source is the client;
// from an untrusted one the connection is refused; and a client behind
// the PROXY header cannot add a forwarding header of its own.
func TestProxyProtocolV2(t *testing.T) {
	dst := netip.MustParseAddrPort("127.0.0.1:443")
	trusted := echoServer(t, mustProxies(t, "127.0.0.0/8"))

	body, err := rawGET(t, trusted, proxyV2(netip.MustParseAddrPort("203.0.113.7:5555"), dst), "")
	if err != nil || !strings.HasPrefix(body, "203.0.113.7:5555 ") {
		t.Errorf("trusted peer, PROXY v2 from 203.0.113.7: %q, %v", body, err)
	}
	body, err = rawGET(t, trusted, proxyV2(netip.MustParseAddrPort("[2001:db8::42]:6000"), netip.MustParseAddrPort("[2001:db8::1]:443")), "")
	if err != nil || !strings.HasPrefix(body, "[2001:db8::42]:6000 ") {
		t.Errorf("trusted peer, PROXY v2 over IPv6: %q, %v", body, err)
	}
	body, err = rawGET(t, trusted, proxyV2(netip.MustParseAddrPort("203.0.113.7:5555"), dst), "X-Forwarded-For: 198.51.100.1\r\n")
	if err != nil || !strings.HasPrefix(body, "203.0.113.7:5555 ") {
		t.Errorf("X-Forwarded-For from the client behind a PROXY header was believed: %q, %v", body, err)
	}
	body, err = rawGET(t, trusted, nil, "X-Forwarded-For: 198.51.100.1\r\n")
	if err != nil || !strings.HasPrefix(body, "198.51.100.1:0 ") {
		t.Errorf("trusted peer, X-Forwarded-For without PROXY header: %q, %v", body, err)
	}

	untrusted := echoServer(t, mustProxies(t, "10.0.0.0/8"))
	if body, err := rawGET(t, untrusted, proxyV2(netip.MustParseAddrPort("203.0.113.7:5555"), dst), ""); err == nil {
		t.Errorf("untrusted peer's PROXY header accepted: %q", body)
	}
	body, err = rawGET(t, untrusted, nil, "X-Forwarded-For: 198.51.100.1\r\nForwarded: for=198.51.100.2\r\n")
	if err != nil || !strings.HasPrefix(body, "127.0.0.1:") {
		t.Errorf("untrusted peer's forwarding headers: %q, %v", body, err)
	}
	body, err = rawGET(t, untrusted, nil, "X-Request-Id: bad id\r\n")
	if _, id, _ := strings.Cut(body, " "); err != nil || id == "bad id" || len(id) != 24 {
		t.Errorf("a bad request id reached the handler: %q, %v", body, err)
	}
}
