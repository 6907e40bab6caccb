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
//
// A challenge being validated is "processing" in memory only: only the
// outcome is written. After a restart an unfinished challenge is pending
// again, and the client's next POST starts it anew.
func (ra *RA) Challenge(ctx context.Context, acct *store.ACMEAccount, accountURL, authzID, chalID string) (*store.ACMEAuthz, *store.ACMEChallenge, *probs.Problem) {
	a, prob := ra.Authz(acct, authzID)
	if prob != nil {
		return nil, nil, prob
	}
	c := a.Challenge(chalID)
	if c == nil {
		return nil, nil, probs.NotFound("no such challenge")
	}
	if a.CurrentStatus(ra.now()) == store.ACMEPending && c.Status == store.ACMEPending {
		v := ra.validate(a, c, acct.Thumbprint, accountURL)
		t := time.NewTimer(ra.cfg.ChallengeWait)
		select {
		case <-v.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		if after := v.result(); after != nil {
			// The validation's own write: no need to read it back.
			return after, after.Challenge(chalID), nil
		}
		if a, prob = ra.Authz(acct, authzID); prob != nil {
			return nil, nil, prob
		}
	}
	return a, a.Challenge(chalID), nil
}

// validation is a challenge being validated; done is closed when its
// outcome is recorded, authz then holds the authorization as written (nil
// if the write failed or the authorization was settled meanwhile).
type validation struct {
	done  chan struct{}
	authz *store.ACMEAuthz
}

func (v *validation) result() *store.ACMEAuthz {
	select {
	case <-v.done:
		return v.authz
	default:
		return nil
	}
}

// Authz returns an authorization of the account, its challenges being
// validated shown as processing.
func (ra *RA) Authz(acct *store.ACMEAccount, id string) (*store.ACMEAuthz, *probs.Problem) {
	a, err := ra.st.Authz(id)
	if prob := lookupProblem(err, "authorization"); prob != nil {
		return nil, prob
	}
	if a.AccountID != acct.ID {
		return nil, probs.NotFound("no such authorization")
	}
	ra.valMu.Lock()
	for i := range a.Challenges {
		c := &a.Challenges[i]
		if _, busy := ra.inflight[a.ID+"/"+c.ID]; busy && c.Status == store.ACMEPending {
			c.Status = store.ACMEProcessing
		}
	}
	ra.valMu.Unlock()
	return a, nil
}

// validate runs a challenge's validation once at a time.
func (ra *RA) validate(a *store.ACMEAuthz, c *store.ACMEChallenge, thumbprint, accountURL string) *validation {
	key := a.ID + "/" + c.ID
	ra.valMu.Lock()
	if v, ok := ra.inflight[key]; ok {
		ra.valMu.Unlock()
		return v
	}
	v := &validation{done: make(chan struct{})}
	ra.inflight[key] = v
	ra.valMu.Unlock()
	id, wildcard, typ, token, chalID := a.Identifier, a.Wildcard, c.Type, c.Token, c.ID
	ra.wg.Add(1)
	go func() {
		defer ra.wg.Done()
		var written *store.ACMEAuthz
		defer func() {
			ra.valMu.Lock()
			delete(ra.inflight, key)
			ra.valMu.Unlock()
			v.authz = written
			close(v.done)
		}()
		ra.valSem <- struct{}{}
		defer func() { <-ra.valSem }()
		ctx := context.Background()
		prob := ra.va.Validate(ctx, id, typ, token, core.KeyAuthorization(token, thumbprint))
		var caaChecked time.Time
		if prob == nil && id.Type == core.IdentDNS && ra.va.CAAEnabled() {
			caaAt := ra.now().UTC()
			if prob = ra.va.CheckCAA(ctx, id.Value, wildcard, accountURL, typ); prob == nil {
				caaChecked = caaAt.Truncate(time.Second)
			}
		}
		now := ra.now().UTC()
		settled := false
		after, err := ra.st.UpdateAuthz(a.ID, func(a *store.ACMEAuthz) error {
			settled = false
			c := a.Challenge(chalID)
			if c == nil || c.Status != store.ACMEPending || a.CurrentStatus(now) != store.ACMEPending {
				settled = true // meanwhile (another challenge, a deactivation)
				return nil
			}
			if prob != nil {
				c.Status, c.Error = store.ACMEInvalid, prob.JSON()
				a.Status = store.ACMEInvalid
				return nil
			}
			c.Status, c.Validated = store.ACMEValid, now.Truncate(time.Second)
			a.Status, a.Expires, a.CAAChecked = store.ACMEValid, expiry(now, ra.cfg.ValidAuthzLifetime), caaChecked
			return nil
		})
		if err != nil {
			ra.cfg.Log.Error("acme: recording a validation", "authz", a.ID, "error", err)
		} else if !settled {
			written = after
		}
		if prob != nil {
			ra.cfg.Log.Info("acme: validation failed", "authz", a.ID, "identifier", id.Value, "challenge", typ, "problem", prob.Error())
		}
	}()
	return v
}
