package acme_test

import (
	"net/http"
	"testing"

	"github.com/qpki/qpki/acme"
)

// TestOrderLimits: an order has at most MaxIdentifiers identifiers
// (rejectedIdentifier), and an account at most MaxPendingAuthzs pending
// authorizations (rateLimited); orders that reuse pending authorizations
// need no new ones, and a deactivated one no longer counts.
func TestOrderLimits(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.MaxIdentifiers, c.MaxPendingAuthzs = 2, 3 })
	c := e.raw(t)
	c.register()
	newOrder := func(names ...string) response {
		return c.post(c.url("newOrder"), map[string]any{"identifiers": dnsIDs(names...)})
	}
	newOrder("a.limit.example", "b.limit.example", "c.limit.example").wantProblem(t, http.StatusBadRequest, "rejectedIdentifier")

	_, ab := c.newOrder("a.limit.example", "b.limit.example")
	c.newOrder("c.limit.example")
	newOrder("d.limit.example").wantProblem(t, http.StatusTooManyRequests, "rateLimited")
	// Reusing the pending ones is fine.
	c.newOrder("b.limit.example", "a.limit.example")
	// Another account has its own count.
	other := e.raw(t)
	other.register()
	other.newOrder("d.limit.example")
	// A deactivated authorization no longer counts.
	authz := ab["authorizations"].([]any)[0].(string)
	if r := c.post(authz, map[string]any{"status": "deactivated"}); r.status != http.StatusOK {
		t.Fatalf("deactivation: HTTP %d %s", r.status, r.body)
	}
	c.newOrder("d.limit.example")
}
