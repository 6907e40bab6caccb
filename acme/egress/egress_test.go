package egress

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSpecialPurpose(t *testing.T) {
	p := New()
	for addr, block := range map[string]string{
		"0.1.2.3":         "0.0.0.0/8",
		"0.0.0.0":         "0.0.0.0/32",
		"10.1.2.3":        "10.0.0.0/8",
		"100.64.0.1":      "100.64.0.0/10",
		"100.127.255.254": "100.64.0.0/10",
		"127.0.0.1":       "127.0.0.0/8",
		"127.255.0.9":     "127.0.0.0/8",
		"169.254.169.254": "169.254.0.0/16", // cloud metadata
		"172.16.0.1":      "172.16.0.0/12",
		"172.31.255.255":  "172.16.0.0/12",
		"192.0.0.170":     "192.0.0.170/32",
		"192.0.0.77":      "192.0.0.0/24",
		"192.0.2.1":       "192.0.2.0/24",
		"192.88.99.1":     "192.88.99.0/24",
		"192.168.1.1":     "192.168.0.0/16",
		"198.18.0.1":      "198.18.0.0/15",
		"198.19.255.1":    "198.18.0.0/15",
		"198.51.100.7":    "198.51.100.0/24",
		"203.0.113.9":     "203.0.113.0/24",
		"224.0.0.251":     "224.0.0.0/4",
		"239.255.255.250": "224.0.0.0/4",
		"240.0.0.1":       "240.0.0.0/4",
		"255.255.255.255": "255.255.255.255/32",
		// IPv4-mapped forms are the IPv4 address they map.
		"::ffff:127.0.0.1":       "127.0.0.0/8",
		"::ffff:169.254.169.254": "169.254.0.0/16",
		"::ffff:10.0.0.1":        "10.0.0.0/8",

		"::1":                  "::1/128",
		"::":                   "::/128",
		"::10.0.0.1":           "::/3", // IPv4-compatible, deprecated
		"::8.8.8.8":            "::/3",
		"64:ff9b::a00:1":       "64:ff9b::/96",
		"64:ff9b::808:808":     "64:ff9b::/96",
		"64:ff9b:1::1":         "64:ff9b:1::/48",
		"100::1":               "100::/64",
		"2001::1":              "2001::/32", // Teredo
		"2001:2::1":            "2001:2::/48",
		"2001:db8::1":          "2001:db8::/32",
		"2001:1ff::1":          "2001::/23",
		"2002:a00:1::1":        "2002::/16", // 6to4 of 10.0.0.1
		"2002:808:808::1":      "2002::/16",
		"3fff::1":              "3fff::/20",
		"5f00::1":              "5f00::/16",
		"fc00::1":              "fc00::/7",
		"fd12:3456::1":         "fc00::/7",
		"fe80::1":              "fe80::/10",
		"fe80::1%eth0":         "fe80::/10",
		"fec0::1":              "8000::/1", // site-local, deprecated
		"ff02::1":              "ff00::/8",
		"4000::1":              "4000::/2",
		"fd00:ec2::254":        "fc00::/7",
		"2620:4f:8000::1":      "2620:4f:8000::/48",
		"::ffff:0:0":           "0.0.0.0/32",
		"::ffff:192.168.0.100": "192.168.0.0/16",
	} {
		a := netip.MustParseAddr(addr)
		err := p.Check(a)
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Errorf("%s: allowed (%v), want refused as in %s", addr, err, block)
			continue
		}
		if re.Block.Prefix.String() != block {
			t.Errorf("%s: refused as in %s, want %s", addr, re.Block.Prefix, block)
		}
		if !strings.Contains(err.Error(), a.WithZone("").String()) {
			t.Errorf("%s: %q does not name the address", addr, err)
		}
	}
	for _, addr := range []string{"8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.32.0.1", "198.20.0.1",
		"223.255.255.255", "::ffff:8.8.8.8", "2001:4860:4860::8888", "2606:4700::1111", "2001:200::1", "3000::1"} {
		if err := p.Check(netip.MustParseAddr(addr)); err != nil {
			t.Errorf("%s: %v, want allowed", addr, err)
		}
	}
}

func TestAllow(t *testing.T) {
	allow, err := ParsePrefixes([]string{"10.1.0.0/16", " 127.0.0.1 ", "fd00::/8", "::ffff:192.168.7.0/120", "64:ff9b::/96", ""})
	if err != nil {
		t.Fatal(err)
	}
	p := New(allow...)
	for addr, ok := range map[string]bool{
		"10.1.2.3": true, "10.2.0.1": false, "127.0.0.1": true, "127.0.0.2": false, "::ffff:127.0.0.1": true,
		"fd00::1": true, "fc00::1": false, "192.168.7.9": true, "192.168.8.1": false,
		// An allowed NAT64 prefix leads only to allowed IPv4 addresses.
		"64:ff9b::808:808": true, "64:ff9b::a01:203": true, "64:ff9b::a02:1": false, "64:ff9b::a9fe:a9fe": false,
	} {
		if err := p.Check(netip.MustParseAddr(addr)); (err == nil) != ok {
			t.Errorf("%s: %v, want allowed %v", addr, err, ok)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "::ffff:10.0.0.0/8"} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestControlRefusesAtConnect: the Control function stops the connection
// itself, whatever the caller checked before: a listener on a refused
// address is never reached.
func TestControlRefusesAtConnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	d := net.Dialer{Control: New().Control, Timeout: 5 * time.Second}
	_, err = d.Dial("tcp", l.Addr().String())
	var re *RefusedError
	if !errors.As(err, &re) || re.Addr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("dial: %v, want refused 127.0.0.1", err)
	}
	ok := net.Dialer{Control: New(netip.MustParsePrefix("127.0.0.1/32")).Control, Timeout: 5 * time.Second}
	c, err := ok.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("allowed dial: %v", err)
	}
	c.Close()
	// The allowed connection was accepted; wait for the accept loop to
	// count it so the refused one is known not to have been.
	for accepted.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d connections accepted, want only the allowed one", n)
	}
}
