package scep

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
)

// ChallengeKind is how a label checks the challenge password of a CSR.
type ChallengeKind string

// The kinds of challenge.
const (
	ChallengeOneTime ChallengeKind = "one-time" // `qpki scep challenge add`, each usable once
	ChallengeStatic  ChallengeKind = "static"   // one password per label, from password_env
	ChallengeWebhook ChallengeKind = "webhook"  // an HTTPS service decides (Intune-style)
)

// BucketChallenges is the JetStream KV bucket suffix of the one-time
// challenges that several serve processes share.
const BucketChallenges = "SCEPCHALLENGES"

// ErrChallenge refuses a challenge that is wrong, already used by
// another transaction, expired, or for another label.
var ErrChallenge = errors.New("the challenge password is wrong, already used or expired")

// Challenge is a one-time password's record, stored under the SHA-256 of
// the password (the password itself is never stored).
type Challenge struct {
	Label   string             `json:"label"`
	Names   *enroll.NamePolicy `json:"names,omitempty"`
	Created time.Time          `json:"created"`
	Expires time.Time          `json:"expires"`
	// UsedBy is the transaction (its job key) that redeemed it: the same
	// transaction sent again is that request again, not a replay.
	UsedBy string `json:"used_by,omitempty"`
}

// ChallengeStore keeps one-time challenges.
type ChallengeStore interface {
	// Add stores a new challenge under its hash.
	Add(hash string, c Challenge) error
	// Redeem marks the challenge used by key, atomically, and returns it;
	// ErrChallenge when it is unknown, expired, for another label, or
	// used by another key.
	Redeem(hash, label, key string, now time.Time) (*Challenge, error)
	// SetTransaction records the job key of a label's transaction, and
	// Transaction finds it (store.ErrNotFound when there is none), for
	// CertPoll, which names the transaction only.
	SetTransaction(label, txid, key string) error
	Transaction(label, txid string) (string, error)
}

// transaction is the record SetTransaction keeps.
type transaction struct {
	Key     string    `json:"key"`
	Created time.Time `json:"created"`
}

// txName is where a transaction is kept: its label and id, hashed.
func txName(label, txid string) string {
	sum := sha256.Sum256([]byte(label + "\x00" + txid))
	return "tx-" + hex.EncodeToString(sum[:])
}

// NewChallenge makes a one-time password: 130 random bits in base32,
// letters and digits only (it travels as a PrintableString).
func NewChallenge() (password, hash string, err error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	password = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
	return password, HashChallenge(password), nil
}

// HashChallenge is the key a challenge is stored under.
func HashChallenge(password string) string {
	sum := sha256.Sum256([]byte(password))
	return hex.EncodeToString(sum[:])
}

// redeem applies Redeem's rules to a stored challenge.
func (c *Challenge) redeem(label, key string, now time.Time) error {
	if c.Label != label || !now.Before(c.Expires) || c.UsedBy != "" && c.UsedBy != key {
		return ErrChallenge
	}
	c.UsedBy = key
	return nil
}

// ChallengesPath is the one-time challenge database of a data dir.
func ChallengesPath(dataDir string) string { return filepath.Join(dataDir, "scep-challenges.db") }

// FileChallenges keeps challenges in a bbolt file of the data dir. The
// file is opened for each operation, so that `qpki scep challenge add`
// and a running serve take turns on its lock.
type FileChallenges struct{ Path string }

var (
	bucketChallenges   = []byte("challenges")
	bucketTransactions = []byte("transactions")
)

func (f FileChallenges) update(fn func(b *bolt.Bucket) error) error {
	return f.updateIn(bucketChallenges, fn)
}

