// Package edge is where a request from the network first meets qpki:
// which address the client really has, and which request id it carries.
// Every listener of `qpki serve` goes through it, so that ACME, EST and
// the front-ends that follow see one client address (in r.RemoteAddr) and
// one clean request id (in the X-Request-Id header), for rate limits,
// logs and audit alike.
//
// Client address. Behind a load balancer every connection comes from the
// balancer. With trusted proxies configured (--trusted-proxies CIDR), a
// request whose TCP peer is one of them takes its client address from
// the PROXY protocol header (v1 or v2) the balancer sent before TLS, or,
// without one, from the X-Forwarded-For header or, when there is none,
// the Forwarded header (RFC 7239): the rightmost hop that is not itself a
// trusted proxy, since every hop to the left of it was written by the
// client or by proxies nobody vouches for. X-Forwarded-For comes first
// because nearly every balancer appends to it (and passes a client's
// Forwarded header through untouched, where the client may write
// anything); a balancer that writes only Forwarded must drop a client's
// X-Forwarded-For. From any other peer those headers are ignored and a
// PROXY header is refused (the connection fails).
//
// The PROXY protocol is read by github.com/pires/go-proxyproto: it parses
// v1 and v2, bounds the header's size and the time to read it, and
// decides per connection from the peer's address (USE for trusted peers,
// REJECT for everyone else), which is exactly the policy wanted here.
//
// Request id. A client's X-Request-Id is kept when it is at most 64
// bytes of letters, digits and -_.: and replaced by a random one
// otherwise; the clean id is written back into the request's header and
// into the response, so no handler ever reads the raw value.
package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Proxies is the set of trusted proxy networks; nil or empty trusts
// nobody.
type Proxies struct {
	nets []netip.Prefix
}

// ParseProxies reads CIDR networks or single addresses.
func ParseProxies(entries []string) (*Proxies, error) {
	p := &Proxies{}
	for _, s := range entries {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if pr, err := netip.ParsePrefix(s); err == nil {
			p.nets = append(p.nets, prefixUnmapped(pr))
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an IP address or a CIDR network", s)
		}
		a = a.Unmap()
		p.nets = append(p.nets, netip.PrefixFrom(a, a.BitLen()))
	}
	return p, nil
}

func prefixUnmapped(pr netip.Prefix) netip.Prefix {
	if a := pr.Addr(); a.Is4In6() && pr.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), pr.Bits()-96).Masked()
	}
	return pr.Masked()
}

// Empty reports whether no proxy is trusted.
func (p *Proxies) Empty() bool { return p == nil || len(p.nets) == 0 }

// Trusted reports whether a is a trusted proxy.
func (p *Proxies) Trusted(a netip.Addr) bool {
	if p == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// proxyHeaderTimeout bounds the wait for a PROXY header from a trusted
// peer (the header comes first, before the TLS ClientHello).
const proxyHeaderTimeout = 5 * time.Second

// Listener wraps ln so that a connection from a trusted proxy may open
// with a PROXY protocol header (v1 or v2), whose source address then is
// the connection's RemoteAddr; a connection from any other peer that
// opens with one is refused (its first read fails, and the server closes
// it). With no trusted proxy, ln is returned as it is: a PROXY header is
// then simply not TLS, and the handshake fails.
func (p *Proxies) Listener(ln net.Listener) net.Listener {
	if p.Empty() {
		return ln
	}
	return &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: proxyHeaderTimeout,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if a, ok := addrOf(o.Upstream); ok && p.Trusted(a) {
				return proxyproto.USE, nil
			}
			return proxyproto.REJECT, nil
		}}
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	if tcp, ok := a.(*net.TCPAddr); ok {
		ap := tcp.AddrPort()
		return ap.Addr().Unmap(), ap.Addr().IsValid()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// maxHops bounds how many forwarding hops are read from a request.
const maxHops = 32

// ClientAddr returns r's client address: the TCP peer's, unless the peer
// is a trusted proxy and the request says who it forwarded for.
func (p *Proxies) ClientAddr(r *http.Request) netip.AddrPort {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if !p.Trusted(peer.Addr()) {
		return peer
	}
	hops := forwardedFor(r.Header)
	cur := peer
	for i := len(hops) - 1; i >= 0 && i >= len(hops)-maxHops; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			// "unknown", an obfuscated name or garbage: nothing to the
			// left of it can be believed; the proxy that wrote it is
			// the client as far as qpki can tell.
			break
		}
		cur = hop
		if !p.Trusted(hop.Addr()) {
			break
		}
	}
	return cur
}

// forwardedFor lists the hops of X-Forwarded-For or, without one, of the
// Forwarded header's for= parameters; leftmost first.
func forwardedFor(h http.Header) []string {
	var hops []string
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, line := range xff {
			for _, v := range strings.Split(line, ",") {
				hops = append(hops, strings.TrimSpace(v))
			}
		}
		return hops
	}
	for _, line := range h.Values("Forwarded") {
		for _, elem := range strings.Split(line, ",") {
			v := ""
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					v = strings.Trim(val, `"`)
				}
			}
			hops = append(hops, v) // an element without for= is an unknown hop
		}
	}
	return hops
}

// parseHop reads "192.0.2.1", "192.0.2.1:443", "2001:db8::1" or
// "[2001:db8::1]:443".
func parseHop(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), 0), true
	}
	return netip.AddrPort{}, false
}

// RequestIDHeader carries a request's id in and out.
const RequestIDHeader = "X-Request-Id"

// MaxRequestID bounds an id taken from a client's header.
const MaxRequestID = 64

// RequestID returns r's X-Request-Id when it is short and plain, else a
// new random one.
func RequestID(r *http.Request) string {
	if id := r.Header.Get(RequestIDHeader); validRequestID(id) {
		return id
	}
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > MaxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

type peerKey struct{}

// Peer returns the TCP peer of the request ctx belongs to, when a trusted
// proxy forwarded it (r.RemoteAddr is then the client's address).
func Peer(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(peerKey{}).(string)
	return s, ok
}

// Handler puts r's client address in r.RemoteAddr (the TCP peer's address
// is kept for Peer when it differs) and a clean request id in r's
// X-Request-Id header and in the response's.
func (p *Proxies) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := RequestID(r)
		r.Header.Set(RequestIDHeader, id)
		w.Header().Set(RequestIDHeader, id)
		if !p.Empty() {
			if c := p.ClientAddr(r); c.IsValid() && c.String() != r.RemoteAddr {
				ctx := context.WithValue(r.Context(), peerKey{}, r.RemoteAddr)
				r = r.WithContext(ctx)
				r.RemoteAddr = c.String()
			}
		}
		next.ServeHTTP(w, r)
	})
}
