package jskv

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketNonces is the suffix of the bucket of outstanding ACME nonces.
const BucketNonces = "NONCES"

// Nonce layout: the key's revision, the random key name, and an HMAC tag
// over both under a key all front-ends share.
const (
	nonceRandLen = 16
	nonceTagLen  = 16
	nonceLen     = 8 + nonceRandLen + nonceTagLen
	keyNonceMAC  = "nonce_mac_key"
	// MaxNonces bounds the outstanding nonces; past it the oldest go.
	MaxNonces = 1_000_000
)

// Nonces issues and redeems ACME anti-replay nonces (RFC 8555 §6.5)
// shared by every front-end of a CA: a nonce one front-end issued is
// good once, at any of them.
//
// Issuing a nonce creates key n.<random> in the CA's NONCES bucket,
// whose age limit is the nonce lifetime, and hands out the key with the
// revision the create returned, tagged with an HMAC. Redeeming checks the
// tag (garbage costs no round trip) and deletes the key on condition that
// its last revision is still the one issued: of two front-ends redeeming
// one nonce at once, the stream accepts exactly one delete. An expired
// key is gone from the stream, so its delete fails too.
type Nonces struct {
	ops
	kv  jetstream.KeyValue
	mac []byte
	// Log, when set, hears of nonces that could not be issued or
	// redeemed because the cluster failed.
	Log *slog.Logger
}

// OpenNonces binds to (creating when missing) the NONCES bucket of CA
// o.CA with the given nonce lifetime, and to the shared HMAC key in its
// META bucket.
func OpenNonces(ctx context.Context, js jetstream.JetStream, o Options, lifetime time.Duration) (*Nonces, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if lifetime <= 0 {
		lifetime = time.Hour
	}
	meta, err := openBucket(ctx, js, BucketName(o.CA, bucketMeta), o.Replicas)
	if err != nil {
		return nil, err
	}
	n := &Nonces{ops: ops{o.Timeout}}
	fresh := make([]byte, 32)
	rand.Read(fresh)
	err = n.do(func(ctx context.Context) error {
		old, created, err := createOrGet(ctx, meta, keyNonceMAC, fresh)
		if err != nil {
			return err
		}
		n.mac = fresh
		if !created {
			n.mac = old
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jskv: nonce key: %w", err)
	}
	if len(n.mac) < 32 {
		return nil, fmt.Errorf("jskv: nonce key in %s is too short", BucketName(o.CA, bucketMeta))
	}
	name := BucketName(o.CA, BucketNonces)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = retry(ctx, func(ctx context.Context) error {
		_, err := js.Stream(ctx, "KV_"+name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			// A key-value bucket's stream, with an age limit and a cap
			// that drops the oldest nonces.
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{
				Name:              "KV_" + name,
				Description:       "qpki ACME nonces",
				Subjects:          []string{"$KV." + name + ".>"},
				MaxMsgsPerSubject: 1,
				MaxMsgs:           MaxNonces,
				MaxBytes:          -1,
				MaxMsgSize:        256,
				MaxAge:            lifetime,
				Duplicates:        min(lifetime, 2*time.Minute),
				Storage:           jetstream.FileStorage,
				Replicas:          o.Replicas,
				AllowRollup:       true,
				DenyDelete:        true,
				MaxConsumers:      -1,
				Discard:           jetstream.DiscardOld,
			})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				err = nil
			}
		}
		if err != nil {
			return err
		}
		n.kv, err = js.KeyValue(ctx, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jskv: bucket %s: %w", name, err)
	}
	return n, nil
}

func (n *Nonces) tag(revAndRand []byte) []byte {
	m := hmac.New(sha256.New, n.mac)
	m.Write(revAndRand)
	return m.Sum(nil)[:nonceTagLen]
}

// Issue creates a nonce.
func (n *Nonces) Issue() (string, error) {
	var b [nonceLen]byte
	rand.Read(b[8 : 8+nonceRandLen])
	k := "n." + base64.RawURLEncoding.EncodeToString(b[8:8+nonceRandLen])
	var rev uint64
	err := n.do(func(ctx context.Context) error {
		var err error
		rev, err = n.kv.Create(ctx, k, []byte{1})
		if conflict(err) {
			// A retry after a lost reply finds its own key: take a new one.
			rand.Read(b[8 : 8+nonceRandLen])
			k = "n." + base64.RawURLEncoding.EncodeToString(b[8:8+nonceRandLen])
			rev, err = n.kv.Create(ctx, k, []byte{1})
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("jskv: issuing a nonce: %w", err)
	}
	binary.BigEndian.PutUint64(b[:8], rev)
	copy(b[8+nonceRandLen:], n.tag(b[:8+nonceRandLen]))
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Nonce issues a nonce. When the cluster cannot be reached it returns
// one that no front-end accepts: the client gets badNonce and retries.
func (n *Nonces) Nonce() string {
	s, err := n.Issue()
	if err != nil {
		if n.Log != nil {
			n.Log.Error("acme: shared nonce", "error", err)
		}
		var b [nonceLen]byte
		rand.Read(b[:])
		return base64.RawURLEncoding.EncodeToString(b[:])
	}
	return s
}

// Use redeems a nonce: true only the first time, at any front-end, for a
// nonce issued within its lifetime.
func (n *Nonces) Use(s string) bool {
	ok, err := n.Redeem(s)
	if err != nil && n.Log != nil {
		n.Log.Error("acme: redeeming a shared nonce", "error", err)
	}
	return ok
}

// Redeem is Use with the error that made a redemption fail, if it was
// not the nonce's fault.
func (n *Nonces) Redeem(s string) (bool, error) {
	if len(s) != base64.RawURLEncoding.EncodedLen(nonceLen) {
		return false, nil
	}
	var b [nonceLen]byte
	if _, err := base64.RawURLEncoding.Decode(b[:], []byte(s)); err != nil {
		return false, nil
	}
	if !hmac.Equal(b[8+nonceRandLen:], n.tag(b[:8+nonceRandLen])) {
		return false, nil
	}
	rev := binary.BigEndian.Uint64(b[:8])
	k := "n." + base64.RawURLEncoding.EncodeToString(b[8:8+nonceRandLen])
	err := n.do(func(ctx context.Context) error {
		return n.kv.Delete(ctx, k, jetstream.LastRevision(rev))
	})
	if conflict(err) {
		return false, nil
	}
	return err == nil, err
}
