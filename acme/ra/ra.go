// Package ra is the ACME front-end's registration authority: it decides
// on orders (identifier policy, authorization reuse, profiles), runs
// challenge validations through the VA, finalizes orders through the
// enrollment pipeline, revokes certificates and answers renewal
// information. It knows nothing of HTTP or JWS; the WFE authenticates
// callers and hands the RA their account.
package ra

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/qpki/qpki/acme/va"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
)

// Config shapes the RA's decisions.
type Config struct {
	// Profiles are the qpki profiles offered over ACME; the first is the
	// default of orders that name none.
	Profiles []string
	// Lifetimes of orders and of pending and valid authorizations.
	OrderLifetime        time.Duration
	PendingAuthzLifetime time.Duration
	ValidAuthzLifetime   time.Duration
	// ChallengeWait and FinalizeWait bound how long a challenge or
	// finalize request waits for the outcome before answering
	// "processing".
	ChallengeWait time.Duration
	FinalizeWait  time.Duration
	// CAARecheckAge is how old an authorization's CAA check may be at
	// finalize before CAA is checked again (8 hours: the Baseline
	// Requirements' window).
	CAARecheckAge time.Duration
	// MaxIdentifiers bounds the identifiers of one order
	// (rejectedIdentifier beyond).
	MaxIdentifiers int
	// MaxPendingAuthzs bounds an account's pending authorizations
	// (rateLimited beyond, as Boulder's limit of the same name).
	MaxPendingAuthzs int
	// MaxValidations bounds validations in flight.
	MaxValidations int
	Log            *slog.Logger
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.OrderLifetime, 7*24*time.Hour)
	set(&c.PendingAuthzLifetime, 7*24*time.Hour)
	set(&c.ValidAuthzLifetime, 30*24*time.Hour)
	set(&c.ChallengeWait, 5*time.Second)
	set(&c.FinalizeWait, 5*time.Second)
	set(&c.CAARecheckAge, 8*time.Hour)
	if c.MaxIdentifiers <= 0 {
		c.MaxIdentifiers = 100
	}
	if c.MaxPendingAuthzs <= 0 {
		c.MaxPendingAuthzs = 100
	}
	if c.MaxValidations <= 0 {
		c.MaxValidations = 256
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// RA is the registration authority of one CA.
type RA struct {
	cfg Config
	st  store.ACMEStore
	svc *enroll.Service
	va  *va.VA
	now func() time.Time

	valMu    sync.Mutex
	inflight map[string]*validation // authz/challenge → validation
	valSem   chan struct{}
	wg       sync.WaitGroup

	settleMu sync.Mutex
	toSettle map[string]string // order id → certificate serial

	chainMu    sync.Mutex
	chainCache map[string]chainEntry

	// owners maps certificate serials to the account that ordered them,
	// a fact that never changes once the certificate is recorded: it
	// saves a download two store reads.
	owners *ownerCache
}

// New returns an RA. Each profile must exist and be a leaf profile.
func New(cfg Config, st store.ACMEStore, svc *enroll.Service, v *va.VA) (*RA, error) {
	cfg.defaults()
	if len(cfg.Profiles) == 0 {
		return nil, fmt.Errorf("acme: no profile to offer")
	}
	ra := &RA{cfg: cfg, st: st, svc: svc, va: v, now: time.Now,
		inflight: map[string]*validation{}, toSettle: map[string]string{}, valSem: make(chan struct{}, cfg.MaxValidations), chainCache: map[string]chainEntry{},
		owners: newOwnerCache(ownerCacheSize)}
	for _, name := range cfg.Profiles {
		p, err := ra.profile(name)
		if err != nil {
			return nil, fmt.Errorf("acme profile %s: %w", name, err)
		}
		if p.IsCA() {
			return nil, fmt.Errorf("acme profile %s is a CA profile", name)
		}
	}
	return ra, nil
}

// Wait waits for the validations in flight (at shutdown).
func (ra *RA) Wait() { ra.wg.Wait() }

// Profiles describes the offered profiles by name, for the directory.
func (ra *RA) Profiles() map[string]string {
	out := map[string]string{}
	for _, name := range ra.cfg.Profiles {
		desc := name
		if p, err := ra.profile(name); err == nil && p.Description != "" {
			desc = p.Description
		}
		out[name] = desc
	}
	return out
}

// profile loads a profile through the CA, which keeps it parsed (and
// looks at its override file once a second at most).
func (ra *RA) profile(name string) (*profile.Profile, error) { return ra.svc.CA.Profile(name) }

func (ra *RA) offers(name string) bool {
	for _, p := range ra.cfg.Profiles {
		if p == name {
			return true
		}
	}
	return false
}
