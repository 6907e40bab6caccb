package wfe

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/mail"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/eab"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/pkg/store"
)

// accountJSON is an account object (RFC 8555 §7.1.2).
type accountJSON struct {
	Status  string   `json:"status"`
	Contact []string `json:"contact,omitempty"`
	Terms   bool     `json:"termsOfServiceAgreed,omitempty"`
	Orders  string   `json:"orders"`
}

func (q *request) accountURL(id string) string { return q.url(accountPath + id) }

func accountView(q *request, a *store.ACMEAccount) accountJSON {
	return accountJSON{Status: a.Status, Contact: a.Contact, Terms: a.TermsAgreed, Orders: q.accountURL(a.ID) + "/orders"}
}

const maxContacts = 10

// checkContacts accepts mailto: URLs with one plain address each (RFC
// 8555 §7.3: unsupportedContact for other schemes, invalidContact for
// bad addresses).
func checkContacts(cs []string) *probs.Problem {
	if len(cs) > maxContacts {
		return probs.InvalidContact("at most %d contacts", maxContacts)
	}
	for _, c := range cs {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok {
			return probs.UnsupportedContact("contact %q: only mailto: is supported", clipStr(c))
		}
		if addr == "" || len(addr) > 254 || strings.ContainsAny(addr, ",?&%") {
			return probs.InvalidContact("contact %q: want one plain e-mail address", clipStr(c))
		}
		a, err := mail.ParseAddress(addr)
		if err != nil || a.Address != addr || a.Name != "" {
			return probs.InvalidContact("contact %q is not a valid e-mail address", clipStr(c))
		}
		if _, domain, _ := strings.Cut(addr, "@"); !strings.Contains(domain, ".") {
			return probs.InvalidContact("contact %q: the domain is not a public name", clipStr(c))
		}
	}
	return nil
}

// newAccount creates an account or finds the one of the request's key
// (RFC 8555 §7.3, §7.3.1, §7.3.4).
func (w *WFE) newAccount(q *request) *probs.Problem {
	s, prob := w.verify(q, byJWK)
	if prob != nil {
		return prob
	}
	var req struct {
		Contact            []string        `json:"contact"`
		TermsAgreed        bool            `json:"termsOfServiceAgreed"`
		OnlyReturnExisting bool            `json:"onlyReturnExisting"`
		EAB                json.RawMessage `json:"externalAccountBinding"`
	}
	if err := json.Unmarshal(s.payload, &req); err != nil {
		return probs.Malformed("the newAccount payload does not parse: %v", err)
	}
	if a, err := w.st.AccountByThumbprint(s.thumbprint); err == nil {
		if a.Status != store.ACMEValid {
			return probs.Unauthorized("the account of this key is %s", a.Status)
		}
		q.w.Header().Set("Location", q.accountURL(a.ID))
		return reply(q, http.StatusOK, accountView(q, a))
	} else if !errors.Is(err, store.ErrNotFound) {
		return probs.ServerInternal("%v", err)
	}
	if req.OnlyReturnExisting {
		return probs.AccountDoesNotExist("no account has this key")
	}
	if w.cfg.TermsOfService != "" && !req.TermsAgreed {
		return probs.Malformed("the terms of service (%s) must be agreed to", w.cfg.TermsOfService)
	}
	if prob := checkContacts(req.Contact); prob != nil {
		return prob
	}
	keyJSON, err := s.jwk.MarshalJSON()
	if err != nil {
		return probs.BadPublicKey("%v", err)
	}
	a := &store.ACMEAccount{ID: core.NewID(), Key: keyJSON, Thumbprint: s.thumbprint, Contact: req.Contact,
		Status: store.ACMEValid, TermsAgreed: req.TermsAgreed, Created: w.now().UTC()}
	if ip, ok := clientIP(q.r); ok {
		a.CreatedIP = ip.String()
	}
	switch {
	case len(req.EAB) > 0 && string(req.EAB) != "null":
		kid, prob := w.bindExternal(q, req.EAB, s.jwk)
		if prob != nil {
			return prob
		}
		a.EABKeyID = kid
	case w.cfg.EABRequired:
		return probs.ExternalAccountRequired("this server requires an external account binding")
	}
	kid := a.EABKeyID
	a, created, err := w.st.CreateAccount(a) // uses up its EAB key, if any
	switch {
	case errors.Is(err, store.ErrEABUnknown):
		return probs.Unauthorized("unknown external account key id %q", clipStr(kid))
	case errors.Is(err, store.ErrEABUsed):
		return probs.Unauthorized("the external account key %q is already used", clipStr(kid))
	case err != nil:
		return probs.ServerInternal("recording the account: %v", err)
	}
	q.w.Header().Set("Location", q.accountURL(a.ID))
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	return reply(q, status, accountView(q, a))
}

