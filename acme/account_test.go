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
	"strings"
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
	// The key is added while the server runs, as `qpki acme eab add` does.
	k, err := eab.Add(e.dataDir, "", "test")
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
	keys, err := eab.List(e.dataDir)
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
	if err := eab.Remove(e.dataDir, k.ID); err != nil {
		t.Fatal(err)
	}
}

func mustP256() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}
