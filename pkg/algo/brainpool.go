package algo

import (
	"crypto"
	"crypto/subtle"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Brainpool curves (RFC 5639) for verifying the traditional half of the
// composite algorithms that use them. Neither the Go standard library nor
// circl implements them; the arithmetic below uses math/big, which is not
// constant time, so it only ever handles public values: ECDSA
// verification and, for composite ML-KEM, the sender's side of ECDH with
// a fresh ephemeral key. qpki never signs or decapsulates with a
// brainpool private key (ErrNoConstantTime).

// ErrNoConstantTime explains why qpki does not use a brainpool private key.
var ErrNoConstantTime = errors.New("no constant-time brainpool implementation is available (Go and circl have none), so qpki verifies and encapsulates with brainpool keys but does not sign or decapsulate with them")

// Brainpool algorithm names, for composite components only.
const (
	ECDSABrainpoolP256 Algorithm = "ecdsa-brainpoolp256r1"
	ECDSABrainpoolP384 Algorithm = "ecdsa-brainpoolp384r1"
)

// FamilyBrainpool is ECDSA over a brainpool curve.
const FamilyBrainpool Family = "ecdsa-brainpool"

type bpCurve struct {
	name               Algorithm
	oid                asn1.ObjectIdentifier
	p, a, b, n, gx, gy *big.Int
	byteLen            int
}

func hexInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("algo: bad constant")
	}
	return n
}

// Parameters from RFC 5639 §3.4 and §3.6 (checked against OpenSSL's
// built-in curves: openssl ecparam -name brainpoolP256r1 -param_enc explicit -text).
var (
	bpP256 = &bpCurve{name: ECDSABrainpoolP256, oid: asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 7}, byteLen: 32,
		p:  hexInt("a9fb57dba1eea9bc3e660a909d838d726e3bf623d52620282013481d1f6e5377"),
		a:  hexInt("7d5a0975fc2c3057eef67530417affe7fb8055c126dc5c6ce94a4b44f330b5d9"),
		b:  hexInt("26dc5c6ce94a4b44f330b5d9bbd77cbf958416295cf7e1ce6bccdc18ff8c07b6"),
		n:  hexInt("a9fb57dba1eea9bc3e660a909d838d718c397aa3b561a6f7901e0e82974856a7"),
		gx: hexInt("8bd2aeb9cb7e57cb2c4b482ffc81b7afb9de27e1e3bd23c23a4453bd9ace3262"),
		gy: hexInt("547ef835c3dac4fd97f8461a14611dc9c27745132ded8e545c1d54c72f046997")}
	bpP384 = &bpCurve{name: ECDSABrainpoolP384, oid: asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 11}, byteLen: 48,
		p:  hexInt("8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b412b1da197fb71123acd3a729901d1a71874700133107ec53"),
		a:  hexInt("7bc382c63d8c150c3c72080ace05afa0c2bea28e4fb22787139165efba91f90f8aa5814a503ad4eb04a8c7dd22ce2826"),
		b:  hexInt("04a8c7dd22ce28268b39b55416f0447c2fb77de107dcd2a62e880ea53eeb62d57cb4390295dbc9943ab78696fa504c11"),
		n:  hexInt("8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b31f166e6cac0425a7cf3ab6af6b7fc3103b883202e9046565"),
		gx: hexInt("1d1c64f068cf45ffa2a63a81b7c13f6b8847a3e77ef14fe3db7fcafe0cbd10e8e826e03436d646aaef87b2e247d4af1e"),
		gy: hexInt("8abe1d7520f9c2a45cb1eb8e95cfd55262b70b29feec5864e19c054ff99129280e4646217791811142820341263c5315")}
)

// bpPoint is an affine point; inf marks the point at infinity.
type bpPoint struct {
	x, y *big.Int
	inf  bool
}

func (c *bpCurve) onCurve(x, y *big.Int) bool {
	if x.Sign() < 0 || x.Cmp(c.p) >= 0 || y.Sign() < 0 || y.Cmp(c.p) >= 0 {
		return false
	}
	// y² = x³ + ax + b (mod p)
	l := new(big.Int).Mul(y, y)
	l.Mod(l, c.p)
	r := new(big.Int).Mul(x, x)
	r.Add(r, c.a)
	r.Mul(r, x)
	r.Add(r, c.b)
	r.Mod(r, c.p)
	return l.Cmp(r) == 0
}

func (c *bpCurve) add(p, q bpPoint) bpPoint {
	if p.inf {
		return q
	}
	if q.inf {
		return p
	}
	var lambda *big.Int
	if p.x.Cmp(q.x) == 0 {
		if new(big.Int).Add(p.y, q.y).Mod(new(big.Int).Add(p.y, q.y), c.p).Sign() == 0 {
			return bpPoint{inf: true}
		}
		// λ = (3x² + a) / 2y
		num := new(big.Int).Mul(p.x, p.x)
		num.Mul(num, big.NewInt(3))
		num.Add(num, c.a)
		den := new(big.Int).Lsh(p.y, 1)
		lambda = num.Mul(num, den.ModInverse(den.Mod(den, c.p), c.p))
	} else {
		num := new(big.Int).Sub(q.y, p.y)
		den := new(big.Int).Sub(q.x, p.x)
		den.Mod(den, c.p)
		lambda = num.Mul(num, den.ModInverse(den, c.p))
	}
	lambda.Mod(lambda, c.p)
	x := new(big.Int).Mul(lambda, lambda)
	x.Sub(x, p.x)
	x.Sub(x, q.x)
	x.Mod(x, c.p)
	y := new(big.Int).Sub(p.x, x)
	y.Mul(y, lambda)
	y.Sub(y, p.y)
	y.Mod(y, c.p)
	return bpPoint{x: x, y: y}
}

