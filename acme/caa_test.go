package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	xacme "golang.org/x/crypto/acme"

	"github.com/qpki/qpki/acme"
	"github.com/qpki/qpki/pkg/store"
)

func (d *testDNS) caaQueries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, q := range d.queries {
		if strings.HasPrefix(q, "CAA ") {
			n++
		}
	}
	return n
}

// TestCAARecheckAtFinalize: CAA records that change after validation
// stop issuance once the authorization's CAA check is older than 8 hours
// (a caa problem per identifier), and not before; a check that passes
// again at finalize is recorded. The age is made real by moving the
// stored check time back while the server is down.
func TestCAARecheckAtFinalize(t *testing.T) {
	var cfg acme.Config
	e := newEnv(t, func(c *acme.Config) { cfg = *c })
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := e.clientWithKey(key, true)
	names := []string{"a.recheck.example", "b.recheck.example"}
	allow := &dns.CAA{Tag: "issue", Value: "qpki.test"}
	deny := &dns.CAA{Tag: "issue", Value: "other-ca.test"}
	setCAA := func(rr *dns.CAA) {
		for _, n := range names {
			e.dns.setCAA(n, rr)
		}
	}
	setCAA(allow)
	o := order(t, c, xacme.DomainIDs(names...), http01(answers))
	var authzIDs []string
	for _, u := range o.AuthzURLs {
		authzIDs = append(authzIDs, path.Base(u))
	}

	// The records change after validation; a fresh check stands.
	setCAA(deny)
	before := e.dns.caaQueries()
	e.issue(t, c, o, "", names...)
	if n := e.dns.caaQueries(); n != before {
		t.Fatalf("%d CAA queries at finalize of a fresh check, want none", n-before)
	}

	// Nine hours later (as the store sees it).
	e.stop()
	st, err := store.OpenACME(filepath.Join(e.dataDir, store.ACMEFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range authzIDs {
		a, err := st.UpdateAuthz(id, func(a *store.ACMEAuthz) error {
			if a.CAAChecked.IsZero() {
				return errors.New("no CAA check recorded at validation")
			}
			a.CAAChecked = a.CAAChecked.Add(-9 * time.Hour)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if a.CurrentStatus(time.Now()) != store.ACMEValid {
			t.Fatalf("authorization %s is %s", id, a.CurrentStatus(time.Now()))
		}
	}
	st.Close()
	e.start(cfg)
	c = e.clientWithKey(key, false)

	finalize := func() error {
		o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs(names...))
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != xacme.StatusReady {
			t.Fatalf("order is %s, want ready on the reused authorizations", o.Status)
		}
		csr, _ := csrFor(t, "", names...)
		_, _, err = c.CreateOrderCert(ctx, o.FinalizeURL, csr, true)
		return err
	}
	err = finalize()
	acmeErr(t, err, http.StatusForbidden, "caa")
	var ae *xacme.Error
	errors.As(err, &ae)
	var got []string
	for _, sp := range ae.Subproblems {
		if sp.Type != "urn:ietf:params:acme:error:caa" || sp.Identifier == nil || !strings.Contains(sp.Detail, "forbid") {
			t.Errorf("subproblem %+v, want a caa problem about an identifier", sp)
			continue
		}
		got = append(got, sp.Identifier.Value)
	}
	slices.Sort(got)
	if !slices.Equal(got, names) {
		t.Fatalf("caa subproblems for %v, want %v", got, names)
	}

	// CAA allows again: checked, passed, issued, and recorded, so that
	// for the next 8 hours a change of the records does not matter.
	setCAA(allow)
	if err := finalize(); err != nil {
		t.Fatalf("finalize with CAA allowing again: %v", err)
	}
	setCAA(deny)
	if err := finalize(); err != nil {
		t.Fatalf("finalize after a recorded recheck: %v", err)
	}
}

// TestCAAOff: --acme-caa=false skips CAA, with a warning at start.
func TestCAAOff(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	e := newEnv(t, func(c *acme.Config) {
		c.DisableCAA = true
		c.Log = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	})
	mu.Lock()
	warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "CAA checking is off")
	mu.Unlock()
	if !warned {
		t.Fatalf("no warning at start: %q", logs.String())
	}
	answers := &sync.Map{}
	e.serveHTTP01(answers)
	e.dns.setCAA("off.example", &dns.CAA{Tag: "issue", Value: "other-ca.test"})
	c := e.client()
	o := order(t, c, xacme.DomainIDs("off.example"), http01(answers))
	e.issue(t, c, o, "", "off.example")
	if n := e.dns.caaQueries(); n != 0 {
		t.Fatalf("%d CAA queries with CAA off", n)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
