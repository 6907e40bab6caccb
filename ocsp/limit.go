package ocsp

import (
	"context"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/qpki/qpki/acme/ratelimit"
)

// limiter bounds, per client address, the signatures its requests cause.
type limiter struct {
	mu      sync.Mutex
	rate    rate.Limit
	burst   int
	clients map[string]*client
	swept   time.Time
}

type client struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, clients: map[string]*client{}, swept: time.Now()}
}

// maxClients bounds the table; past it, idle clients are forgotten.
const maxClients = 100_000

// allow reports whether the client of r may cause one more signature.
func (l *limiter) allow(r *http.Request) bool {
	host := r.RemoteAddr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		host = ratelimit.IPKey(ap.Addr()) // an IPv6 client's /64
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.clients) >= maxClients || now.Sub(l.swept) > 10*time.Minute {
		for k, c := range l.clients {
			if now.Sub(c.seen) > time.Minute {
				delete(l.clients, k)
			}
		}
		l.swept = now
	}
	c := l.clients[host]
	if c == nil {
		if len(l.clients) >= maxClients {
			return false
		}
		c = &client{l: rate.NewLimiter(l.rate, l.burst)}
		l.clients[host] = c
	}
	c.seen = now
	return c.l.AllowN(now, 1)
}

// flight lets one request sign what concurrent requests for the same
// answer wait for.
type flight struct {
	mu sync.Mutex
	m  map[string]*call
}

type call struct {
	done chan struct{}
	e    *entry
	err  error
}

func (f *flight) do(ctx context.Context, key string, fn func() (*entry, error)) (*entry, error) {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]*call{}
	}
	if c, ok := f.m[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.e, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	f.m[key] = c
	f.mu.Unlock()
	c.e, c.err = fn()
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
	close(c.done)
	return c.e, c.err
}
