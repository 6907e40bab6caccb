package cmp

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/store"
)

// Secret is a shared secret for MAC-protected initial enrollment (its
// reference is the senderKID). The secret itself is kept, not a hash: a
// PasswordBasedMac key is derived from it with the client's salt.
type Secret struct {
	Ref     string             `json:"ref"`
	Label   string             `json:"label"`
	Secret  string             `json:"secret"`
	Names   *enroll.NamePolicy `json:"names,omitempty"`
	Created time.Time          `json:"created"`
	Expires time.Time          `json:"expires,omitzero"`
	// UsedBy is the transaction that redeemed it: its own later messages
	// (certConf, pollReq) may still use it, no other transaction may.
	UsedBy string `json:"used_by,omitempty"`
}

// ErrSecret is an unknown, expired, reused or foreign secret reference.
var ErrSecret = errors.New("cmp: the shared secret is unknown, expired, already used or for another label")

func secretName(ref string) string { return "s." + base64.RawURLEncoding.EncodeToString([]byte(ref)) }

// AddSecret makes a new secret for ref and returns it; it is stored in
// the data dir's cmp.db (or recs) and shown only here.
func AddSecret(recs Records, ref, label string, ttl time.Duration, names *enroll.NamePolicy) (string, error) {
	if ref == "" || len(ref) > 128 {
		return "", errors.New("cmp: a reference of 1 to 128 bytes is required")
	}
	if label != "" && !labelName.MatchString(label) {
		return "", fmt.Errorf("cmp: label %q: want 1 to 64 characters from [A-Za-z0-9_-]", label)
	}
	if err := names.Validate(); err != nil {
		return "", err
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	s := Secret{Ref: ref, Label: label, Secret: base64.RawURLEncoding.EncodeToString(raw), Names: names, Created: time.Now().UTC()}
	if ttl > 0 {
		s.Expires = s.Created.Add(ttl)
	}
	if err := recs.Create(secretName(ref), &s); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			return "", fmt.Errorf("cmp: a secret with reference %q exists already", ref)
		}
		return "", err
	}
	return s.Secret, nil
}

// lookupSecret finds the secret of ref that label may use in transaction
// txid; it does not redeem it.
func lookupSecret(recs Records, ref, label, txid string, now time.Time) (*Secret, uint64, error) {
	var s Secret
	rev, err := recs.Get(secretName(ref), &s)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, ErrSecret
	}
	if err != nil {
		return nil, 0, err
	}
	if s.Label != label || !s.Expires.IsZero() && now.After(s.Expires) || s.UsedBy != "" && s.UsedBy != txid {
		return &s, rev, ErrSecret
	}
	return &s, rev, nil
}

// redeem marks the secret used by txid, once (compare-and-set).
func redeem(recs Records, s *Secret, rev uint64, txid string) error {
	if s.UsedBy == txid {
		return nil
	}
	s.UsedBy = txid
	if err := recs.Update(secretName(s.Ref), s, rev); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return ErrSecret
		}
		return err
	}
	return nil
}
