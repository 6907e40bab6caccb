package ra

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/egress"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
)

// OrderRequest is a newOrder payload, decoded.
type OrderRequest struct {
	Identifiers []store.ACMEIdentifier
	NotBefore   time.Time
	NotAfter    time.Time
	Profile     string
	// Replaces is an ARI certificate identifier (RFC 9773 §5).
	Replaces string
}

// reuseMargin is how long a valid authorization must still live to be
// reused by a new order.
const reuseMargin = 24 * time.Hour

// NewOrder checks a new order against the policy of its profile and
// records it, reusing the account's live authorizations.
func (ra *RA) NewOrder(ctx context.Context, acct *store.ACMEAccount, req OrderRequest) (*OrderState, *probs.Problem) {
	now := ra.now().UTC()
	name := req.Profile
	if name == "" {
		name = ra.cfg.Profiles[0]
	} else if !ra.offers(name) {
		return nil, probs.InvalidProfile("profile %q is not offered (see the directory's meta.profiles)", clip(name))
	}
	p, err := ra.profile(name)
	if err != nil {
		return nil, probs.ServerInternal("profile %s: %v", name, err)
	}
	if len(req.Identifiers) == 0 {
		return nil, probs.Malformed("an order needs at least one identifier")
	}
	if len(req.Identifiers) > ra.cfg.MaxIdentifiers {
		return nil, probs.RejectedIdentifier("an order may have at most %d identifiers", ra.cfg.MaxIdentifiers)
	}
	type want struct {
		id       store.ACMEIdentifier
		wildcard bool
	}
	var wants []want
	seen := map[string]bool{}
	var subs []probs.Subproblem
	var firstType string
	for _, raw := range req.Identifiers {
		id, wildcard, prob := core.NormalizeIdentifier(raw)
		if prob == nil {
			prob = ra.checkAddress(id)
		}
		if prob == nil {
			prob = ra.checkIdentifier(p, id, wildcard)
		}
		if prob != nil {
			subs = append(subs, prob.Subproblem(raw))
			if firstType == "" {
				firstType = strings.TrimPrefix(prob.Type, probs.NS)
			} else if firstType != strings.TrimPrefix(prob.Type, probs.NS) {
				firstType = probs.TypeCompound
			}
			continue
		}
		key := id.Type + ":" + core.Display(id, wildcard)
		if !seen[key] {
			seen[key] = true
			wants = append(wants, want{id, wildcard})
		}
	}
	if len(subs) > 0 {
		top := probs.New(firstType, 400, "%d of the order's identifiers cannot be issued for", len(subs))
		if len(subs) == 1 {
			top.Detail = subs[0].Detail
		}
		return nil, top.With(subs...)
	}
	if !req.NotBefore.IsZero() {
		return nil, probs.Malformed("notBefore is not supported: certificates are valid from the time they are signed")
	}
	if !req.NotAfter.IsZero() {
		if prob := ra.checkNotAfter(p, req.NotAfter, now); prob != nil {
			return nil, prob
		}
	}
	o := &store.ACMEOrder{ID: core.NewID(), AccountID: acct.ID, Status: store.ACMEPending, Profile: name,
		NotAfter: req.NotAfter.UTC().Truncate(time.Second), Created: now, Expires: expiry(now, ra.cfg.OrderLifetime)}
	if req.Replaces != "" {
		ids := make([]store.ACMEIdentifier, len(wants))
		for i, w := range wants {
			ids[i] = w.id
		}
		if prob := ra.checkReplaces(acct, req.Replaces, ids); prob != nil {
			return nil, prob
		}
		o.Replaces = req.Replaces
	}
	var authzs, fresh []*store.ACMEAuthz
	for _, w := range wants {
		o.Identifiers = append(o.Identifiers, store.ACMEIdentifier{Type: w.id.Type, Value: core.Display(w.id, w.wildcard)})
		a, err := ra.st.LatestAuthz(acct.ID, w.id, w.wildcard)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, probs.ServerInternal("looking up authorizations: %v", err)
		}
		if a != nil && reusable(a, now) {
			authzs = append(authzs, a)
		} else {
			a = ra.newAuthz(acct.ID, w.id, w.wildcard, now)
			fresh = append(fresh, a)
			authzs = append(authzs, a)
		}
		o.Authzs = append(o.Authzs, a.ID)
		if a.Expires.Before(o.Expires) {
			o.Expires = a.Expires
		}
	}
	if prob := ra.checkPending(acct, len(fresh), now); prob != nil {
		return nil, prob
	}
	if err := ra.st.CreateOrder(o, fresh); err != nil {
		if errors.Is(err, store.ErrAlreadyReplaced) {
			return nil, probs.AlreadyReplaced("the certificate %s is already being replaced by another order", clip(req.Replaces))
		}
		return nil, probs.ServerInternal("recording the order: %v", err)
	}
	return &OrderState{Order: o, Status: o.CurrentStatus(authzs, now), Authzs: authzs}, nil
}

