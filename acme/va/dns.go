package va

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// errNoRecords is a name that exists without records of the type asked,
// or does not exist.
var errNoRecords = errors.New("no records")

// resolver asks one DNS server (--acme-dns-resolver) or, without one, the
// system's resolver: Go's for addresses and TXT, the servers of
// /etc/resolv.conf for what Go cannot ask (CAA).
type resolver struct {
	addr string // host:port; "" for the system resolver
}

// resolvConf is where the system's DNS servers are listed.
var resolvConf = "/etc/resolv.conf"

// systemServers are the system's DNS servers (host:port), read at each
// use (a small file, and it may change while serve runs).
func systemServers() ([]string, error) {
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("reading the system's DNS servers: %v", err)
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no DNS server", resolvConf)
	}
	return out, nil
}

// query sends one question with recursion desired to the resolver's
// server, or each system server in turn until one answers.
func (r resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	if r.addr != "" {
		return r.queryServer(ctx, r.addr, name, qtype)
	}
	servers, err := systemServers()
	if err != nil {
		return nil, err
	}
	for _, s := range servers {
		var rrs []dns.RR
		if rrs, err = r.queryServer(ctx, s, name, qtype); err == nil || errors.Is(err, errNoRecords) || ctx.Err() != nil {
			return rrs, err
		}
	}
	return nil, err
}

// queryServer asks one server, over UDP and, when the answer is
// truncated, again over TCP.
func (r resolver) queryServer(ctx context.Context, server, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(4096, false)
	c := &dns.Client{Net: "udp"}
	resp, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, fmt.Errorf("DNS query for %s %s failed: %v", dns.TypeToString[qtype], name, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, errNoRecords
	default:
		return nil, fmt.Errorf("DNS query for %s %s: %s", dns.TypeToString[qtype], name, dns.RcodeToString[resp.Rcode])
	}
	var out []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	if len(out) == 0 {
		return nil, errNoRecords
	}
	return out, nil
}

// lookupIP returns a name's addresses, IPv6 first.
func (r resolver) lookupIP(ctx context.Context, name string) ([]netip.Addr, error) {
	if r.addr == "" {
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
		if err != nil {
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound {
				return nil, errNoRecords
			}
			return nil, err
		}
		return addrs, nil
	}
	var out []netip.Addr
	var firstErr error
	for _, t := range []uint16{dns.TypeAAAA, dns.TypeA} {
		rrs, err := r.query(ctx, name, t)
		if err != nil && !errors.Is(err, errNoRecords) && firstErr == nil {
			firstErr = err
		}
		for _, rr := range rrs {
			switch rr := rr.(type) {
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
					out = append(out, a)
				}
			case *dns.A:
				if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
					out = append(out, a)
				}
			}
		}
	}
	if len(out) == 0 {
		if firstErr != nil {
			return nil, firstErr
		}
		return nil, errNoRecords
	}
	return out, nil
}

// lookupTXT returns the TXT strings at name, each record's strings
// joined (RFC 7208 style).
func (r resolver) lookupTXT(ctx context.Context, name string) ([]string, error) {
	if r.addr == "" {
		txts, err := net.DefaultResolver.LookupTXT(ctx, name)
		if err != nil {
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound {
				return nil, errNoRecords
			}
			return nil, err
		}
		return txts, nil
	}
	rrs, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// lookupCAA returns the CAA records at exactly name.
func (r resolver) lookupCAA(ctx context.Context, name string) ([]*dns.CAA, error) {
	rrs, err := r.query(ctx, name, dns.TypeCAA)
	if err != nil {
		return nil, err
	}
	out := make([]*dns.CAA, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.CAA))
	}
	return out, nil
}
