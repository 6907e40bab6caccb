package store

import (
	"encoding/binary"
	"errors"
	"math/big"
	"time"
)

// Revoked is one entry of a store's revocation index: what a CRL needs of
// a revoked certificate, without the certificate.
type Revoked struct {
	Serial    *big.Int
	Time      time.Time
	Reason    int
	NotAfter  time.Time
	CAVersion string
	// Shard is the certificate's CRL shard, -1 for none.
	Shard int
}

// AllShards asks EachRevoked for every revocation, of any shard or none.
const AllShards = -1

// RevocationIndex is implemented by stores that keep revocations apart
// from the certificates, so that building a CRL reads only revocations.
type RevocationIndex interface {
	// Revocations calls fn for every revoked certificate, in serial order;
	// an error from fn stops the walk and is returned.
	Revocations(fn func(Revoked) error) error
	// ShardRevocations does so for one CRL shard's, reading only them.
	ShardRevocations(shard int, fn func(Revoked) error) error
}

// ShardCRLNumbers is implemented by stores that keep a CRL number
// sequence per shard.
type ShardCRLNumbers interface {
	NextShardCRLNumber(shard int) (*big.Int, error)
}

// EachRevoked walks st's revocations, of one shard or of AllShards:
// through its index when it has one, else (a store without one) through its
// certificate list.
func EachRevoked(st Store, shard int, fn func(Revoked) error) error {
	if ix, ok := st.(RevocationIndex); ok {
		if shard == AllShards {
			return ix.Revocations(fn)
		}
		return ix.ShardRevocations(shard, fn)
	}
	certs, err := st.List(Filter{Status: "revoked"})
	if err != nil {
		return err
	}
	for _, c := range certs {
		if c.Revocation == nil {
			continue
		}
		r, err := revokedOf(c)
		if err != nil {
			return err
		}
		if shard != AllShards && r.Shard != shard {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// NextShardCRLNumber increments a shard's CRL number.
func NextShardCRLNumber(st Store, shard int) (*big.Int, error) {
	if s, ok := st.(ShardCRLNumbers); ok {
		return s.NextShardCRLNumber(shard)
	}
	return nil, errors.New("store: this store keeps no CRL numbers per shard")
}

func revokedOf(c *Cert) (Revoked, error) {
	n, err := ParseSerial(c.Serial)
	if err != nil {
		return Revoked{}, err
	}
	r := Revoked{Serial: n, Time: c.Revocation.Time, Reason: c.Revocation.Reason, NotAfter: c.NotAfter, CAVersion: c.CAVersion, Shard: -1}
	if c.Shard != nil {
		r.Shard = *c.Shard
	}
	return r, nil
}

// The index value: revocation time and notAfter (Unix seconds), the
// reason, the shard plus one (0: none), then the CA version's name.
func encodeRevoked(r Revoked) []byte {
	v := make([]byte, 21, 21+len(r.CAVersion))
	binary.BigEndian.PutUint64(v[0:], uint64(r.Time.Unix()))
	binary.BigEndian.PutUint64(v[8:], uint64(r.NotAfter.Unix()))
	v[16] = byte(r.Reason)
	binary.BigEndian.PutUint32(v[17:], uint32(r.Shard+1))
	return append(v, r.CAVersion...)
}

func decodeRevoked(k, v []byte) (Revoked, error) {
	if len(k) < 1 || int(k[0]) != len(k)-1 || len(v) < 21 {
		return Revoked{}, errors.New("store: malformed revocation index entry")
	}
	return Revoked{
		Serial:    new(big.Int).SetBytes(k[1:]),
		Time:      time.Unix(int64(binary.BigEndian.Uint64(v[0:])), 0).UTC(),
		NotAfter:  time.Unix(int64(binary.BigEndian.Uint64(v[8:])), 0).UTC(),
		Reason:    int(v[16]),
		Shard:     int(binary.BigEndian.Uint32(v[17:])) - 1,
		CAVersion: string(v[21:]),
	}, nil
}
