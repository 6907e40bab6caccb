package ra

import (
	"context"
	"sync"
	"time"

	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/pkg/store"
)

// caaParallel bounds the CAA lookups one finalize runs at once.
const caaParallel = 16

// recheckCAA checks CAA again, at finalize, for each dns authorization
// whose last CAA check is older than CAARecheckAge, so that nothing is
// signed on a CAA check older than the Baseline Requirements' 8 hours
// (an authorization is reused for 30 days). A check that passes is
// recorded on the authorization; any that fails refuses the finalize
// with a caa problem, one subproblem per identifier.
func (ra *RA) recheckCAA(ctx context.Context, authzs []*store.ACMEAuthz, accountURL string) *probs.Problem {
	if !ra.va.CAAEnabled() {
		return nil
	}
	now := ra.now().UTC()
	var (
		mu   sync.Mutex
		subs []probs.Subproblem
		wg   sync.WaitGroup
		sem  = make(chan struct{}, caaParallel)
	)
	for _, a := range authzs {
		if a.Identifier.Type != core.IdentDNS || now.Sub(a.CAAChecked) < ra.cfg.CAARecheckAge {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			at := ra.now().UTC().Truncate(time.Second)
			prob := ra.va.CheckCAA(ctx, a.Identifier.Value, a.Wildcard, accountURL, validatedBy(a))
			if prob != nil {
				id := store.ACMEIdentifier{Type: a.Identifier.Type, Value: core.Display(a.Identifier, a.Wildcard)}
				mu.Lock()
				subs = append(subs, probs.Sub(probs.TypeCAA, id, "%s", prob.Detail))
				mu.Unlock()
				return
			}
			if _, err := ra.st.UpdateAuthz(a.ID, func(a *store.ACMEAuthz) error {
				if a.CAAChecked.Before(at) {
					a.CAAChecked = at
				}
				return nil
			}); err != nil {
				// The check passed; the next finalize checks again.
				ra.cfg.Log.Error("acme: recording a CAA check", "authz", a.ID, "error", err)
			}
		}()
	}
	wg.Wait()
	switch len(subs) {
	case 0:
		return nil
	case 1:
		return probs.CAA("%s", subs[0].Detail).With(subs...)
	}
	return probs.CAA("CAA forbids issuance for %d of the order's identifiers", len(subs)).With(subs...)
}

// validatedBy is the challenge type that validated an authorization
// (for CAA validationmethods).
func validatedBy(a *store.ACMEAuthz) string {
	for _, c := range a.Challenges {
		if c.Status == store.ACMEValid {
			return c.Type
		}
	}
	return ""
}
