package wfe

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/pkg/store"
)

// Algorithms accepted for account keys (RFC 8555 §6.2 asks for ES256 and
// EdDSA at least).
var sigAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.EdDSA}

func algNames() []string {
	out := make([]string, len(sigAlgs))
	for i, a := range sigAlgs {
		out[i] = string(a)
	}
	return out
}

// keyMode says how a request's signer is named.
type keyMode int

const (
	byKID    keyMode = iota // an existing account, by URL
	byJWK                   // a key in the request (newAccount)
	byKIDJWK                // either (revokeCert)
)

// signed is an authenticated POST.
type signed struct {
	payload []byte
	// postAsGet is an empty payload (RFC 8555 §6.3).
	postAsGet bool
	// acct is the signing account (kid requests), jwk the signing key.
	acct *store.ACMEAccount
	jwk  *jose.JSONWebKey
	// thumbprint of jwk.
	thumbprint string
}

// verify authenticates a POST as RFC 8555 §6.2-6.5 require: a flattened
// JWS with one signature, a protected header with an accepted alg, the
// request URL, a fresh nonce, and exactly one of jwk and kid. The nonce
// is redeemed only once the signature holds.
func (w *WFE) verify(q *request, mode keyMode) (*signed, *probs.Problem) {
	ct, _, _ := mime.ParseMediaType(q.r.Header.Get("Content-Type"))
	if ct != mediaJOSE {
		return nil, probs.New(probs.TypeMalformed, http.StatusUnsupportedMediaType, "the Content-Type must be %s", mediaJOSE)
	}
	body, prob := w.readBody(q)
	if prob != nil {
		return nil, prob
	}
	jws, prob := parseFlattened(body)
	if prob != nil {
		return nil, prob
	}
	hdr := jws.Signatures[0].Protected
	url, _ := hdr.ExtraHeaders["url"].(string)
	if url == "" {
		return nil, probs.Malformed("the JWS protected header has no url")
	}
	// The request URL with its query: the orders list pages by ?cursor=.
	if want := q.url(q.r.URL.RequestURI()); url != want {
		return nil, probs.Unauthorized("the JWS url %q is not the request URL %q", clipStr(url), clipStr(want))
	}
	s := &signed{}
	switch {
	case hdr.JSONWebKey != nil && hdr.KeyID != "":
		return nil, probs.Malformed("the JWS protected header has both jwk and kid")
	case hdr.JSONWebKey != nil:
		if mode == byKID {
			return nil, probs.Malformed("this resource takes requests signed by an account (kid), not a jwk")
		}
		if prob := checkKey(hdr.JSONWebKey, hdr.Algorithm); prob != nil {
			return nil, prob
		}
		s.jwk = hdr.JSONWebKey
		t, err := core.Thumbprint(s.jwk)
		if err != nil {
			return nil, probs.BadPublicKey("%v", err)
		}
		s.thumbprint = t
	case hdr.KeyID != "":
		if mode == byJWK {
			return nil, probs.Malformed("this resource takes requests signed by a jwk, not a kid")
		}
		ca, prob := w.lookupKID(q, hdr.KeyID)
		if prob != nil {
			return nil, prob
		}
		if prob := checkKey(ca.key, hdr.Algorithm); prob != nil {
			return nil, prob
		}
		s.acct, s.jwk, s.thumbprint = ca.acct, ca.key, ca.acct.Thumbprint
	default:
		return nil, probs.Malformed("the JWS protected header has neither jwk nor kid")
	}
	payload, err := jws.Verify(s.jwk)
	if err != nil {
		return nil, probs.Malformed("the JWS signature does not verify with the %s", keyName(s))
	}
	if hdr.Nonce == "" {
		return nil, probs.BadNonce("the JWS protected header has no nonce")
	}
	if !w.nonces.Use(hdr.Nonce) {
		return nil, probs.BadNonce("the nonce %q is unknown, used or expired", clipStr(hdr.Nonce))
	}
	if s.acct != nil && s.acct.Status != store.ACMEValid {
		return nil, probs.Unauthorized("the account is %s", s.acct.Status)
	}
	s.payload, s.postAsGet = payload, len(payload) == 0
	return s, nil
}

func keyName(s *signed) string {
	if s.acct != nil {
		return "account key"
	}
	return "jwk of the request"
}

