package wfe

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/acme/ra"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/store"
)

// orderJSON is an order object (RFC 8555 §7.1.3), with the profile of the
// profiles extension and the replaces field of RFC 9773.
type orderJSON struct {
	Status         string                 `json:"status"`
	Expires        string                 `json:"expires,omitempty"`
	Identifiers    []store.ACMEIdentifier `json:"identifiers"`
	NotBefore      string                 `json:"notBefore,omitempty"`
	NotAfter       string                 `json:"notAfter,omitempty"`
	Error          *probs.Problem         `json:"error,omitempty"`
	Authorizations []string               `json:"authorizations"`
	Finalize       string                 `json:"finalize"`
	Certificate    string                 `json:"certificate,omitempty"`
	Profile        string                 `json:"profile,omitempty"`
	Replaces       string                 `json:"replaces,omitempty"`
}

// authzJSON is an authorization object (RFC 8555 §7.1.4).
type authzJSON struct {
	Identifier store.ACMEIdentifier `json:"identifier"`
	Status     string               `json:"status"`
	Expires    string               `json:"expires,omitempty"`
	Challenges []challengeJSON      `json:"challenges"`
	Wildcard   bool                 `json:"wildcard,omitempty"`
}

// challengeJSON is a challenge object (RFC 8555 §8).
type challengeJSON struct {
	Type      string         `json:"type"`
	URL       string         `json:"url"`
	Status    string         `json:"status"`
	Token     string         `json:"token"`
	Validated string         `json:"validated,omitempty"`
	Error     *probs.Problem `json:"error,omitempty"`
}

func orderView(q *request, st *ra.OrderState) orderJSON {
	o := st.Order
	v := orderJSON{Status: st.Status, Expires: timeString(o.Expires), Identifiers: o.Identifiers, NotAfter: timeString(o.NotAfter),
		Finalize: q.url(orderPath + o.ID + "/finalize"), Profile: o.Profile, Replaces: o.Replaces, Error: st.Error}
	for _, id := range o.Authzs {
		v.Authorizations = append(v.Authorizations, q.url(authzPath+id))
	}
	if st.Status == store.ACMEValid && st.CertSerial != "" {
		v.Certificate = q.url(certPath + st.CertSerial)
	}
	return v
}

func (w *WFE) authzView(q *request, a *store.ACMEAuthz) authzJSON {
	v := authzJSON{Identifier: a.Identifier, Status: a.CurrentStatus(w.now()), Expires: timeString(a.Expires), Wildcard: a.Wildcard}
	for i := range a.Challenges {
		v.Challenges = append(v.Challenges, challengeView(q, a, &a.Challenges[i]))
	}
	return v
}

func challengeView(q *request, a *store.ACMEAuthz, c *store.ACMEChallenge) challengeJSON {
	return challengeJSON{Type: c.Type, URL: q.url(challengePath + a.ID + "/" + c.ID), Status: c.Status, Token: c.Token,
		Validated: timeString(c.Validated), Error: probs.Parse(c.Error)}
}

// replyOrder writes an order, with Retry-After while it is processing
// (RFC 8555 §7.4).
func replyOrder(q *request, code int, st *ra.OrderState) *probs.Problem {
	q.w.Header().Set("Location", q.url(orderPath+st.Order.ID))
	if st.Status == store.ACMEProcessing {
		q.w.Header().Set("Retry-After", "1")
	}
	return reply(q, code, orderView(q, st))
}

// newOrder creates an order (RFC 8555 §7.4).
func (w *WFE) newOrder(q *request) *probs.Problem {
	s, prob := w.verify(q, byKID)
	if prob != nil {
		return prob
	}
	if !w.exempt(q, s.acct) {
		if ok, wait := w.ordLim.Allow(s.acct.ID, w.now()); !ok {
			return w.rateLimited(q, wait, "too many new orders for this account")
		}
	}
	var req struct {
		Identifiers []store.ACMEIdentifier `json:"identifiers"`
		NotBefore   string                 `json:"notBefore"`
		NotAfter    string                 `json:"notAfter"`
		Profile     string                 `json:"profile"`
		Replaces    string                 `json:"replaces"`
	}
	if err := json.Unmarshal(s.payload, &req); err != nil {
		return probs.Malformed("the newOrder payload does not parse: %v", err)
	}
	or := ra.OrderRequest{Identifiers: req.Identifiers, Profile: req.Profile, Replaces: req.Replaces}
	var err error
	if req.NotBefore != "" {
		if or.NotBefore, err = time.Parse(time.RFC3339, req.NotBefore); err != nil {
			return probs.Malformed("notBefore is not an RFC 3339 date")
		}
	}
	if req.NotAfter != "" {
		if or.NotAfter, err = time.Parse(time.RFC3339, req.NotAfter); err != nil {
			return probs.Malformed("notAfter is not an RFC 3339 date")
		}
	}
	st, prob := w.ra.NewOrder(q.r.Context(), s.acct, or)
	if prob != nil {
		return prob
	}
	return replyOrder(q, http.StatusCreated, st)
}