// checkPending refuses an order whose new authorizations would take the
// account beyond MaxPendingAuthzs pending ones: each costs a validation,
// and an account that never completes them only loads the VA.
func (ra *RA) checkPending(acct *store.ACMEAccount, fresh int, now time.Time) *probs.Problem {
	if fresh == 0 {
		return nil
	}
	limit := ra.cfg.MaxPendingAuthzs
	n, err := ra.st.PendingAuthzs(acct.ID, now, limit)
	if err != nil {
		return probs.ServerInternal("counting pending authorizations: %v", err)
	}
	if n+fresh > limit {
		return probs.RateLimited("the account has %d pending authorizations and the order needs %d more; at most %d may be pending: complete or deactivate some first", n, fresh, limit)
	}
	return nil
}

// reusable: a valid authorization with a day left, or a pending one.
func reusable(a *store.ACMEAuthz, now time.Time) bool {
	switch a.CurrentStatus(now) {
	case store.ACMEValid:
		return a.Expires.After(now.Add(reuseMargin))
	case store.ACMEPending:
		return true
	}
	return false
}

func (ra *RA) newAuthz(account string, id store.ACMEIdentifier, wildcard bool, now time.Time) *store.ACMEAuthz {
	a := &store.ACMEAuthz{ID: core.NewID(), AccountID: account, Identifier: id, Wildcard: wildcard,
		Status: store.ACMEPending, Created: now, Expires: expiry(now, ra.cfg.PendingAuthzLifetime)}
	token := core.NewToken() // one token for all challenges, as Boulder does
	for _, t := range core.ChallengeTypes(id, wildcard) {
		a.Challenges = append(a.Challenges, store.ACMEChallenge{ID: shortID(), Type: t, Token: token, Status: store.ACMEPending})
	}
	return a
}

// expiry is now plus a lifetime, to the second: what the JSON objects
// show is then exactly when they expire.
func expiry(now time.Time, lifetime time.Duration) time.Time {
	return now.Add(lifetime).Truncate(time.Second)
}

func shortID() string { return core.NewID()[:11] }

// checkIdentifier asks the profile whether it would put the identifier in
// a certificate: the dns_names or ip_addresses variable's constraints
// (allowed suffixes, wildcards, networks) decide.
func (ra *RA) checkIdentifier(p *profile.Profile, id store.ACMEIdentifier, wildcard bool) *probs.Problem {
	varName := profile.VarDNSNames
	if id.Type == core.IdentIP {
		varName = profile.VarIPAddresses
	}
	if p.Var(varName) == nil {
		return probs.RejectedIdentifier("profile %s issues no %s identifiers", p.Name, id.Type)
	}
	if _, err := p.ResolveJSON(map[string]any{varName: []string{core.Display(id, wildcard)}}); err != nil {
		var ve *profile.VarError
		if errors.As(err, &ve) {
			err = ve.Err
		}
		return probs.RejectedIdentifier("profile %s will not issue for %s: %v", p.Name, core.Display(id, wildcard), err)
	}
	return nil
}

