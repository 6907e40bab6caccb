package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]Limit{
		"":         {},
		"0":        {},
		"10":       {Rate: 10, Burst: 10},
		"20/s:40":  {Rate: 20, Burst: 40},
		"60/m":     {Rate: 1, Burst: 1},
		"3600/h:5": {Rate: 1, Burst: 5},
		"0.5/s":    {Rate: 0.5, Burst: 1},
	} {
		got, err := ParseLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"x", "10/d", "10:0", "-1", "10:x", "NaN", "Inf"} {
		if _, err := ParseLimit(bad); err == nil {
			t.Errorf("ParseLimit(%q) accepted", bad)
		}
	}
}

func TestAllow(t *testing.T) {
	l := New(Limit{Rate: 2, Burst: 3})
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := l.Allow("a", now)
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("over the burst: ok %v, wait %v", ok, wait)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("buckets are not per key")
	}
	if ok, _ := l.Allow("a", now.Add(wait)); !ok {
		t.Fatal("no token after the wait")
	}
	if ok, _ := New(Limit{}).Allow("a", now); !ok {
		t.Fatal("a zero limit refused")
	}
	// Full buckets are forgotten.
	for i := 0; i < 5000; i++ {
		l.Allow(string(rune(i)), now)
	}
	l.Allow("x", now.Add(time.Hour))
	if len(l.buckets) > 4096 {
		t.Fatalf("%d idle buckets kept", len(l.buckets))
	}
}

func TestExempt(t *testing.T) {
	e := ParseExempt([]string{"127.0.0.0/8", "2001:db8::1", "acct42", " "})
	for ip, want := range map[string]bool{"127.0.0.1": true, "::ffff:127.1.2.3": true, "2001:db8::1": true, "2001:db8::2": false, "10.0.0.1": false} {
		if e.IP(netip.MustParseAddr(ip)) != want {
			t.Errorf("IP(%s) != %v", ip, want)
		}
	}
	if !e.Account("acct42") || e.Account("acct43") {
		t.Error("account exemptions")
	}
	var none *Exempt
	if none.IP(netip.MustParseAddr("127.0.0.1")) || none.Account("x") {
		t.Error("a nil list exempts")
	}
}

// TestIPKey: IPv6 clients share a bucket per /64, IPv4 ones per address.
func TestIPKey(t *testing.T) {
	same := [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
		{"2001:db8:1:2::1", "2001:db8:1:2:abcd::9"},
		{"192.0.2.1", "::ffff:192.0.2.1"},
	}
	differ := [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
		{"192.0.2.1", "192.0.2.2"},
		{"::ffff:192.0.2.1", "::ffff:192.0.2.2"},
	}
	for _, p := range same {
		if a, b := IPKey(netip.MustParseAddr(p[0])), IPKey(netip.MustParseAddr(p[1])); a != b {
			t.Errorf("%s → %s, %s → %s: want one key", p[0], a, p[1], b)
		}
	}
	for _, p := range differ {
		if a, b := IPKey(netip.MustParseAddr(p[0])), IPKey(netip.MustParseAddr(p[1])); a == b {
			t.Errorf("%s and %s share the key %s", p[0], p[1], a)
		}
	}
	if k := IPKey(netip.MustParseAddr("2001:db8:1:2:3:4:5:6")); k != "2001:db8:1:2::/64" {
		t.Errorf("key %s", k)
	}
	// A limiter keyed so stops a client that walks its /64.
	l := New(Limit{Rate: 1, Burst: 2})
	now := time.Unix(1000, 0)
	allowed := 0
	for i := 1; i <= 10; i++ {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		if ok, _ := l.Allow(IPKey(a), now); ok {
			allowed++
		}
	}
	if allowed != 2 {
		t.Errorf("%d of 10 addresses of one /64 allowed, want the burst of 2", allowed)
	}
}