// mul computes kP by double-and-add: variable time, public inputs only.
func (c *bpCurve) mul(p bpPoint, k *big.Int) bpPoint {
	r := bpPoint{inf: true}
	for i := k.BitLen() - 1; i >= 0; i-- {
		r = c.add(r, r)
		if k.Bit(i) == 1 {
			r = c.add(r, p)
		}
	}
	return r
}

// BrainpoolPublicKey is an ECDSA public key on a brainpool curve.
type BrainpoolPublicKey struct {
	c    *bpCurve
	x, y *big.Int
}

func parseBrainpoolPublic(c *bpCurve, raw []byte) (*BrainpoolPublicKey, error) {
	if len(raw) != 1+2*c.byteLen || raw[0] != 4 {
		return nil, fmt.Errorf("%s public key: want an uncompressed point of %d bytes", c.name, 1+2*c.byteLen)
	}
	x := new(big.Int).SetBytes(raw[1 : 1+c.byteLen])
	y := new(big.Int).SetBytes(raw[1+c.byteLen:])
	if !c.onCurve(x, y) {
		return nil, fmt.Errorf("%s public key: point is not on the curve", c.name)
	}
	return &BrainpoolPublicKey{c: c, x: x, y: y}, nil
}

// Bytes returns the uncompressed point.
func (k *BrainpoolPublicKey) Bytes() []byte {
	out := make([]byte, 1+2*k.c.byteLen)
	out[0] = 4
	k.x.FillBytes(out[1 : 1+k.c.byteLen])
	k.y.FillBytes(out[1+k.c.byteLen:])
	return out
}

// Algorithm returns the key's curve as an algorithm name.
func (k *BrainpoolPublicKey) Algorithm() Algorithm { return k.c.name }

// Equal reports whether x is the same key.
func (k *BrainpoolPublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*BrainpoolPublicKey)
	return ok && o.c == k.c && subtle.ConstantTimeCompare(o.Bytes(), k.Bytes()) == 1
}

// VerifyASN1 checks an ECDSA-Sig-Value over digest (SEC 1 §4.1.4).
func (k *BrainpoolPublicKey) VerifyASN1(digest, sig []byte) bool {
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
		return false
	}
	n := k.c.n
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.Cmp(n) >= 0 || rs.S.Cmp(n) >= 0 {
		return false
	}
	e := new(big.Int).SetBytes(digest)
	if excess := len(digest)*8 - n.BitLen(); excess > 0 {
		e.Rsh(e, uint(excess))
	}
	w := new(big.Int).ModInverse(rs.S, n)
	u1 := new(big.Int).Mul(e, w)
	u1.Mod(u1, n)
	u2 := new(big.Int).Mul(rs.R, w)
	u2.Mod(u2, n)
	g := bpPoint{x: k.c.gx, y: k.c.gy}
	pt := k.c.add(k.c.mul(g, u1), k.c.mul(bpPoint{x: k.x, y: k.y}, u2))
	if pt.inf {
		return false
	}
	return new(big.Int).Mod(pt.x, n).Cmp(rs.R) == 0
}

// ecdhBrainpool computes the x-coordinate of d·peer for an ephemeral d
// that never outlives one encapsulation.
func (c *bpCurve) ecdh(d *big.Int, peer *BrainpoolPublicKey) ([]byte, error) {
	pt := c.mul(bpPoint{x: peer.x, y: peer.y}, d)
	if pt.inf {
		return nil, errors.New("ecdh: point at infinity")
	}
	return pt.x.FillBytes(make([]byte, c.byteLen)), nil
}

// generateEphemeral returns d in [1, n-1] and d·G, for encapsulation.
func (c *bpCurve) generateEphemeral(rand io.Reader) (*big.Int, *BrainpoolPublicKey, error) {
	buf := make([]byte, c.byteLen+8)
	if _, err := io.ReadFull(randOrDefault(rand), buf); err != nil {
		return nil, nil, err
	}
	d := new(big.Int).SetBytes(buf)
	d.Mod(d, new(big.Int).Sub(c.n, big.NewInt(1)))
	d.Add(d, big.NewInt(1))
	pt := c.mul(bpPoint{x: c.gx, y: c.gy}, d)
	return d, &BrainpoolPublicKey{c: c, x: pt.x, y: pt.y}, nil
}

func init() {
	for _, c := range []*bpCurve{bpP256, bpP384} {
		c := c
		Register(&Info{
			Name: c.name, Family: FamilyBrainpool, Classical: true, CanSign: true, Bits: c.byteLen * 8,
			SignRefused: ErrNoConstantTime,
			Generate: func(io.Reader) (crypto.PrivateKey, error) {
				return nil, fmt.Errorf("%s: %w", c.name, ErrNoConstantTime)
			},
			Matches: func(pub crypto.PublicKey) bool {
				k, ok := pub.(*BrainpoolPublicKey)
				return ok && k.c == c
			},
		})
	}
}
