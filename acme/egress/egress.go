// Package egress decides which addresses ACME validation may connect to,
// and which ip identifiers may be ordered: none of the IANA IPv4 and IPv6
// special-purpose address registries (loopback, private use, link local,
// shared address space, unique local, documentation, benchmarking, the
// translation and tunnelling prefixes, reserved), nor multicast or the
// rest of the IPv6 space the IETF keeps reserved, unless the operator
// allows a network (--acme-validation-allow, --acme-resolve-to).
//
// The check runs on the address a socket is about to connect to (a
// net.Dialer Control function), after every name lookup, so that a name
// whose records change between lookup and connect (DNS rebinding) cannot
// reach a refused address either.
package egress

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// Block is a special-purpose address block and where it is defined.
type Block struct {
	Prefix netip.Prefix
	Name   string
	RFC    string
}

func (b Block) String() string { return fmt.Sprintf("%s (%s, %s)", b.Prefix, b.Name, b.RFC) }

func block(prefix, name, rfc string) Block {
	return Block{Prefix: netip.MustParsePrefix(prefix), Name: name, RFC: rfc}
}

// blocks are the entries of the IANA IPv4 and IPv6 special-purpose address
// registries (all of them, the globally reachable anycast ones too: the
// Baseline Requirements' "reserved" means listed there), plus multicast
// and the IPv6 space outside 2000::/3 that the IPv6 address space
// registry keeps reserved. Sorted most specific first, so the name given
// is the closest block.
var blocks = sortBlocks([]Block{
	// IPv4 special-purpose registry.
	block("0.0.0.0/8", "this network", "RFC 791"),
	block("0.0.0.0/32", "this host on this network", "RFC 1122"),
	block("10.0.0.0/8", "private use", "RFC 1918"),
	block("100.64.0.0/10", "shared address space (CGNAT)", "RFC 6598"),
	block("127.0.0.0/8", "loopback", "RFC 1122"),
	block("169.254.0.0/16", "link local", "RFC 3927"),
	block("172.16.0.0/12", "private use", "RFC 1918"),
	block("192.0.0.0/24", "IETF protocol assignments", "RFC 6890"),
	block("192.0.0.0/29", "IPv4 service continuity prefix", "RFC 7335"),
	block("192.0.0.8/32", "IPv4 dummy address", "RFC 7600"),
	block("192.0.0.9/32", "port control protocol anycast", "RFC 7723"),
	block("192.0.0.10/32", "TURN anycast", "RFC 8155"),
	block("192.0.0.170/32", "NAT64/DNS64 discovery", "RFC 8880"),
	block("192.0.0.171/32", "NAT64/DNS64 discovery", "RFC 8880"),
	block("192.0.2.0/24", "documentation (TEST-NET-1)", "RFC 5737"),
	block("192.31.196.0/24", "AS112-v4", "RFC 7535"),
	block("192.52.193.0/24", "AMT", "RFC 7450"),
	block("192.88.99.0/24", "deprecated 6to4 relay anycast", "RFC 7526"),
	block("192.88.99.2/32", "6a44 relay anycast", "RFC 6751"),
	block("192.168.0.0/16", "private use", "RFC 1918"),
	block("192.175.48.0/24", "direct delegation AS112 service", "RFC 7534"),
	block("198.18.0.0/15", "benchmarking", "RFC 2544"),
	block("198.51.100.0/24", "documentation (TEST-NET-2)", "RFC 5737"),
	block("203.0.113.0/24", "documentation (TEST-NET-3)", "RFC 5737"),
	block("240.0.0.0/4", "reserved", "RFC 1112"),
	block("255.255.255.255/32", "limited broadcast", "RFC 919"),
	// IPv4 multicast (IPv4 address space registry).
	block("224.0.0.0/4", "multicast", "RFC 5771"),

	// IPv6 special-purpose registry.
	block("::1/128", "loopback", "RFC 4291"),
	block("::/128", "unspecified", "RFC 4291"),
	block("::ffff:0:0/96", "IPv4-mapped", "RFC 4291"),
	block("64:ff9b::/96", "IPv4/IPv6 translation (NAT64)", "RFC 6052"),
	block("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", "RFC 8215"),
	block("100::/64", "discard only", "RFC 6666"),
	block("100:0:0:1::/64", "dummy IPv6 prefix", "RFC 9780"),
	block("2001::/23", "IETF protocol assignments", "RFC 2928"),
	block("2001::/32", "Teredo", "RFC 4380"),
	block("2001:1::1/128", "port control protocol anycast", "RFC 7723"),
	block("2001:1::2/128", "TURN anycast", "RFC 8155"),
	block("2001:1::3/128", "DNS-SD service registration protocol anycast", "RFC 9665"),
	block("2001:2::/48", "benchmarking", "RFC 5180"),
	block("2001:3::/32", "AMT", "RFC 7450"),
	block("2001:4:112::/48", "AS112-v6", "RFC 7535"),
	block("2001:10::/28", "deprecated ORCHID", "RFC 4843"),
	block("2001:20::/28", "ORCHIDv2", "RFC 7343"),
	block("2001:30::/28", "drone remote ID entity tags", "RFC 9374"),
	block("2001:db8::/32", "documentation", "RFC 3849"),
	block("2002::/16", "6to4", "RFC 3056"),
	block("2620:4f:8000::/48", "direct delegation AS112 service", "RFC 7534"),
	block("3fff::/20", "documentation", "RFC 9637"),
	block("5f00::/16", "segment routing (SRv6) SIDs", "RFC 9602"),
	block("fc00::/7", "unique local", "RFC 4193"),
	block("fe80::/10", "link local", "RFC 4291"),
	// IPv6 address space registry: multicast, and everything outside
	// global unicast (2000::/3) that is not named above is reserved by
	// the IETF (this holds the deprecated IPv4-compatible ::/96 and
	// site-local fec0::/10).
	block("ff00::/8", "multicast", "RFC 4291"),
	block("::/3", "reserved by the IETF", "RFC 4291"),
	block("4000::/2", "reserved by the IETF", "RFC 4291"),
	block("8000::/1", "reserved by the IETF", "RFC 4291"),
})