// parseFlattened parses a flattened JWS JSON serialization and nothing
// else: no compact form, no "signatures" array, no unprotected header
// (RFC 8555 §6.2). Other members are ignored (RFC 7515 §7.2.1). With the
// members checked, go-jose parses the three parts as a compact JWS, which
// saves it decoding the outer JSON a second time.
func parseFlattened(body []byte) (*jose.JSONWebSignature, *probs.Problem) {
	var raw struct {
		Protected  *string         `json:"protected"`
		Payload    *string         `json:"payload"`
		Signature  *string         `json:"signature"`
		Header     json.RawMessage `json:"header"`
		Signatures json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, probs.Malformed("the body is not a JWS in flattened JSON serialization: %v", err)
	}
	switch {
	case raw.Signatures != nil:
		return nil, probs.Malformed("the JWS must have exactly one signature, in flattened serialization")
	case raw.Header != nil:
		return nil, probs.Malformed("the JWS must not have an unprotected header")
	case raw.Protected == nil || *raw.Protected == "":
		return nil, probs.Malformed("the JWS has no protected header")
	case raw.Payload == nil:
		return nil, probs.Malformed("the JWS has no payload")
	case raw.Signature == nil:
		return nil, probs.Malformed("the JWS has no signature")
	}
	for _, part := range []string{*raw.Protected, *raw.Payload, *raw.Signature} {
		if strings.ContainsAny(part, ". \t\r\n") {
			return nil, probs.Malformed("the JWS parts must be base64url")
		}
	}
	jws, err := jose.ParseSignedCompact(*raw.Protected+"."+*raw.Payload+"."+*raw.Signature, sigAlgs)
	if err != nil {
		var ua *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &ua) {
			p := probs.BadSignatureAlgorithm("the JWS algorithm %q is not accepted", clipStr(string(ua.Got)))
			p.Algorithms = algNames()
			return nil, p
		}
		return nil, probs.Malformed("the JWS does not parse: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, probs.Malformed("the JWS must have exactly one signature")
	}
	return jws, nil
}

// checkKey accepts account keys of sound size whose type fits alg: RSA of
// 2048 to 8192 bits, the NIST curves with their ES algorithm, Ed25519.
func checkKey(k *jose.JSONWebKey, alg string) *probs.Problem {
	if k == nil || !k.Valid() || !k.IsPublic() {
		return probs.BadPublicKey("the JWK is not a valid public key")
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if n := pub.N.BitLen(); n < 2048 || n > 8192 {
			return probs.BadPublicKey("RSA keys must have 2048 to 8192 bits, not %d", n)
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return probs.BadPublicKey("the RSA public exponent is unsound")
		}
		if alg != string(jose.RS256) {
			return badAlg(alg, "an RSA key")
		}
	case *ecdsa.PublicKey:
		want := map[elliptic.Curve]jose.SignatureAlgorithm{elliptic.P256(): jose.ES256, elliptic.P384(): jose.ES384, elliptic.P521(): jose.ES512}[pub.Curve]
		if want == "" {
			return probs.BadPublicKey("unsupported elliptic curve")
		}
		if alg != string(want) {
			return badAlg(alg, "a "+pub.Curve.Params().Name+" key")
		}
	case ed25519.PublicKey:
		if alg != string(jose.EdDSA) {
			return badAlg(alg, "an Ed25519 key")
		}
	default:
		return probs.BadPublicKey("unsupported key type %T", k.Key)
	}
	return nil
}

func badAlg(alg, key string) *probs.Problem {
	p := probs.BadSignatureAlgorithm("algorithm %q does not fit %s", clipStr(alg), key)
	p.Algorithms = algNames()
	return p
}

// lookupKID finds the account a kid (its URL) names.
func (w *WFE) lookupKID(q *request, kid string) (*cachedAccount, *probs.Problem) {
	prefix := q.url(accountPath)
	id, ok := strings.CutPrefix(kid, prefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return nil, probs.Malformed("the kid %q is not an account URL of this server", clipStr(kid))
	}
	if c, ok := w.cachedAccount(id); ok {
		return c, nil
	}
	a, err := w.st.Account(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, probs.AccountDoesNotExist("no account %s", clipStr(id))
	}
	if err != nil {
		return nil, probs.ServerInternal("%v", err)
	}
	key := new(jose.JSONWebKey)
	if err := key.UnmarshalJSON(a.Key); err != nil {
		return nil, probs.ServerInternal("the stored account key does not parse: %v", err)
	}
	w.cacheAccount(a, key)
	return &cachedAccount{acct: a, key: key}, nil
}

func clipStr(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
