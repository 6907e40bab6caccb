package jskv

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"

	"github.com/qpki/qpki/pkg/store"
)

var _ store.OCSPStore = (*Store)(nil)

func ocspKey(hash string, serial *big.Int) string { return key(hash, store.FormatSerial(serial)) }

// PutOCSP stores each response unless the bucket holds a later one; a
// concurrent writer's newer response wins the compare-and-set.
func (s *Store) PutOCSP(rs []*store.OCSPResponse) error {
	for _, r := range rs {
		n, err := store.ParseSerial(r.Serial)
		if err != nil {
			return err
		}
		val, err := json.Marshal(r)
		if err != nil {
			return err
		}
		k := ocspKey(r.Hash, n)
		err = s.do(func(ctx context.Context) error {
			var prev store.OCSPResponse
			rev, err := getJSON(ctx, s.ocsp, k, &prev)
			switch {
			case errors.Is(err, store.ErrNotFound):
				_, err = s.ocsp.Create(ctx, k, val)
				return err
			case err != nil:
				return err
			case prev.ThisUpdate.After(r.ThisUpdate):
				return nil
			}
			_, err = s.ocsp.Update(ctx, k, val, rev)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) OCSP(serial *big.Int, hash string) (*store.OCSPResponse, error) {
	var r store.OCSPResponse
	err := s.do(func(ctx context.Context) error {
		_, err := getJSON(ctx, s.ocsp, ocspKey(hash, serial), &r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Store) EachOCSP(hash string, fn func(*store.OCSPResponse) error) error {
	return s.do(func(ctx context.Context) error {
		return scan(ctx, s.ocsp, hash+".*", func(_ string, v []byte, _ uint64) error {
			r := new(store.OCSPResponse)
			if err := json.Unmarshal(v, r); err != nil {
				return err
			}
			return fn(r)
		})
	})
}

func (s *Store) EachCert(fn func(*store.Cert) error) error {
	return s.do(func(ctx context.Context) error {
		return scan(ctx, s.certs, ">", func(_ string, v []byte, _ uint64) error {
			c := new(store.Cert)
			if err := json.Unmarshal(v, c); err != nil {
				return err
			}
			return fn(c)
		})
	})
}
