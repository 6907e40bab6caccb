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
}

// RevocationIndex is implemented by stores that keep revocations apart
// from the certificates, so that building a CRL reads only revocations.
type RevocationIndex interface {
	// Revocations calls fn for every revoked certificate, in serial order;
	// an error from fn stops the walk and is returned.
	Revocations(fn func(Revoked) error) error
}

// EachRevoked walks st's revocations: through its index when it has one,
// else (a store without one) through its certificate list.
func EachRevoked(st Store, fn func(Revoked) error) error {
	if ix, ok := st.(RevocationIndex); ok {
		return ix.Revocations(fn)
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
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func revokedOf(c *Cert) (Revoked, error) {
	n, err := ParseSerial(c.Serial)
	if err != nil {
		return Revoked{}, err
	}
	return Revoked{Serial: n, Time: c.Revocation.Time, Reason: c.Revocation.Reason, NotAfter: c.NotAfter, CAVersion: c.CAVersion}, nil
}

// The index value: revocation time and notAfter (Unix seconds), the
// reason, then the CA version's name.
func encodeRevoked(r Revoked) []byte {
	v := make([]byte, 17, 17+len(r.CAVersion))
	binary.BigEndian.PutUint64(v[0:], uint64(r.Time.Unix()))
	binary.BigEndian.PutUint64(v[8:], uint64(r.NotAfter.Unix()))
	v[16] = byte(r.Reason)
	return append(v, r.CAVersion...)
}

func decodeRevoked(k, v []byte) (Revoked, error) {
	if len(k) < 1 || int(k[0]) != len(k)-1 || len(v) < 17 {
		return Revoked{}, errors.New("store: malformed revocation index entry")
	}
	return Revoked{
		Serial:    new(big.Int).SetBytes(k[1:]),
		Time:      time.Unix(int64(binary.BigEndian.Uint64(v[0:])), 0).UTC(),
		NotAfter:  time.Unix(int64(binary.BigEndian.Uint64(v[8:])), 0).UTC(),
		Reason:    int(v[16]),
		CAVersion: string(v[17:]),
	}, nil
}