// bindExternal checks an external account binding (RFC 8555 §7.3.4): a
// JWS MACed with the key the operator issued, over the account's JWK,
// for the newAccount URL. The key is used up by the account's creation,
// in the same store write.
func (w *WFE) bindExternal(q *request, raw json.RawMessage, accountKey *jose.JSONWebKey) (string, *probs.Problem) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields["protected"] == nil || fields["payload"] == nil || fields["signature"] == nil ||
		fields["signatures"] != nil || fields["header"] != nil {
		return "", probs.Malformed("externalAccountBinding must be a flattened JWS")
	}
	inner, err := jose.ParseSignedJSON(string(raw), []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512})
	if err != nil {
		return "", probs.Malformed("externalAccountBinding: %v", err)
	}
	hdr := inner.Signatures[0].Protected
	if hdr.KeyID == "" {
		return "", probs.Malformed("externalAccountBinding has no kid")
	}
	if hdr.Nonce != "" {
		return "", probs.Malformed("externalAccountBinding must not have a nonce")
	}
	if u, _ := hdr.ExtraHeaders["url"].(string); u != q.url(newAccountPath) {
		return "", probs.Unauthorized("externalAccountBinding url %q is not %s", clipStr(u), q.url(newAccountPath))
	}
	k, err := w.st.EABKey(hdr.KeyID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", probs.Unauthorized("unknown external account key id %q", clipStr(hdr.KeyID))
	case err != nil:
		return "", probs.ServerInternal("external account binding: %v", err)
	case !k.Used.IsZero():
		return "", probs.Unauthorized("the external account key %q is already used", clipStr(hdr.KeyID))
	}
	mac, err := eab.MACKey(k)
	if err != nil {
		return "", probs.ServerInternal("%v", err)
	}
	payload, err := inner.Verify(mac)
	if err != nil {
		return "", probs.Unauthorized("the externalAccountBinding MAC does not verify")
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(payload); err != nil {
		return "", probs.Malformed("the externalAccountBinding payload is not the account's key")
	}
	t1, err1 := core.Thumbprint(&jwk)
	t2, err2 := core.Thumbprint(accountKey)
	if err1 != nil || err2 != nil || t1 != t2 {
		return "", probs.Malformed("the externalAccountBinding payload is not the account's key")
	}
	return hdr.KeyID, nil
}

// account reads, updates or deactivates an account (RFC 8555 §7.3.2,
// §7.3.6).
func (w *WFE) account(q *request) *probs.Problem {
	s, prob := w.verify(q, byKID)
	if prob != nil {
		return prob
	}
	if q.r.PathValue("id") != s.acct.ID {
		return probs.Unauthorized("the request is signed by another account")
	}
	if s.postAsGet {
		return reply(q, http.StatusOK, accountView(q, s.acct))
	}
	var req struct {
		Contact     *[]string `json:"contact"`
		Status      string    `json:"status"`
		TermsAgreed *bool     `json:"termsOfServiceAgreed"`
	}
	if err := json.Unmarshal(s.payload, &req); err != nil {
		return probs.Malformed("the account payload does not parse: %v", err)
	}
	if req.Status != "" && req.Status != store.ACMEDeactivated && req.Status != store.ACMEValid {
		return probs.Malformed("an account's status can only be set to deactivated")
	}
	if req.Contact != nil {
		if prob := checkContacts(*req.Contact); prob != nil {
			return prob
		}
	}
	a, err := w.st.UpdateAccount(s.acct.ID, func(a *store.ACMEAccount) error {
		if req.Contact != nil {
			a.Contact = *req.Contact
		}
		if req.TermsAgreed != nil && *req.TermsAgreed {
			a.TermsAgreed = true
		}
		if req.Status == store.ACMEDeactivated {
			a.Status = store.ACMEDeactivated
		}
		return nil
	})
	w.forgetAccount(s.acct.ID)
	if err != nil {
		return probs.ServerInternal("%v", err)
	}
	return reply(q, http.StatusOK, accountView(q, a))
}

