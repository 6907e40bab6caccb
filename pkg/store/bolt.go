package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	bucketCerts        = []byte("certs")
	bucketReservations = []byte("reservations")
	bucketMeta         = []byte("meta")
	// bucketRevoked indexes revocations by serial (value: encodeRevoked),
	// so that a CRL reads revocations only, not every certificate.
	bucketRevoked = []byte("revoked")
	// bucketShards holds one bucket per CRL shard (named by its number)
	// indexing that shard's revocations alike.
	bucketShards = []byte("revoked-shards")
	keyCRLNumber = []byte("crl_number")
)

// Bolt is the embedded store: one bbolt file.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens or creates the store file. A file held by another process
// fails fast with ErrLocked instead of hanging.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCerts, bucketReservations, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketRevoked) == nil || tx.Bucket(bucketShards) == nil {
			if tx.Bucket(bucketRevoked) != nil {
				if err := tx.DeleteBucket(bucketRevoked); err != nil {
					return err
				}
			}
			return buildRevokedIndex(tx)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// Batch (job creation, results) coalesces concurrent writers into one
	// fsync; the default 10 ms wait for company is longer than a whole
	// issuance, so wait less.
	db.MaxBatchDelay = 2 * time.Millisecond
	return &Bolt{db: db}, nil
}

// DB exposes the bbolt handle to packages that keep their own buckets in
// the same file (the pipeline's jobs, ACME objects).
func (s *Bolt) DB() *bolt.DB { return s.db }

func (s *Bolt) Close() error { return s.db.Close() }

// serialKey gives keys that sort by numeric value: a length byte then the
// big-endian bytes.
func serialKey(n *big.Int) []byte {
	b := n.Bytes()
	return append([]byte{byte(len(b))}, b...)
}

func (s *Bolt) Reserve(serial *big.Int, jobID string) error {
	if jobID == "" {
		return errors.New("store: reservation without a job id")
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		k := serialKey(serial)
		if tx.Bucket(bucketCerts).Get(k) != nil {
			return ErrSerialInUse
		}
		res := tx.Bucket(bucketReservations)
		if owner := res.Get(k); owner != nil {
			if string(owner) == jobID {
				return nil
			}
			return ErrSerialInUse
		}
		return res.Put(k, []byte(jobID))
	})
}

func (s *Bolt) Reservation(serial *big.Int) (string, error) {
	var job string
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketReservations).Get(serialKey(serial))
		if v == nil {
			return ErrNotFound
		}
		job = string(v)
		return nil
	})
	return job, err
}

func (s *Bolt) PutCert(c *Cert) error {
	serial, err := ParseSerial(c.Serial)
	if err != nil {
		return err
	}
	val, err := encodeRecord(c)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		k := serialKey(serial)
		certs := tx.Bucket(bucketCerts)
		if old := certs.Get(k); old != nil {
			var prev Cert
			if err := decodeRecord(old, &prev); err == nil && bytes.Equal(prev.DER, c.DER) {
				return nil
			}
			return ErrSerialInUse
		}
		if owner := tx.Bucket(bucketReservations).Get(k); owner != nil && string(owner) != c.JobID {
			return ErrSerialInUse
		}
		if err := certs.Put(k, val); err != nil {
			return err
		}
		return indexRevoked(tx, k, c)
	})
}

func (s *Bolt) Cert(serial *big.Int) (*Cert, error) {
	var c *Cert
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCerts).Get(serialKey(serial))
		if v == nil {
			return fmt.Errorf("certificate %s: %w", FormatSerial(serial), ErrNotFound)
		}
		c = new(Cert)
		return decodeRecord(v, c)
	})
	return c, err
}

func (s *Bolt) List(f Filter) ([]*Cert, error) {
	if f.Now.IsZero() {
		f.Now = time.Now()
	}
	var out []*Cert
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCerts).ForEach(func(_, v []byte) error {
			c := new(Cert)
			if err := decodeRecord(v, c); err != nil {
				return err
			}
			if f.Status == "" || c.Status(f.Now) == f.Status {
				out = append(out, c)
			}
			return nil
		})
	})
	sortByIssued(out)
	return out, err
}

func (s *Bolt) Revoke(serial *big.Int, r Revocation) (*Cert, error) {
	var c *Cert
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCerts)
		k := serialKey(serial)
		v := b.Get(k)
		if v == nil {
			return fmt.Errorf("certificate %s: %w", FormatSerial(serial), ErrNotFound)
		}
		c = new(Cert)
		if err := decodeRecord(v, c); err != nil {
			return err
		}
		if c.Revocation != nil {
			return fmt.Errorf("certificate %s: %w", FormatSerial(serial), ErrRevoked)
		}
		c.Revocation = &r
		val, err := encodeRecord(c)
		if err != nil {
			return err
		}
		if err := b.Put(k, val); err != nil {
			return err
		}
		return indexRevoked(tx, k, c)
	})
	return c, err
}

// indexRevoked enters a revoked certificate (under key k) into the
// revocation index and its shard's; anything else is left alone.
func indexRevoked(tx *bolt.Tx, k []byte, c *Cert) error {
	if c.Revocation == nil {
		return nil
	}
	rv, err := revokedOf(c)
	if err != nil {
		return err
	}
	v := encodeRevoked(rv)
	if err := tx.Bucket(bucketRevoked).Put(k, v); err != nil || rv.Shard < 0 {
		return err
	}
	b, err := tx.Bucket(bucketShards).CreateBucketIfNotExists([]byte(strconv.Itoa(rv.Shard)))
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

// buildRevokedIndex creates the revocation index of a store written before
// it existed, from the certificates' records.
func buildRevokedIndex(tx *bolt.Tx) error {
	if _, err := tx.CreateBucket(bucketRevoked); err != nil {
		return err
	}
	if _, err := tx.CreateBucketIfNotExists(bucketShards); err != nil {
		return err
	}
	return tx.Bucket(bucketCerts).ForEach(func(k, v []byte) error {
		c := new(Cert)
		if err := decodeRecord(v, c); err != nil {
			return err
		}
		return indexRevoked(tx, k, c)
	})
}

// Revocations walks the revocation index in serial order.
func (s *Bolt) Revocations(fn func(Revoked) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return walkRevoked(tx.Bucket(bucketRevoked), fn) })
}

// ShardRevocations walks one shard's revocations in serial order.
func (s *Bolt) ShardRevocations(shard int, fn func(Revoked) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return walkRevoked(tx.Bucket(bucketShards).Bucket([]byte(strconv.Itoa(shard))), fn)
	})
}

func walkRevoked(b *bolt.Bucket, fn func(Revoked) error) error {
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		r, err := decodeRevoked(k, v)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

// NextShardCRLNumber increments shard's own CRL number.
func (s *Bolt) NextShardCRLNumber(shard int) (*big.Int, error) {
	return s.nextCounter(append(append([]byte{}, keyCRLNumber...), "/"+strconv.Itoa(shard)...))
}

func (s *Bolt) NextCRLNumber() (*big.Int, error) { return s.nextCounter(keyCRLNumber) }

func (s *Bolt) nextCounter(key []byte) (*big.Int, error) {
	n := new(big.Int)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if v := b.Get(key); v != nil {
			n.SetBytes(v)
		}
		n.Add(n, big.NewInt(1))
		return b.Put(key, n.Bytes())
	})
	return n, err
}

// Snapshot writes a consistent copy of the whole store, taken in one read
// transaction, while writers go on.
func (s *Bolt) Snapshot(w io.Writer) error {
	return s.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}
