package acme_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	xacme "golang.org/x/crypto/acme"

	"github.com/qpki/qpki/acme"
	"github.com/qpki/qpki/acme/eab"
)

func acmeErr(t *testing.T, err error, status int, typ string) {
	t.Helper()
	var ae *xacme.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v, want an ACME %s problem", err, typ)
	}
	if ae.StatusCode != status || ae.ProblemType != "urn:ietf:params:acme:error:"+typ {
		t.Fatalf("got HTTP %d %s (%s), want %d %s", ae.StatusCode, ae.ProblemType, ae.Detail, status, typ)
	}
}

func TestAccounts(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()

	t.Run("key types", func(t *testing.T) {
		rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
		p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		_, edKey, _ := ed25519.GenerateKey(rand.Reader)
		for _, k := range []struct {
			key crypto.Signer
			alg jose.SignatureAlgorithm
		}{{rsaKey, jose.RS256}, {p384, jose.ES384}, {p521, jose.ES512}, {edKey, jose.EdDSA}} {
			c := e.raw(t)
			c.key, c.alg = k.key, k.alg
			c.register()
			if r := c.post(c.kid, nil); r.status != http.StatusOK {
				t.Fatalf("%s account: HTTP %d %s", k.alg, r.status, r.body)
			}
		}
		// A weak key.
		c := e.raw(t)
		small, _ := rsa.GenerateKey(rand.Reader, 1024)
		c.key, c.alg = small, jose.RS256
		c.post(c.url("newAccount"), map[string]any{"termsOfServiceAgreed": true}).wantProblem(t, http.StatusBadRequest, "badPublicKey")
	})

	t.Run("lifecycle", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		c := e.clientWithKey(key, false)
		// The terms of service must be agreed to.
		_, err := c.Register(ctx, &xacme.Account{}, func(string) bool { return false })
		if err == nil {
			t.Fatal("registered without agreeing to the terms")
		}
		if _, err := c.Register(ctx, &xacme.Account{Contact: []string{"tel:+1555"}}, xacme.AcceptTOS); err == nil {
			t.Fatal("registered with a tel: contact")
		} else {
			acmeErr(t, err, http.StatusBadRequest, "unsupportedContact")
		}
		if _, err := c.Register(ctx, &xacme.Account{Contact: []string{"mailto:not an address"}}, xacme.AcceptTOS); err == nil {
			t.Fatal("registered with a bad address")
		} else {
			acmeErr(t, err, http.StatusBadRequest, "invalidContact")
		}
		a, err := c.Register(ctx, &xacme.Account{Contact: []string{"mailto:a@example.com"}}, xacme.AcceptTOS)
		if err != nil {
			t.Fatal(err)
		}
		// Registering the same key again finds the account.
		if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); !errors.Is(err, xacme.ErrAccountAlreadyExists) {
			t.Fatalf("second registration: %v, want ErrAccountAlreadyExists", err)
		}
		got, err := c.GetReg(ctx, "")
		if err != nil || got.URI != a.URI || got.Status != xacme.StatusValid {
			t.Fatalf("GetReg: %+v %v", got, err)
		}
		a.Contact = []string{"mailto:b@example.com"}
		if got, err = c.UpdateReg(ctx, a); err != nil || len(got.Contact) != 1 || got.Contact[0] != "mailto:b@example.com" {
			t.Fatalf("UpdateReg: %+v %v", got, err)
		}
		// Key roll-over: the new key signs for the account, the old no
		// longer does.
		newKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err := c.AccountKeyRollover(ctx, newKey); err != nil {
			t.Fatal(err)
		}
		if got, err := c.GetReg(ctx, ""); err != nil || got.URI != a.URI {
			t.Fatalf("GetReg with the new key: %+v %v", got, err)
		}
		old := e.clientWithKey(key, false)
		if _, err := old.GetReg(ctx, ""); !errors.Is(err, xacme.ErrNoAccount) {
			t.Fatalf("the old key: %v, want accountDoesNotExist", err)
		}
		// Rolling over to a key of another account is a conflict.
		other := e.client()
		if err := c.AccountKeyRollover(ctx, other.Key); err == nil {
			t.Fatal("rolled over to another account's key")
		} else {
			acmeErr(t, err, http.StatusConflict, "malformed")
		}
		if err := c.DeactivateReg(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("after.example.com")); err == nil {
			t.Fatal("a deactivated account made an order")
		} else {
			acmeErr(t, err, http.StatusForbidden, "unauthorized")
		}
	})
}

