package store

import (
	"bytes"
	"math/big"
	"time"

	bolt "go.etcd.io/bbolt"
)

// OCSPResponse is a signed OCSP response kept for one certificate and
// CertID hash: what the responder serves until its re-signed successor
// replaces it.
type OCSPResponse struct {
	Serial     string    `json:"serial"`
	Hash       string    `json:"hash"`   // CertID hash: sha1, sha256, ...
	Status     string    `json:"status"` // what it says (jobspec.OCSPGood, ...)
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	DER        []byte    `json:"der"`
}

// OCSPStore keeps pre-signed OCSP responses beside the certificates.
type OCSPStore interface {
	// PutOCSP stores responses; one never replaces a response with a
	// later thisUpdate (a late result of an older job).
	PutOCSP(rs []*OCSPResponse) error
	// OCSP returns the stored response, or ErrNotFound.
	OCSP(serial *big.Int, hash string) (*OCSPResponse, error)
	// EachOCSP calls fn for every stored response under hash.
	EachOCSP(hash string, fn func(*OCSPResponse) error) error
	// EachCert calls fn for every certificate, without holding them all.
	EachCert(fn func(*Cert) error) error
}

var bucketOCSP = []byte("ocsp")

var _ OCSPStore = (*Bolt)(nil)

func ocspKey(hash string, serial *big.Int) []byte {
	return append([]byte(hash+"/"), serialKey(serial)...)
}

func (s *Bolt) PutOCSP(rs []*OCSPResponse) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketOCSP)
		if err != nil {
			return err
		}
		for _, r := range rs {
			n, err := ParseSerial(r.Serial)
			if err != nil {
				return err
			}
			k := ocspKey(r.Hash, n)
			if old := b.Get(k); old != nil {
				var prev OCSPResponse
				if decodeRecord(old, &prev) == nil && prev.ThisUpdate.After(r.ThisUpdate) {
					continue
				}
			}
			val, err := encodeRecord(r)
			if err != nil {
				return err
			}
			if err := b.Put(k, val); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Bolt) OCSP(serial *big.Int, hash string) (*OCSPResponse, error) {
	var r *OCSPResponse
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOCSP)
		var v []byte
		if b != nil {
			v = b.Get(ocspKey(hash, serial))
		}
		if v == nil {
			return ErrNotFound
		}
		r = new(OCSPResponse)
		return decodeRecord(v, r)
	})
	return r, err
}

func (s *Bolt) EachOCSP(hash string, fn func(*OCSPResponse) error) error {
	prefix := []byte(hash + "/")
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOCSP)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			r := new(OCSPResponse)
			if err := decodeRecord(v, r); err != nil {
				return err
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// EachCert reads the certificates a page at a time, each page in its own
// read transaction, and calls fn outside of any: fn may wait for writes to
// this store (a long read transaction would block a write that grows the
// file, and with it fn).
func (s *Bolt) EachCert(fn func(*Cert) error) error {
	var after []byte
	for {
		var page []*Cert
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketCerts).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(page) < eachPage; k, v = c.Next() {
				rec := new(Cert)
				if err := decodeRecord(v, rec); err != nil {
					return err
				}
				page = append(page, rec)
				after = append(after[:0], k...)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
		}
		if len(page) < eachPage {
			return nil
		}
	}
}

const eachPage = 1024

// ImportCerts records certificates in one transaction, for bulk loads (a
// benchmark's million certificates): what PutCert does for each, without
// one transaction apiece. A serial already taken is ErrSerialInUse.
func (s *Bolt) ImportCerts(cs []*Cert) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCerts)
		for _, c := range cs {
			n, err := ParseSerial(c.Serial)
			if err != nil {
				return err
			}
			k := serialKey(n)
			if b.Get(k) != nil || tx.Bucket(bucketReservations).Get(k) != nil {
				return ErrSerialInUse
			}
			val, err := encodeRecord(c)
			if err != nil {
				return err
			}
			if err := b.Put(k, val); err != nil {
				return err
			}
			if err := indexRevoked(tx, k, c); err != nil {
				return err
			}
		}
		return nil
	})
}
