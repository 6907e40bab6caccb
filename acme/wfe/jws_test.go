package wfe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/qpki/qpki/pkg/store"
)

func signTest(t testing.TB, payload string) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithHeader("url", "https://x/acme/new-account").WithHeader("nonce", "n"))
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := s.Sign([]byte(payload))
	return obj.FullSerialize()
}

func TestParseFlattened(t *testing.T) {
	good := signTest(t, `{}`)
	if _, p := parseFlattened([]byte(good)); p != nil {
		t.Fatal(p)
	}
	// Unknown members are ignored (RFC 7515 §7.2.1).
	extra := good[:len(good)-1] + `,"x":1}`
	if _, p := parseFlattened([]byte(extra)); p != nil {
		t.Fatal(p)
	}
	for name, body := range map[string]string{
		"not JSON":       "eyJhbGciOiJFUzI1NiJ9.e30.sig",
		"header":         `{"protected":"e30","payload":"","signature":"","header":{"kid":"x"}}`,
		"signatures":     `{"signatures":[],"payload":""}`,
		"no signature":   `{"protected":"e30","payload":""}`,
		"no protected":   `{"payload":"","signature":""}`,
		"dot in payload": `{"protected":"eyJhbGciOiJFUzI1NiJ9","payload":"a.b","signature":""}`,
		"alg none":       `{"protected":"eyJhbGciOiJub25lIn0","payload":"","signature":""}`,
		"bad protected":  `{"protected":"!!","payload":"","signature":""}`,
		"array":          `[]`,
		"unsupported HS": `{"protected":"eyJhbGciOiJIUzI1NiJ9","payload":"","signature":""}`,
	} {
		if _, p := parseFlattened([]byte(body)); p == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseFlattened(f *testing.F) {
	f.Add([]byte(signTest(f, `{}`)))
	f.Add([]byte(signTest(f, ``)))
	f.Add([]byte(`{"protected":"eyJhbGciOiJFUzI1NiJ9","payload":"","signature":""}`))
	f.Add([]byte(`{"protected":"e30","payload":"","signature":"","header":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		jws, p := parseFlattened(body)
		if p == nil && (jws == nil || len(jws.Signatures) != 1) {
			t.Fatal("accepted a JWS without exactly one signature")
		}
	})
}

// TestAccountCacheTTL: a cached account is read again from the store
// after accountCacheTTL, so that front-ends sharing a store see each
// other's key changes and deactivations.
func TestAccountCacheTTL(t *testing.T) {
	now := time.Now()
	w := &WFE{accts: map[string]*cachedAccount{}, now: func() time.Time { return now }}
	w.cacheAccount(&store.ACMEAccount{ID: "a1"}, &jose.JSONWebKey{})
	if _, ok := w.cachedAccount("a1"); !ok {
		t.Fatal("a fresh entry is missing")
	}
	now = now.Add(accountCacheTTL)
	if _, ok := w.cachedAccount("a1"); ok {
		t.Fatal("an entry outlived its TTL")
	}
}
