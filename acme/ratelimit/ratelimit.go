// Package ratelimit keeps token buckets per key (a client IP, an
// account) and an exempt list.
package ratelimit

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limit is a sustained rate with a burst: Burst tokens at most, refilled
// at Rate per second. A zero Rate is no limit.
type Limit struct {
	Rate  float64
	Burst int
}

// ParseLimit reads "RATE[/s|/m|/h][:BURST]", e.g. "20/s:40" or "300/h";
// "0" or "" is no limit. The burst defaults to the rate per second,
// rounded up, and at least 1.
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return Limit{}, nil
	}
	rateText, burstText, hasBurst := strings.Cut(s, ":")
	per := time.Second
	if r, unit, ok := strings.Cut(rateText, "/"); ok {
		rateText = r
		switch unit {
		case "s":
		case "m":
			per = time.Minute
		case "h":
			per = time.Hour
		default:
			return Limit{}, fmt.Errorf("rate limit %q: unit must be s, m or h", s)
		}
	}
	n, err := strconv.ParseFloat(rateText, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return Limit{}, fmt.Errorf("rate limit %q: want RATE[/s|/m|/h][:BURST]", s)
	}
	l := Limit{Rate: n / per.Seconds()}
	l.Burst = max(int(math.Ceil(l.Rate)), 1)
	if hasBurst {
		b, err := strconv.Atoi(burstText)
		if err != nil || b < 1 {
			return Limit{}, fmt.Errorf("rate limit %q: the burst must be a positive integer", s)
		}
		l.Burst = b
	}
	if n == 0 {
		return Limit{}, nil
	}
	return l, nil
}

func (l Limit) String() string {
	if l.Rate == 0 {
		return "0"
	}
	return strconv.FormatFloat(l.Rate, 'g', -1, 64) + "/s:" + strconv.Itoa(l.Burst)
}

// Limiter is a set of token buckets with the same limit.
type Limiter struct {
	limit   Limit
	mu      sync.Mutex
	buckets map[string]*bucket
	calls   int
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter; a zero limit allows everything.
func New(l Limit) *Limiter { return &Limiter{limit: l, buckets: map[string]*bucket{}} }

// Allow takes a token from key's bucket. When it is empty, it returns
// false and how long until a token is back.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil || l.limit.Rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls++; l.calls%4096 == 0 || len(l.buckets) > 1024 && now.Sub(l.swept) > 10*time.Second {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: float64(l.limit.Burst), last: now}
		l.buckets[key] = b
	}
	b.refill(l.limit, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.limit.Rate * float64(time.Second))
	return false, wait
}

func (b *bucket) refill(l Limit, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(l.Burst), b.tokens+el*l.Rate)
		b.last = now
	}
}

// sweep forgets full buckets: they are what a new bucket would be.
func (l *Limiter) sweep(now time.Time) {
	l.swept = now
	for k, b := range l.buckets {
		b.refill(l.limit, now)
		if b.tokens >= float64(l.limit.Burst) {
			delete(l.buckets, k)
		}
	}
}

// IPKey is the bucket key for a client address: an IPv4 address itself,
// an IPv6 address its /64. One subscriber gets at least a /64 and can
// rotate through 2^64 addresses in it, so a per-address key would be no
// limit at all; IPv4-mapped IPv6 addresses count as the IPv4 address.
// Every per-client limiter (ACME, EST) keys its buckets with it.
func IPKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a.WithZone(""), 64).Masked().String()
}

// Exempt lists clients no limit applies to: IP networks and account ids.
type Exempt struct {
	nets     []netip.Prefix
	accounts map[string]bool
}

// ParseExempt reads entries that are IP addresses, CIDR networks or
// account ids (anything else).
func ParseExempt(entries []string) *Exempt {
	e := &Exempt{accounts: map[string]bool{}}
	for _, s := range entries {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			e.nets = append(e.nets, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			e.nets = append(e.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		} else {
			e.accounts[s] = true
		}
	}
	return e
}

// IP reports whether an address is exempt.
func (e *Exempt) IP(a netip.Addr) bool {
	if e == nil {
		return false
	}
	a = a.Unmap()
	for _, p := range e.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Account reports whether an account id is exempt.
func (e *Exempt) Account(id string) bool { return e != nil && e.accounts[id] }