// checkAddress refuses ip identifiers in special-purpose networks (the
// VA would not connect there, and the Baseline Requirements forbid
// certificates for reserved addresses), unless the operator allows them.
func (ra *RA) checkAddress(id store.ACMEIdentifier) *probs.Problem {
	if id.Type != core.IdentIP {
		return nil
	}
	a, err := netip.ParseAddr(id.Value)
	if err != nil {
		return probs.Malformed("invalid IP address %q", clip(id.Value))
	}
	var re *egress.RefusedError
	if err := ra.va.CheckAddress(a); errors.As(err, &re) {
		return probs.RejectedIdentifier("%s is a special-purpose address, in %s: not issued for", a, re.Block)
	}
	return nil
}

// checkNotAfter accepts a requested notAfter that the profile's validity
// variable allows and the CA certificate covers.
func (ra *RA) checkNotAfter(p *profile.Profile, notAfter, now time.Time) *probs.Problem {
	if p.Var(profile.VarValidity) == nil {
		return probs.Malformed("profile %s does not let clients choose notAfter", p.Name)
	}
	if !notAfter.After(now) {
		return probs.Malformed("notAfter is in the past")
	}
	if _, err := p.ResolveJSON(map[string]any{profile.VarValidity: validityFor(p, notAfter, now).String()}); err != nil {
		var ve *profile.VarError
		if errors.As(err, &ve) {
			err = ve.Err
		}
		return probs.Malformed("notAfter %s: %v", notAfter.UTC().Format(time.RFC3339), err)
	}
	if c, err := ra.svc.CA.Certificate(""); err == nil && notAfter.After(c.NotAfter) {
		return probs.Malformed("notAfter %s is after the CA certificate expires (%s)", notAfter.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// validityFor is the profile validity that ends a certificate signed now
// at notAfter: the profile starts it at now minus its backdate, truncated
// to the second, and ends it validity minus one second later.
func validityFor(p *profile.Profile, notAfter, now time.Time) time.Duration {
	start := now.Add(-p.Backdate).Truncate(time.Second)
	return notAfter.Truncate(time.Second).Sub(start) + time.Second
}

// OrderState is an order as a client sees it now: its status computed
// from its authorizations and its signing job, which is the source of
// truth for a finalized order (nothing is written to the ACME store
// between finalize and valid).
type OrderState struct {
	Order  *store.ACMEOrder
	Status string
	Authzs []*store.ACMEAuthz
	// CertSerial is the certificate of a valid order.
	CertSerial string
	// Error explains an invalid order.
	Error *probs.Problem
}

// Order returns an order of the account in its current state.
func (ra *RA) Order(ctx context.Context, acct *store.ACMEAccount, id string) (*OrderState, *probs.Problem) {
	o, err := ra.st.Order(id)
	if prob := lookupProblem(err, "order"); prob != nil {
		return nil, prob
	}
	if o.AccountID != acct.ID {
		return nil, probs.NotFound("no such order")
	}
	return ra.state(o)
}

// lookupProblem answers a failed store lookup of a resource: 404 when
// the store says it does not exist, a server error (which a client
// retries) when the store could not answer, as during a NATS leader
// election under --store jetstream.
func lookupProblem(err error, what string) *probs.Problem {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return probs.NotFound("no such %s", what)
	}
	return probs.ServerInternal("looking up the %s: %v", what, err)
}

// jobID is the signing job of an order, the same whichever request
// finalizes it.
func (ra *RA) jobID(orderID string) string {
	return enroll.JobID(enroll.QueueName(ra.svc.CA), jobKeyPrefix+orderID)
}

// jobKeyPrefix starts the idempotency key of an order's signing job.
const jobKeyPrefix = "acme-order/"

func (ra *RA) state(o *store.ACMEOrder) (*OrderState, *probs.Problem) {
	now := ra.now()
	st := &OrderState{Order: o, CertSerial: o.CertSerial}
	authzs, err := ra.st.Authzs(o.Authzs)
	switch {
	case err == nil:
		st.Authzs = authzs
		st.Status = o.CurrentStatus(authzs, now)
	case errors.Is(err, store.ErrNotFound):
		st.Status = store.ACMEInvalid // its authorizations are gone: long expired
	default:
		return nil, probs.ServerInternal("%v", err)
	}
	if st.Status == store.ACMEPending || (st.Status == store.ACMEValid && st.CertSerial != "") {
		st.Error = orderError(st, now)
		return st, nil
	}
	// Ready, or finalized (even if its authorizations expired since):
	// the job tells.
	job, err := ra.svc.Job(ra.jobID(o.ID))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, probs.ServerInternal("%v", err)
	case job.State == store.JobQueued:
		st.Status = store.ACMEProcessing
	case job.State == store.JobDone:
		st.Status, st.CertSerial = store.ACMEValid, job.Serial
		ra.settled(o.ID, job.Serial)
	case job.State == store.JobFailed:
		st.Status, st.Error = store.ACMEInvalid, probs.ServerInternal("signing failed: %s", job.Error)
	}
	if st.Error == nil {
		st.Error = orderError(st, now)
	}
	return st, nil
}

// orderError is the problem of an invalid order: its own, or that of the
// authorization that failed.
func orderError(st *OrderState, now time.Time) *probs.Problem {
	o := st.Order
	if p := probs.Parse(o.Error); p != nil {
		return p
	}
	if st.Status != store.ACMEInvalid {
		return nil
	}
	if !now.Before(o.Expires) && o.Status == store.ACMEPending {
		return probs.Malformed("the order expired")
	}
	for _, a := range st.Authzs {
		switch a.CurrentStatus(now) {
		case store.ACMEInvalid:
			for _, c := range a.Challenges {
				if p := probs.Parse(c.Error); p != nil {
					return p.With(p.Subproblem(a.Identifier))
				}
			}
			return probs.Unauthorized("authorization for %s failed", core.Display(a.Identifier, a.Wildcard))
		case store.ACMEExpired, store.ACMEDeactivated, store.ACMERevoked:
			return probs.Unauthorized("authorization for %s is %s", core.Display(a.Identifier, a.Wildcard), a.CurrentStatus(now))
		}
	}
	return nil
}

// AccountOrders lists an account's orders, leaving out the invalid ones
// (RFC 8555 §7.1.2.1).
func (ra *RA) AccountOrders(acct *store.ACMEAccount, cursor string, limit int) ([]*store.ACMEOrder, string, *probs.Problem) {
	var out []*store.ACMEOrder
	for {
		ids, next, err := ra.st.AccountOrders(acct.ID, cursor, limit-len(out))
		if err != nil {
			return nil, "", probs.ServerInternal("%v", err)
		}
		for _, id := range ids {
			o, err := ra.st.Order(id)
			if err != nil {
				continue
			}
			if st, prob := ra.state(o); prob == nil && st.Status != store.ACMEInvalid {
				out = append(out, o)
			}
		}
		if next == "" || len(out) >= limit {
			return out, next, nil
		}
		cursor = next
	}
}

// DeactivateAuthz deactivates a pending or valid authorization (RFC 8555
// §7.5.2).
func (ra *RA) DeactivateAuthz(acct *store.ACMEAccount, id string) (*store.ACMEAuthz, *probs.Problem) {
	if _, prob := ra.Authz(acct, id); prob != nil {
		return nil, prob
	}
	now := ra.now()
	var refused *probs.Problem
	a, err := ra.st.UpdateAuthz(id, func(a *store.ACMEAuthz) error {
		refused = nil
		switch a.CurrentStatus(now) {
		case store.ACMEPending, store.ACMEValid:
			a.Status = store.ACMEDeactivated
		default:
			refused = probs.Malformed("an authorization that is %s cannot be deactivated", a.CurrentStatus(now))
		}
		return nil
	})
	if err != nil {
		return nil, probs.ServerInternal("%v", err)
	}
	if refused != nil {
		return nil, refused
	}
	return a, nil
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