func (f FileChallenges) updateIn(bucket []byte, fn func(b *bolt.Bucket) error) error {
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return err
	}
	db, err := bolt.Open(f.Path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("scep: %s: %w", f.Path, err)
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

// Add implements ChallengeStore.
func (f FileChallenges) Add(hash string, c Challenge) error {
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return f.update(func(b *bolt.Bucket) error {
		if b.Get([]byte(hash)) != nil {
			return store.ErrAlreadyExists
		}
		return b.Put([]byte(hash), v)
	})
}

// Redeem implements ChallengeStore; expired challenges met on the way
// are deleted.
func (f FileChallenges) Redeem(hash, label, key string, now time.Time) (*Challenge, error) {
	var out *Challenge
	err := f.update(func(b *bolt.Bucket) error {
		v := b.Get([]byte(hash))
		if v == nil {
			return ErrChallenge
		}
		var c Challenge
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		if !now.Before(c.Expires) {
			b.Delete([]byte(hash))
			return ErrChallenge
		}
		if err := c.redeem(label, key, now); err != nil {
			return err
		}
		nv, err := json.Marshal(c)
		if err != nil {
			return err
		}
		out = &c
		return b.Put([]byte(hash), nv)
	})
	if errors.Is(err, ErrChallenge) {
		return nil, ErrChallenge
	}
	return out, err
}

// SetTransaction implements ChallengeStore.
func (f FileChallenges) SetTransaction(label, txid, key string) error {
	v, err := json.Marshal(transaction{Key: key, Created: time.Now().UTC()})
	if err != nil {
		return err
	}
	return f.updateIn(bucketTransactions, func(b *bolt.Bucket) error { return b.Put([]byte(txName(label, txid)), v) })
}

// Transaction implements ChallengeStore.
func (f FileChallenges) Transaction(label, txid string) (string, error) {
	var t transaction
	err := f.updateIn(bucketTransactions, func(b *bolt.Bucket) error {
		v := b.Get([]byte(txName(label, txid)))
		if v == nil {
			return store.ErrNotFound
		}
		return json.Unmarshal(v, &t)
	})
	return t.Key, err
}

// SharedChallenges keeps challenges in a JetStream KV bucket, for several
// serve front-ends; a redemption is a compare-and-set on the record.
func SharedChallenges(r *jskv.Records) ChallengeStore { return sharedChallenges{r} }

type sharedChallenges struct{ r *jskv.Records }

func (s sharedChallenges) Add(hash string, c Challenge) error { return s.r.Create(hash, &c) }

func (s sharedChallenges) SetTransaction(label, txid, key string) error {
	name := txName(label, txid)
	t := transaction{Key: key, Created: time.Now().UTC()}
	for range 16 {
		var old transaction
		rev, err := s.r.Get(name, &old)
		if errors.Is(err, store.ErrNotFound) {
			if err = s.r.Create(name, &t); !errors.Is(err, store.ErrAlreadyExists) {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if old.Key == key {
			return nil
		}
		if err = s.r.Update(name, &t, rev); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return errors.New("scep: transaction store: too many concurrent updates")
}

func (s sharedChallenges) Transaction(label, txid string) (string, error) {
	var t transaction
	_, err := s.r.Get(txName(label, txid), &t)
	return t.Key, err
}

func (s sharedChallenges) Redeem(hash, label, key string, now time.Time) (*Challenge, error) {
	for range 16 {
		var c Challenge
		rev, err := s.r.Get(hash, &c)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrChallenge
		}
		if err != nil {
			return nil, err
		}
		if err := c.redeem(label, key, now); err != nil {
			return nil, err
		}
		err = s.r.Update(hash, &c, rev)
		if errors.Is(err, store.ErrConflict) {
			continue // redeemed (or removed) meanwhile: read it again
		}
		if err != nil {
			return nil, err
		}
		return &c, nil
	}
	return nil, errors.New("scep: challenge store: too many concurrent updates")
}

// staticMatches compares a static password in constant time.
func staticMatches(want []byte, got string) bool {
	return len(want) > 0 && subtle.ConstantTimeCompare(want, []byte(got)) == 1
}

// WebhookRequest is what a webhook challenge receives (POST, JSON).
type WebhookRequest struct {
	Label         string   `json:"label"`
	TransactionID string   `json:"transaction_id"`
	Challenge     string   `json:"challenge"`
	Subject       string   `json:"subject"`
	DNSNames      []string `json:"dns_names,omitempty"`
	IPAddresses   []string `json:"ip_addresses,omitempty"`
	Emails        []string `json:"emails,omitempty"`
	URIs          []string `json:"uris,omitempty"`
	// CSR is the request, DER in base64.
	CSR []byte `json:"csr"`
}

// WebhookResponse is the webhook's answer; anything but allow: true
// (including an HTTP status other than 200) is a denial.
type WebhookResponse struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason,omitempty"`
}

// webhook asks an HTTPS service about a request.
type webhook struct {
	url    string
	client *http.Client
}

func newWebhook(url, caFile string) (*webhook, error) {
	if !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("webhook %q: must be an https:// URL", url)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("webhook ca_file %s: no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 16}
	return &webhook{url: url, client: &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// ask returns nil when the webhook allows the request.
func (h *webhook) ask(ctx context.Context, q WebhookRequest) error {
	body, err := json.Marshal(q)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: the challenge webhook is unreachable", ErrChallenge)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: the challenge webhook answered HTTP %d", ErrChallenge, resp.StatusCode)
	}
	var a WebhookResponse
	if err := json.Unmarshal(data, &a); err != nil || !a.Allow {
		reason := a.Reason
		if reason == "" {
			reason = "denied"
		}
		return fmt.Errorf("%w: the challenge webhook: %.200s", ErrChallenge, reason)
	}
	return nil
}

// oidChallengePassword is PKCS #9 challengePassword.
var oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}

// challengePassword reads the CSR's challengePassword attribute (a
// DirectoryString), "" when it has none.
func challengePassword(csr *x509.CertificateRequest) (string, error) {
	var tbs struct {
		Version int
		Subject asn1.RawValue
		SPKI    asn1.RawValue
		Attrs   []struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		} `asn1:"optional,tag:0,set"`
	}
	if rest, err := asn1.Unmarshal(csr.RawTBSCertificateRequest, &tbs); err != nil || len(rest) != 0 {
		return "", fmt.Errorf("malformed CSR attributes: %v", err)
	}
	for _, a := range tbs.Attrs {
		if !a.Type.Equal(oidChallengePassword) {
			continue
		}
		if len(a.Values) != 1 || a.Values[0].Class != asn1.ClassUniversal {
			return "", errors.New("malformed challengePassword attribute")
		}
		switch a.Values[0].Tag {
		case asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagIA5String, asn1.TagT61String:
			return string(a.Values[0].Bytes), nil
		}
		return "", errors.New("unsupported challengePassword string type")
	}
	return "", nil
}
