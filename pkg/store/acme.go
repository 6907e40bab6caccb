package store

import (
	"encoding/json"
	"errors"
	"time"
)

// ACME object statuses (RFC 8555 §7.1.6).
const (
	ACMEPending     = "pending"
	ACMEReady       = "ready"
	ACMEProcessing  = "processing"
	ACMEValid       = "valid"
	ACMEInvalid     = "invalid"
	ACMEDeactivated = "deactivated"
	ACMERevoked     = "revoked"
	ACMEExpired     = "expired"
)

// Errors of the ACME store.
var (
	// ErrConflict is a change that the object's current state forbids
	// (finalizing an order twice, a key already bound to another account).
	ErrConflict = errors.New("conflicting change")
	// ErrAlreadyReplaced is an order replacing (RFC 9773 §5) a certificate
	// that another live order already replaces.
	ErrAlreadyReplaced = errors.New("certificate already replaced by another order")
)

// ACMEIdentifier is an identifier object (RFC 8555 §9.7.7: "dns", RFC
// 8738: "ip").
type ACMEIdentifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// ACMEAccount is an ACME account (RFC 8555 §7.1.2).
type ACMEAccount struct {
	ID string `json:"id"`
	// Key is the account's public JWK, Thumbprint its RFC 7638 SHA-256
	// thumbprint in base64url, unique among accounts.
	Key         json.RawMessage `json:"key"`
	Thumbprint  string          `json:"thumbprint"`
	Contact     []string        `json:"contact,omitempty"`
	Status      string          `json:"status"`
	TermsAgreed bool            `json:"terms_agreed,omitempty"`
	// EABKeyID is the external account key that bound the account.
	EABKeyID  string    `json:"eab_kid,omitempty"`
	CreatedIP string    `json:"created_ip,omitempty"`
	Created   time.Time `json:"created"`
}

// EABKey is an external account binding key (RFC 8555 §7.3.4): a key id
// and HMAC key the operator hands out, which binds one account. It lives
// in the ACME store so that the account that uses it and the mark that
// it is used are written together.
type EABKey struct {
	ID string `json:"kid"`
	// HMAC is the MAC key, base64url without padding, as clients take it.
	HMAC    string    `json:"hmac"`
	Note    string    `json:"note,omitempty"`
	Created time.Time `json:"created"`
	// Used, Account and Thumbprint are set once the key bound an account
	// (Thumbprint: that account's key).
	Used       time.Time `json:"used,omitzero"`
	Account    string    `json:"account,omitempty"`
	Thumbprint string    `json:"thumbprint,omitempty"`
}

// Errors of CreateAccount with an external account key.
var (
	ErrEABUnknown = errors.New("unknown external account key id")
	ErrEABUsed    = errors.New("external account key already used")
)

// ACMEOrder is an order (RFC 8555 §7.1.3). Its stored status is pending,
// processing, valid or invalid; CurrentStatus computes ready and
// expiry.
type ACMEOrder struct {
	ID          string           `json:"id"`
	AccountID   string           `json:"account"`
	Status      string           `json:"status"`
	Identifiers []ACMEIdentifier `json:"identifiers"`
	Authzs      []string         `json:"authzs"`
	Profile     string           `json:"profile"`
	NotBefore   time.Time        `json:"not_before,omitzero"`
	NotAfter    time.Time        `json:"not_after,omitzero"`
	Expires     time.Time        `json:"expires"`
	Created     time.Time        `json:"created"`
	// Replaces is the ARI certificate identifier (RFC 9773 §4.1) of the
	// certificate this order replaces.
	Replaces string `json:"replaces,omitempty"`
	// Error is the problem document of an invalid order.
	Error json.RawMessage `json:"error,omitempty"`
	// CertSerial and CertNotAfter describe the certificate of a valid
	// order, recorded after the fact: the signing job of the order is the
	// source of truth.
	CertSerial   string    `json:"cert_serial,omitempty"`
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
}

// ACMEAuthz is an authorization (RFC 8555 §7.1.4) with its challenges.
// Its stored status is pending, valid, invalid, deactivated or revoked;
// CurrentStatus computes expiry.
type ACMEAuthz struct {
	ID         string          `json:"id"`
	AccountID  string          `json:"account"`
	Identifier ACMEIdentifier  `json:"identifier"`
	Wildcard   bool            `json:"wildcard,omitempty"`
	Status     string          `json:"status"`
	Expires    time.Time       `json:"expires"`
	Created    time.Time       `json:"created"`
	Challenges []ACMEChallenge `json:"challenges"`
	// CAAChecked is when CAA last allowed issuance for the identifier
	// (at validation, again at a finalize more than 8 hours later); zero
	// when CAA was not checked.
	CAAChecked time.Time `json:"caa_checked,omitzero"`
}

// ACMEChallenge is one way to prove control of an authorization's
// identifier (RFC 8555 §8).
type ACMEChallenge struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Token     string          `json:"token"`
	Status    string          `json:"status"`
	Validated time.Time       `json:"validated,omitzero"`
	Error     json.RawMessage `json:"error,omitempty"`
}

// ACMENonce is an outstanding anti-replay nonce.
type ACMENonce struct {
	Value   string    `json:"v"`
	Expires time.Time `json:"e"`
}