func sortBlocks(bs []Block) []Block {
	slices.SortStableFunc(bs, func(a, b Block) int { return b.Prefix.Bits() - a.Prefix.Bits() })
	return bs
}

// Special returns the closest special-purpose block holding a, if any.
// An IPv4-mapped IPv6 address is looked at as the IPv4 address it is.
func Special(a netip.Addr) (Block, bool) {
	a = a.WithZone("").Unmap()
	for _, b := range blocks {
		if b.Prefix.Contains(a) {
			return b, true
		}
	}
	return Block{}, false
}

// RefusedError is an address validation may not connect to.
type RefusedError struct {
	Addr  netip.Addr
	Block Block
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s is a special-purpose address, in %s, which validation does not connect to", e.Addr, e.Block)
}

// Policy is which addresses are refused: the special-purpose ones, less
// the networks the operator allows.
type Policy struct {
	allow []netip.Prefix
}

// New returns a policy that allows the networks given (in addition to
// every address that is not special-purpose).
func New(allow ...netip.Prefix) *Policy {
	p := &Policy{}
	for _, n := range allow {
		p.allow = append(p.allow, n.Masked())
	}
	return p
}

// ParsePrefixes reads networks in CIDR notation, or single addresses.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		n, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR network", s)
		}
		if n.Addr().Is4In6() {
			if n.Bits() < 96 {
				return nil, fmt.Errorf("%q: an IPv4-mapped network must be at least a /96", s)
			}
			n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-96)
		}
		out = append(out, n.Masked())
	}
	return out, nil
}

// allowed reports whether an allowed network holds a.
func (p *Policy) allowed(a netip.Addr) bool {
	for _, n := range p.allow {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// Check returns a *RefusedError for an address validation may not
// connect to (or an ip identifier that may not be ordered).
func (p *Policy) Check(a netip.Addr) error {
	orig := a
	a = a.WithZone("").Unmap()
	b, special := Special(a)
	if !special {
		return nil
	}
	if p != nil && p.allowed(a) {
		// An allowed translation prefix still reaches only the IPv4
		// addresses that would be allowed themselves.
		if v4, ok := embeddedIPv4(a); ok {
			return p.Check(v4)
		}
		return nil
	}
	return &RefusedError{Addr: orig.WithZone(""), Block: b}
}

// embeddedIPv4 is the IPv4 address that a NAT64 (RFC 6052 well-known
// prefix) or 6to4 (RFC 3056) address leads to.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case netip.MustParsePrefix("64:ff9b::/96").Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case netip.MustParsePrefix("2002::/16").Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// Control is a net.Dialer Control function: it refuses to connect a
// socket to an address the policy refuses. It sees the address the
// kernel is asked to connect to, whatever names led there.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress: cannot parse the address %q", address)
	}
	return p.Check(ap.Addr())
}
