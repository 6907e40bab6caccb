package ra

import (
	"context"
	"time"

	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/pkg/store"
)

// Challenge starts a challenge of the account's authorization (RFC 8555
// §7.5.1) unless it already started or the authorization is settled, and
// waits a little for the outcome. accountURL is the account's URL, as CAA
// accounturi parameters name it.
func (ra *RA) Challenge(ctx context.Context, acct *store.ACMEAccount, accountURL, authzID, chalID string) (*store.ACMEAuthz, *store.ACMEChallenge, *probs.Problem) {
	a, prob := ra.Authz(acct, authzID)
	if prob != nil {
		return nil, nil, prob
	}
	if a.Challenge(chalID) == nil {
		return nil, nil, probs.NotFound("no such challenge")
	}
	now := ra.now()
	if a.CurrentStatus(now) == store.ACMEPending {
		var started bool
		a, err := ra.st.UpdateAuthz(authzID, func(a *store.ACMEAuthz) error {
			started = false
			c := a.Challenge(chalID)
			if a.CurrentStatus(now) == store.ACMEPending && c.Status == store.ACMEPending {
				c.Status, started = store.ACMEProcessing, true
			}
			return nil
		})
		if err != nil {
			return nil, nil, probs.ServerInternal("%v", err)
		}
		if c := a.Challenge(chalID); started || c.Status == store.ACMEProcessing {
			// A challenge left processing by a restart is taken up again.
			done := ra.validate(a, c, acct.Thumbprint, accountURL)
			t := time.NewTimer(ra.cfg.ChallengeWait)
			select {
			case <-done:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	a, err := ra.st.Authz(authzID)
	if err != nil {
		return nil, nil, probs.ServerInternal("%v", err)
	}
	return a, a.Challenge(chalID), nil
}

// validate runs a challenge's validation once at a time and returns a
// channel closed when it is recorded.
func (ra *RA) validate(a *store.ACMEAuthz, c *store.ACMEChallenge, thumbprint, accountURL string) <-chan struct{} {
	key := a.ID + "/" + c.ID
	ra.valMu.Lock()
	if done, ok := ra.inflight[key]; ok {
		ra.valMu.Unlock()
		return done
	}
	done := make(chan struct{})
	ra.inflight[key] = done
	ra.valMu.Unlock()
	id, wildcard, typ, token, chalID := a.Identifier, a.Wildcard, c.Type, c.Token, c.ID
	ra.wg.Add(1)
	go func() {
		defer ra.wg.Done()
		defer func() {
			ra.valMu.Lock()
			delete(ra.inflight, key)
			ra.valMu.Unlock()
			close(done)
		}()
		ra.valSem <- struct{}{}
		defer func() { <-ra.valSem }()
		ctx := context.Background()
		prob := ra.va.Validate(ctx, id, typ, token, core.KeyAuthorization(token, thumbprint))
		if prob == nil && id.Type == core.IdentDNS {
			prob = ra.va.CheckCAA(ctx, id.Value, wildcard, accountURL, typ)
		}
		now := ra.now().UTC()
		_, err := ra.st.UpdateAuthz(a.ID, func(a *store.ACMEAuthz) error {
			c := a.Challenge(chalID)
			if c == nil || c.Status != store.ACMEProcessing || a.CurrentStatus(now) != store.ACMEPending {
				return nil
			}
			if prob != nil {
				c.Status, c.Error = store.ACMEInvalid, prob.JSON()
				a.Status = store.ACMEInvalid
				return nil
			}
			c.Status, c.Validated = store.ACMEValid, now.Truncate(time.Second)
			a.Status, a.Expires = store.ACMEValid, now.Add(ra.cfg.ValidAuthzLifetime)
			return nil
		})
		if err != nil {
			ra.cfg.Log.Error("acme: recording a validation", "authz", a.ID, "error", err)
		}
		if prob != nil {
			ra.cfg.Log.Info("acme: validation failed", "authz", a.ID, "identifier", id.Value, "challenge", typ, "problem", prob.Error())
		}
	}()
	return done
}