// CurrentStatus is an authorization's status at a time: a pending or
// valid authorization past its expiry is expired.
func (a *ACMEAuthz) CurrentStatus(now time.Time) string {
	if (a.Status == ACMEPending || a.Status == ACMEValid) && !now.Before(a.Expires) {
		return ACMEExpired
	}
	return a.Status
}

// Challenge returns the authorization's challenge with the given id.
func (a *ACMEAuthz) Challenge(id string) *ACMEChallenge {
	for i := range a.Challenges {
		if a.Challenges[i].ID == id {
			return &a.Challenges[i]
		}
	}
	return nil
}

// CurrentStatus is an order's status at a time, given its authorizations
// (in any order): a pending order is ready once every authorization is
// valid, and invalid once one of them failed or expired, or the order
// itself expired (RFC 8555 §7.1.6).
func (o *ACMEOrder) CurrentStatus(authzs []*ACMEAuthz, now time.Time) string {
	if o.Status != ACMEPending {
		return o.Status
	}
	if !now.Before(o.Expires) {
		return ACMEInvalid
	}
	valid := 0
	for _, a := range authzs {
		switch a.CurrentStatus(now) {
		case ACMEValid:
			valid++
		case ACMEPending:
		default:
			return ACMEInvalid
		}
	}
	if valid == len(o.Authzs) && len(authzs) == len(o.Authzs) {
		return ACMEReady
	}
	return ACMEPending
}

// ACMEStore keeps ACME accounts, orders, authorizations and nonces.
// Update functions passed to it may run more than once (writes are
// batched): they must only change the record they are given.
type ACMEStore interface {
	// CreateAccount adds an account unless its key's thumbprint already
	// belongs to one, which is returned with created false. An account
	// with an EABKeyID uses that key up in the same write: it fails with
	// ErrEABUnknown or ErrEABUsed (by another account) and creates
	// nothing, or creates the account and marks the key used by it.
	CreateAccount(a *ACMEAccount) (existing *ACMEAccount, created bool, err error)
	Account(id string) (*ACMEAccount, error)
	AccountByThumbprint(thumbprint string) (*ACMEAccount, error)
	// UpdateAccount changes an account. When fn changes the thumbprint
	// (a key roll-over) to one bound to another account, it fails with
	// ErrConflict and returns that other account.
	UpdateAccount(id string, fn func(*ACMEAccount) error) (*ACMEAccount, error)

	// CreateOrder records an order and its new authorizations (those it
	// reuses already exist). An order replacing a certificate that a live
	// order already replaces fails with ErrAlreadyReplaced.
	CreateOrder(o *ACMEOrder, newAuthzs []*ACMEAuthz) error
	Order(id string) (*ACMEOrder, error)
	UpdateOrder(id string, fn func(*ACMEOrder) error) (*ACMEOrder, error)
	// UpdateOrders changes several orders in one transaction; orders that
	// no longer exist are skipped.
	UpdateOrders(ids []string, fn func(*ACMEOrder) error) error
	// AccountOrders lists an account's order ids, oldest first, from the
	// cursor ("" for the start); next is "" on the last page.
	AccountOrders(accountID, cursor string, limit int) (ids []string, next string, err error)

	Authz(id string) (*ACMEAuthz, error)
	// Authzs returns authorizations by id, in the same order.
	Authzs(ids []string) ([]*ACMEAuthz, error)
	UpdateAuthz(id string, fn func(*ACMEAuthz) error) (*ACMEAuthz, error)
	// LatestAuthz returns the account's most recent authorization for an
	// identifier (wildcard or not), whatever its status.
	LatestAuthz(accountID string, id ACMEIdentifier, wildcard bool) (*ACMEAuthz, error)
	// PendingAuthzs counts the account's pending authorizations that have
	// not expired at now, up to limit (the newOrder limit).
	PendingAuthzs(accountID string, now time.Time, limit int) (int, error)

	// AddEABKey adds an external account key (ErrAlreadyExists if its id
	// is taken); EABKey reads one, EABKeys lists them by id; RemoveEABKey
	// deletes one (ErrNotFound), not the account it bound.
	AddEABKey(k EABKey) error
	EABKey(kid string) (*EABKey, error)
	EABKeys() ([]EABKey, error)
	RemoveEABKey(kid string) error

	// RestoreNonces returns the nonces saved at the last clean shutdown,
	// or none after a crash (when some of them may have been used
	// unrecorded). Either way the saved set counts as unclean from now on.
	RestoreNonces(now time.Time) ([]ACMENonce, error)
	// SyncNonces records nonces issued and used since the last call;
	// final marks a clean shutdown.
	SyncNonces(issued []ACMENonce, used []string, final bool) error

	// DeleteExpired removes up to limit objects whose retention ended.
	DeleteExpired(now time.Time, limit int) (int, error)
	Close() error
}

// Retention after expiry: expired objects stay visible (as expired or
// invalid) for a while before they are deleted.
const acmeRetention = 7 * 24 * time.Hour

func (a *ACMEAuthz) retainUntil() time.Time { return a.Expires.Add(acmeRetention) }

func (o *ACMEOrder) retainUntil() time.Time {
	t := o.Expires
	if o.CertNotAfter.After(t) {
		t = o.CertNotAfter
	}
	return t.Add(acmeRetention)
}