// order reads an order (POST-as-GET).
func (w *WFE) order(q *request) *probs.Problem {
	s, prob := w.verify(q, byKID)
	if prob != nil {
		return prob
	}
	if !s.postAsGet {
		return probs.Malformed("an order is read with POST-as-GET (an empty payload)")
	}
	st, prob := w.ra.Order(q.r.Context(), s.acct, q.r.PathValue("id"))
	if prob != nil {
		return prob
	}
	return replyOrder(q, http.StatusOK, st)
}

// finalize submits an order's CSR (RFC 8555 §7.4).
func (w *WFE) finalize(q *request) *probs.Problem {
	s, prob := w.verify(q, byKID)
	if prob != nil {
		return prob
	}
	var req struct {
		CSR string `json:"csr"`
	}
	if err := json.Unmarshal(s.payload, &req); err != nil || req.CSR == "" {
		return probs.Malformed("the finalize payload must be {\"csr\": base64url DER}")
	}
	der, err := base64.RawURLEncoding.DecodeString(req.CSR)
	if err != nil {
		return probs.BadCSR("the csr is not base64url (without padding)")
	}
	keyDER := ra.AccountKeyDER(s.jwk.Key)
	st, prob := w.ra.Finalize(q.r.Context(), s.acct, q.accountURL(s.acct.ID), keyDER, q.r.PathValue("id"), der, enroll.RequestID(q.r.Context())) // set by the listener, clean
	if prob != nil {
		return prob
	}
	return replyOrder(q, http.StatusOK, st)
}

// authz reads or deactivates an authorization (RFC 8555 §7.5, §7.5.2).
func (w *WFE) authz(q *request) *probs.Problem {
	s, prob := w.verify(q, byKID)
	if prob != nil {
		return prob
	}
	id := q.r.PathValue("id")
	var a *store.ACMEAuthz
	if s.postAsGet {
		a, prob = w.ra.Authz(s.acct, id)
	} else {
		var req struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(s.payload, &req); err != nil || req.Status != store.ACMEDeactivated {
			return probs.Malformed(`an authorization is read with POST-as-GET or deactivated with {"status": "deactivated"}`)
		}
		a, prob = w.ra.DeactivateAuthz(s.acct, id)
	}
	if prob != nil {
		return prob
	}
	if a.CurrentStatus(w.now()) == store.ACMEPending {
		q.w.Header().Set("Retry-After", "1")
	}
	return reply(q, http.StatusOK, w.authzView(q, a))
}

// challenge reads (POST-as-GET) or starts (a "{}" payload) a challenge
// (RFC 8555 §7.5.1).
func (w *WFE) challenge(q *request) *probs.Problem {
	s, prob := w.verify(q, byKID)
	if prob != nil {
		return prob
	}
	authzID, chalID := q.r.PathValue("authz"), q.r.PathValue("chal")
	var a *store.ACMEAuthz
	var c *store.ACMEChallenge
	if s.postAsGet {
		if a, prob = w.ra.Authz(s.acct, authzID); prob == nil {
			if c = a.Challenge(chalID); c == nil {
				prob = probs.NotFound("no such challenge")
			}
		}
	} else {
		var resp map[string]any
		if err := json.Unmarshal(s.payload, &resp); err != nil {
			return probs.Malformed("the challenge response must be a JSON object ({} for %s, %s and %s)",
				core.ChallengeHTTP01, core.ChallengeDNS01, core.ChallengeTLSALPN01)
		}
		a, c, prob = w.ra.Challenge(q.r.Context(), s.acct, q.accountURL(s.acct.ID), authzID, chalID)
	}
	if prob != nil {
		return prob
	}
	q.w.Header().Add("Link", link(q.url(authzPath+a.ID), "up"))
	if c.Status == store.ACMEProcessing {
		q.w.Header().Set("Retry-After", "1")
	}
	return reply(q, http.StatusOK, challengeView(q, a, c))
}
