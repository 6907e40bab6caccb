package server_test

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/server"
)

// TestStatusOnOpsListenerOnly: the status page, its JSON and the metrics
// (subjects, serials) are not on the public HTTPS listener, only on the
// ops listener; both have the probes.
func TestStatusOnOpsListenerOnly(t *testing.T) {
	o := startObserved(t)
	o.issue(t, "listed.example.com", "")
	for _, p := range []string{"/status", "/status.json", "/metrics"} {
		if resp, body := o.get(t, p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("HTTPS %s: %s (%d bytes), want 404", p, resp.Status, len(body))
		}
		if resp, _ := o.opsGet(t, p); resp.StatusCode != http.StatusOK {
			t.Errorf("ops %s: %s", p, resp.Status)
		}
	}
	for _, get := range []func(*testing.T, string) (*http.Response, []byte){o.get, o.opsGet} {
		if resp, body := get(t, "/healthz"); resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
			t.Errorf("/healthz: %s %q", resp.Status, body)
		}
		resp, body := get(t, "/readyz")
		var checks map[string]string
		if resp.StatusCode != 200 || json.Unmarshal(body, &checks) != nil ||
			checks["queue"] != "ok" || checks["store"] != "ok" || checks["pipeline"] != "ok" {
			t.Errorf("/readyz: %s %s", resp.Status, body)
		}
	}
}

// TestReadyzSaysNoErrorText: with the queue gone, /readyz answers 503 and
// names the components' states in words; the error itself is logged.
func TestReadyzSaysNoErrorText(t *testing.T) {
	o := startObserved(t)
	o.s.Core.Queue.Close()
	words := map[string]bool{"ok": true, "unavailable": true, "failed": true}
	for _, get := range []func(*testing.T, string) (*http.Response, []byte){o.get, o.opsGet} {
		resp, body := get(t, "/readyz")
		var checks map[string]string
		if err := json.Unmarshal(body, &checks); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/readyz with the queue closed: %s %s", resp.Status, body)
		}
		if checks["queue"] != "unavailable" {
			t.Errorf("/readyz queue: %q, want unavailable", checks["queue"])
		}
		for k, v := range checks {
			if !words[v] {
				t.Errorf("/readyz %s: %q is not a state word", k, v)
			}
		}
	}
	if !strings.Contains(o.log.String(), `"msg":"readiness: queue","error":`) {
		t.Errorf("the queue's error is not logged:\n%s", o.log)
	}
}

// accessLine returns the remote (and via) of the access log line of the
// request with id rid.
func accessLine(t *testing.T, o *observed, rid string) (remote, via string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range o.log.lines(t) {
			if l["msg"] == "http request" && l["request_id"] == rid {
				r, _ := l["remote"].(string)
				v, _ := l["via"].(string)
				return r, v
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no access log line for %s:\n%s", rid, o.log)
	return "", ""
}

// proxyV2Header is a PROXY protocol v2 header (PROXY command, TCP over
// IPv4) for src → dst, byte by byte as a load balancer sends it.
func proxyV2Header(src, dst netip.AddrPort) []byte {
	b := []byte{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 12}
	s, d := src.Addr().As4(), dst.Addr().As4()
	b = append(append(b, s[:]...), d[:]...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// getVia sends GET /healthz over TLS on a connection that starts with
// prefix (a PROXY header, or nothing), with an extra header line.
func getVia(o *observed, prefix []byte, rid, header string) error {
	c, err := net.Dial("tcp", o.s.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(prefix); err != nil {
		return err
	}
	tc := tls.Client(c, o.client.Transport.(*http.Transport).TLSClientConfig)
	if err := tc.Handshake(); err != nil {
		return err
	}
	io.WriteString(tc, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Request-Id: "+rid+"\r\n"+header+"\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// TestTrustedProxies: behind a trusted proxy the access log (and every
// front-end, through r.RemoteAddr) sees the client's address, from
// X-Forwarded-For or from a PROXY v2 header; without --trusted-proxies
// both are ignored, and a PROXY header breaks the connection.
func TestTrustedProxies(t *testing.T) {
	behind := startObservedWith(t, func(c *server.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} })
	if err := getVia(behind, nil, "xff-1", "X-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n"); err != nil {
		t.Fatal(err)
	}
	if remote, via := accessLine(t, behind, "xff-1"); remote != "203.0.113.9:0" || !strings.HasPrefix(via, "127.0.0.1:") {
		t.Errorf("X-Forwarded-For from a trusted proxy: remote %q via %q", remote, via)
	}
	pp := proxyV2Header(netip.MustParseAddrPort("203.0.113.77:41000"), netip.MustParseAddrPort("127.0.0.1:8443"))
	if err := getVia(behind, pp, "ppv2-1", ""); err != nil {
		t.Fatal(err)
	}
	if remote, _ := accessLine(t, behind, "ppv2-1"); remote != "203.0.113.77:41000" {
		t.Errorf("PROXY v2 from a trusted proxy: remote %q", remote)
	}

	direct := startObserved(t)
	if err := getVia(direct, nil, "xff-2", "X-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\n"); err != nil {
		t.Fatal(err)
	}
	if remote, via := accessLine(t, direct, "xff-2"); !strings.HasPrefix(remote, "127.0.0.1:") || via != "" {
		t.Errorf("forwarding headers from an untrusted peer were believed: remote %q via %q", remote, via)
	}
	if err := getVia(direct, pp, "ppv2-2", ""); err == nil {
		t.Error("a PROXY header from an untrusted peer was accepted")
	}
	untrusted := startObservedWith(t, func(c *server.Config) { c.TrustedProxies = []string{"10.0.0.0/8"} })
	if err := getVia(untrusted, pp, "ppv2-3", ""); err == nil {
		t.Error("a PROXY header from a peer outside --trusted-proxies was accepted")
	}
}

// TestTrustedProxiesPlainHTTP: the plain-HTTP listener (CRLs, OCSP) takes
// a trusted balancer's PROXY v2 header too, and refuses an untrusted one.
func TestTrustedProxiesPlainHTTP(t *testing.T) {
	pp := proxyV2Header(netip.MustParseAddrPort("203.0.113.77:41000"), netip.MustParseAddrPort("127.0.0.1:80"))
	get := func(o *observed) (int, error) {
		c, err := net.Dial("tcp", o.s.CRLAddr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(append(pp, "GET "+server.CRLPath+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	behind := startObservedWith(t, func(c *server.Config) {
		c.HTTPListen, c.TrustedProxies = "127.0.0.1:0", []string{"127.0.0.0/8"}
	})
	if code, err := get(behind); err != nil || code == http.StatusBadRequest {
		t.Errorf("PROXY v2 from a trusted proxy on the plain-HTTP listener: %d %v", code, err)
	}
	direct := startObservedWith(t, func(c *server.Config) { c.HTTPListen = "127.0.0.1:0" })
	if code, err := get(direct); err == nil && code != http.StatusBadRequest {
		t.Errorf("PROXY v2 from an untrusted peer on the plain-HTTP listener answered %d", code)
	}
}