// accountOrders lists an account's orders, 100 per page (RFC 8555
// §7.1.2.1).
func (w *WFE) accountOrders(q *request) *probs.Problem {
	s, prob := w.verify(q, byKID)
	if prob != nil {
		return prob
	}
	if q.r.PathValue("id") != s.acct.ID {
		return probs.Unauthorized("the request is signed by another account")
	}
	// The store's cursor is binary: it travels as base64url.
	cursor, err := base64.RawURLEncoding.DecodeString(q.r.URL.Query().Get("cursor"))
	if err != nil {
		return probs.Malformed("the orders cursor is not one this server gave")
	}
	orders, next, prob := w.ra.AccountOrders(s.acct, string(cursor), 100)
	if prob != nil {
		return prob
	}
	urls := make([]string, len(orders))
	for i, o := range orders {
		urls[i] = q.url(orderPath + o.ID)
	}
	if next != "" {
		q.w.Header().Add("Link", link(q.accountURL(s.acct.ID)+"/orders?cursor="+base64.RawURLEncoding.EncodeToString([]byte(next)), "next"))
	}
	return reply(q, http.StatusOK, map[string][]string{"orders": urls})
}

// keyChange rolls an account over to a new key (RFC 8555 §7.3.5): the
// outer JWS by the account, the inner by the new key, over the account
// URL and the old key.
func (w *WFE) keyChange(q *request) *probs.Problem {
	s, prob := w.verify(q, byKID)
	if prob != nil {
		return prob
	}
	inner, prob := parseFlattened(s.payload)
	if prob != nil {
		return probs.Malformed("the inner JWS: %s", prob.Detail)
	}
	hdr := inner.Signatures[0].Protected
	if hdr.JSONWebKey == nil || hdr.KeyID != "" {
		return probs.Malformed("the inner JWS must carry the new key as jwk, and no kid")
	}
	if hdr.Nonce != "" {
		return probs.Malformed("the inner JWS must not have a nonce")
	}
	if u, _ := hdr.ExtraHeaders["url"].(string); u != q.url(keyChangePath) {
		return probs.Malformed("the inner JWS url %q is not the outer one", clipStr(u))
	}
	if prob := checkKey(hdr.JSONWebKey, hdr.Algorithm); prob != nil {
		return prob
	}
	payload, err := inner.Verify(hdr.JSONWebKey)
	if err != nil {
		return probs.Malformed("the inner JWS signature does not verify with its jwk")
	}
	var req struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		return probs.Malformed("the keyChange payload does not parse: %v", err)
	}
	if req.Account != q.accountURL(s.acct.ID) {
		return probs.Malformed("the keyChange account %q is not the signer's", clipStr(req.Account))
	}
	var old jose.JSONWebKey
	if err := old.UnmarshalJSON(req.OldKey); err != nil {
		return probs.Malformed("oldKey does not parse: %v", err)
	}
	if t, err := core.Thumbprint(&old); err != nil || t != s.acct.Thumbprint {
		return probs.Malformed("oldKey is not the account's current key")
	}
	newThumb, err := core.Thumbprint(hdr.JSONWebKey)
	if err != nil {
		return probs.BadPublicKey("%v", err)
	}
	if newThumb == s.acct.Thumbprint {
		return probs.Malformed("the new key is the current key")
	}
	newJSON, err := hdr.JSONWebKey.MarshalJSON()
	if err != nil {
		return probs.BadPublicKey("%v", err)
	}
	oldThumb := s.acct.Thumbprint
	a, err := w.st.UpdateAccount(s.acct.ID, func(a *store.ACMEAccount) error {
		if a.Thumbprint != oldThumb {
			return errKeyMoved
		}
		a.Key, a.Thumbprint = newJSON, newThumb
		return nil
	})
	w.forgetAccount(s.acct.ID)
	switch {
	case errors.Is(err, store.ErrConflict):
		q.w.Header().Set("Location", q.accountURL(a.ID))
		return probs.Conflict("the new key already belongs to an account")
	case errors.Is(err, errKeyMoved):
		return probs.Conflict("the account key changed meanwhile")
	case err != nil:
		return probs.ServerInternal("%v", err)
	}
	return reply(q, http.StatusOK, accountView(q, a))
}

var errKeyMoved = errors.New("account key changed meanwhile")
