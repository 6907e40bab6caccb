package est

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/qpki/qpki/acme/ratelimit"
)

// Defaults for the EST rate limits (Options.RateIP, RatePrincipal).
const (
	DefaultRateIP        = "20/s:40"
	DefaultRatePrincipal = "100/m:300"
)

// limits are EST's per-client token buckets: every request per client
// address, enrollments per authenticated principal. A client over one is
// answered 429 with Retry-After.
type limits struct {
	addr, who *ratelimit.Limiter
	exempt    *ratelimit.Exempt
	names     []string // exempt principals ("user:NAME", "cert:SHA256")
}

func newLimits(o Options) *limits {
	l := &limits{addr: ratelimit.New(o.RateIP), who: ratelimit.New(o.RatePrincipal), exempt: ratelimit.ParseExempt(o.RateExempt)}
	for _, e := range o.RateExempt {
		if _, err := netip.ParsePrefix(e); err != nil {
			if _, err := netip.ParseAddr(e); err != nil {
				l.names = append(l.names, e)
			}
		}
	}
	return l
}

// clientKey is the rate-limit key of a request's client address (which
// the edge set from a trusted proxy's headers): ratelimit.IPKey, so an
// IPv6 client counts by its /64.
func clientKey(r *http.Request) (netip.Addr, string) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, host
	}
	return a.Unmap(), ratelimit.IPKey(a)
}

func (l *limits) allowAddr(w http.ResponseWriter, r *http.Request) bool {
	a, key := clientKey(r)
	if a.IsValid() && l.exempt.IP(a) {
		return true
	}
	ok, wait := l.addr.Allow(key, time.Now())
	if !ok {
		tooMany(w, wait, "too many EST requests from %s", key)
	}
	return ok
}

func (l *limits) allowPrincipal(w http.ResponseWriter, p *principal) bool {
	id := p.id()
	if slices.Contains(l.names, id) {
		return true
	}
	ok, wait := l.who.Allow(id, time.Now())
	if !ok {
		tooMany(w, wait, "too many enrollments by this client")
	}
	return ok
}

func tooMany(w http.ResponseWriter, wait time.Duration, format string, args ...any) {
	w.Header().Set("Retry-After", fmt.Sprint(max(1, int(math.Ceil(wait.Seconds())))))
	httpError(w, http.StatusTooManyRequests, format, args...)
}