func TestExternalAccountBinding(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.EABRequired = true })
	ctx := context.Background()
	r := e.raw(t)
	if v, _ := r.dir["meta"].(map[string]any)["externalAccountRequired"].(bool); !v {
		t.Fatalf("directory meta %v, want externalAccountRequired", r.dir["meta"])
	}
	c := e.clientWithKey(mustP256(), false)
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err == nil {
		t.Fatal("registered without a binding")
	} else {
		acmeErr(t, err, http.StatusBadRequest, "externalAccountRequired")
	}
	// The key is added while the server runs, as `qpki acme eab add`
	// does: through its socket.
	keysAPI := eab.Remote(e.dataDir)
	k, err := keysAPI.Add("", "test")
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := base64.RawURLEncoding.DecodeString(k.HMAC)
	bad := append([]byte{}, mac...)
	bad[0] ^= 1
	if _, err := c.Register(ctx, &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: k.ID, Key: bad}}, xacme.AcceptTOS); err == nil {
		t.Fatal("registered with a wrong MAC key")
	} else {
		acmeErr(t, err, http.StatusForbidden, "unauthorized")
	}
	a, err := c.Register(ctx, &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: k.ID, Key: mac}}, xacme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keysAPI.List()
	if err != nil || len(keys) != 1 || keys[0].Used.IsZero() || !strings.HasSuffix(a.URI, "/"+keys[0].Account) {
		t.Fatalf("after binding: keys %+v, account %s", keys, a.URI)
	}
	// Single use: another account cannot take the same key.
	c2 := e.clientWithKey(mustP256(), false)
	if _, err := c2.Register(ctx, &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: k.ID, Key: mac}}, xacme.AcceptTOS); err == nil {
		t.Fatal("an EAB key bound two accounts")
	} else {
		acmeErr(t, err, http.StatusForbidden, "unauthorized")
	}
	if err := keysAPI.Remove(k.ID); err != nil {
		t.Fatal(err)
	}
	if err := keysAPI.Remove(k.ID); !errors.Is(err, eab.ErrUnknownKey) {
		t.Fatalf("removing twice: %v", err)
	}
}

// TestEABUsedWithItsAccount: an external account key is used up only by
// the account it creates. Requests racing with one account key, each
// with its own binding key, create one account, and only its binding
// key is used: the others are free for another account (they used to be
// marked used before the account was written, so that the losers of the
// race burnt theirs).
func TestEABUsedWithItsAccount(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.EABRequired = true })
	keysAPI := eab.Remote(e.dataDir)
	const n = 8
	keys := make([]eab.Key, n)
	for i := range keys {
		k, err := keysAPI.Add("", "race")
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	accountKey := mustP256()
	var wg sync.WaitGroup
	start := make(chan struct{})
	uris := make([]string, n)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac, _ := base64.RawURLEncoding.DecodeString(keys[i].HMAC)
			c := e.clientWithKey(accountKey, false)
			<-start
			a, err := c.Register(context.Background(), &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: keys[i].ID, Key: mac}}, xacme.AcceptTOS)
			if err == nil {
				uris[i] = a.URI
			}
		}()
	}
	close(start)
	wg.Wait()
	list, err := keysAPI.List()
	if err != nil {
		t.Fatal(err)
	}
	var used []eab.Key
	for _, k := range list {
		if !k.Used.IsZero() {
			used = append(used, k)
		}
	}
	if len(used) != 1 {
		t.Fatalf("%d binding keys used for one account, want 1: %+v", len(used), used)
	}
	for _, u := range uris {
		if u != "" && !strings.HasSuffix(u, "/"+used[0].Account) {
			t.Fatalf("account %s, but the used key bound %s", u, used[0].Account)
		}
	}
	// Another key, raced for by several new accounts: one binds it, the
	// others are refused (unauthorized) and not created.
	var free eab.Key
	for _, k := range keys {
		if k.ID != used[0].ID {
			free = k
			break
		}
	}
	mac, _ := base64.RawURLEncoding.DecodeString(free.HMAC)
	errs := make([]error, n)
	start = make(chan struct{})
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.clientWithKey(mustP256(), false)
			<-start
			_, errs[i] = c.Register(context.Background(), &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: free.ID, Key: mac}}, xacme.AcceptTOS)
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		acmeErr(t, err, http.StatusForbidden, "unauthorized")
	}
	if wins != 1 {
		t.Fatalf("%d accounts bound by one key, want 1", wins)
	}
}

// TestEABFileMigrated: the keys of an acme-eab.json of an earlier version
// move into the ACME store at start, used ones staying used.
func TestEABFileMigrated(t *testing.T) {
	var e *env
	fresh := base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	e = newEnv(t, func(c *acme.Config) {
		c.EABRequired = true
		os.MkdirAll(c.DataDir, 0o700)
		os.WriteFile(filepath.Join(c.DataDir, "acme-eab.json"), []byte(`{"keys": [
  {"kid": "old-free", "hmac": "`+fresh+`", "note": "from the file", "created": "2026-01-02T03:04:05Z"},
  {"kid": "old-used", "hmac": "`+fresh+`", "created": "2026-01-02T03:04:05Z", "used": "2026-01-03T00:00:00Z", "account": "gone"}
]}`), 0o600)
	})
	if _, err := os.Stat(filepath.Join(e.dataDir, "acme-eab.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("acme-eab.json still there after the migration: %v", err)
	}
	mac, _ := base64.RawURLEncoding.DecodeString(fresh)
	_, err := e.clientWithKey(mustP256(), false).Register(context.Background(), &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: "old-used", Key: mac}}, xacme.AcceptTOS)
	acmeErr(t, err, http.StatusForbidden, "unauthorized")
	if _, err := e.clientWithKey(mustP256(), false).Register(context.Background(), &xacme.Account{ExternalAccountBinding: &xacme.ExternalAccountBinding{KID: "old-free", Key: mac}}, xacme.AcceptTOS); err != nil {
		t.Fatalf("a migrated key: %v", err)
	}
	list, err := eab.Remote(e.dataDir).List()
	if err != nil || len(list) != 2 || list[0].Note != "from the file" || list[0].Used.IsZero() {
		t.Fatalf("migrated keys: %+v %v", list, err)
	}
}

func mustP256() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}
