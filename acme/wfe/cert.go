package wfe

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/acme/ra"
)

// certificate downloads a certificate chain (RFC 8555 §7.4.2):
// /acme/cert/{serial} is the default chain, /acme/cert/{serial}/{n} the
// n-th alternate, each announced with Link rel="alternate".
func (w *WFE) certificate(q *request) *probs.Problem {
	s, prob := w.verify(q, byKID)
	if prob != nil {
		return prob
	}
	if !s.postAsGet {
		return probs.Malformed("a certificate is read with POST-as-GET (an empty payload)")
	}
	serial := q.r.PathValue("serial")
	chains, prob := w.ra.Certificate(s.acct, serial)
	if prob != nil {
		return prob
	}
	n := 0
	if alt := q.r.PathValue("alt"); alt != "" {
		i, err := strconv.Atoi(alt)
		if err != nil || i < 1 || i >= len(chains) {
			return probs.NotFound("no such alternate chain")
		}
		n = i
	}
	for i := range chains {
		if i == n {
			continue
		}
		u := q.url(certPath + serial)
		if i > 0 {
			u += "/" + strconv.Itoa(i)
		}
		q.w.Header().Add("Link", link(u, "alternate"))
	}
	q.w.Header().Set("Content-Type", mediaPEM)
	q.w.WriteHeader(http.StatusOK)
	q.w.Write(chains[n])
	return nil
}

// revokeCert revokes a certificate (RFC 8555 §7.6), for its account
// (kid) or for its key (jwk).
func (w *WFE) revokeCert(q *request) *probs.Problem {
	s, prob := w.verify(q, byKIDJWK)
	if prob != nil {
		return prob
	}
	var req struct {
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
	if err := json.Unmarshal(s.payload, &req); err != nil || req.Certificate == "" {
		return probs.Malformed(`the revokeCert payload must be {"certificate": base64url DER, "reason": code}`)
	}
	der, err := base64.RawURLEncoding.DecodeString(req.Certificate)
	if err != nil {
		return probs.Malformed("the certificate is not base64url (without padding)")
	}
	reason := 0
	if req.Reason != nil {
		reason = *req.Reason
	}
	var certKey []byte
	if s.acct == nil {
		if certKey = ra.AccountKeyDER(s.jwk.Key); certKey == nil {
			return probs.BadPublicKey("the jwk cannot be compared with the certificate's key")
		}
	}
	if prob := w.ra.Revoke(s.acct, certKey, der, reason); prob != nil {
		return prob
	}
	q.w.WriteHeader(http.StatusOK)
	return nil
}

// renewalInfo answers an ARI query (RFC 9773 §4.2).
func (w *WFE) renewalInfo(q *request) *probs.Problem {
	ri, prob := w.ra.RenewalWindow(q.r.Context(), q.r.PathValue("certid"))
	if prob != nil {
		return prob
	}
	q.w.Header().Set("Retry-After", "21600")
	return reply(q, http.StatusOK, map[string]any{
		"suggestedWindow": map[string]string{"start": timeString(ri.Start), "end": timeString(ri.End)},
	})
}
