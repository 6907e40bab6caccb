package algo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"math/big"
	"math/bits"
	"sync"

	"filippo.io/nistec"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// VerifyIssuerECDSA is ecdsa.VerifyASN1 for a key that verifies many
// signatures: a CA's key, whose every signature is checked once made.
// The first call for a key precomputes multiples of it, as Go keeps
// multiples of the generator: u2·Q becomes table look-ups and additions
// instead of a scalar multiplication, and so does u1·G. Everything in a
// verification is public, so this variable-time arithmetic is safe, and
// a P-384 or P-521 check costs under a quarter of crypto/ecdsa's. Up to
// maxIssuerKeys keys are kept; others, and curves without a table, get
// crypto/ecdsa.
func VerifyIssuerECDSA(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	if v := issuerVerifier(pub); v != nil {
		return v.verify(digest, sig)
	}
	return ecdsa.VerifyASN1(pub, digest, sig)
}

// maxIssuerKeys bounds the keys whose tables are kept (1 MB each for
// P-256 and P-521, 2 MB for P-384, built in 5 to 25 ms): a server has a
// few CA keys, not thousands.
const maxIssuerKeys = 32

var issuerKeys struct {
	mu   sync.Mutex
	keys map[string]*issuerEntry
}

type issuerEntry struct {
	once sync.Once
	v    tableVerifier
}

// tableVerifier verifies ECDSA signatures under one public key.
type tableVerifier interface {
	verify(digest, sig []byte) bool
}

func issuerVerifier(pub *ecdsa.PublicKey) tableVerifier {
	if pub == nil || pub.Curve == nil {
		return nil
	}
	var build func(point []byte) tableVerifier
	switch pub.Curve {
	case elliptic.P256():
		build = func(b []byte) tableVerifier { return newTableVerifier(p256T, b) }
	case elliptic.P384():
		build = func(b []byte) tableVerifier { return newTableVerifier(p384T, b) }
	case elliptic.P521():
		build = func(b []byte) tableVerifier { return newTableVerifier(p521T, b) }
	default:
		return nil
	}
	point, err := pub.Bytes()
	if err != nil {
		return nil
	}
	issuerKeys.mu.Lock()
	e := issuerKeys.keys[string(point)]
	if e == nil {
		if len(issuerKeys.keys) >= maxIssuerKeys {
			issuerKeys.mu.Unlock()
			return nil
		}
		if issuerKeys.keys == nil {
			issuerKeys.keys = map[string]*issuerEntry{}
		}
		e = &issuerEntry{}
		issuerKeys.keys[string(point)] = e
	}
	issuerKeys.mu.Unlock()
	e.once.Do(func() { e.v = build(point) })
	return e.v
}

// nistPoint is what the tables need of a filippo.io/nistec point.
type nistPoint[P any] interface {
	Add(p1, p2 P) P
	Set(q P) P
	SetBytes(b []byte) (P, error)
	SetGenerator() P
	BytesX() ([]byte, error)
	IsInfinity() int
}

// curveTables is a curve's order, its point constructor and the table of
// multiples of its generator, built once.
type curveTables[P nistPoint[P]] struct {
	newPoint func() P
	n        *big.Int
	bits     int // of the order
	window   int // bits per digit of a scalar
	once     sync.Once
	g        *multiples[P]
}

func (c *curveTables[P]) generator() *multiples[P] {
	c.once.Do(func() { c.g = newMultiples(c, c.newPoint().SetGenerator()) })
	return c.g
}

func newCurveTables[P nistPoint[P]](newPoint func() P, curve elliptic.Curve, window int) *curveTables[P] {
	n := curve.Params().N
	return &curveTables[P]{newPoint: newPoint, n: n, bits: n.BitLen(), window: window}
}

var (
	p256T = newCurveTables(nistec.NewP256Point, elliptic.P256(), 8)
	p384T = newCurveTables(nistec.NewP384Point, elliptic.P384(), 8)
	p521T = newCurveTables(nistec.NewP521Point, elliptic.P521(), 6)
)

// multiples holds j·2^(w·i)·P for every digit position i and digit j in
// [1, 2^w - 1], w being the curve's window: a multiplication adds one of
// them per non-zero digit of the scalar. Wider windows mean fewer
// additions and bigger tables (8 bits for P-256: 32 additions and 1 MB;
// for P-384: 48 additions and 2 MB, a quarter faster than 6 bits, whose
// 64 additions need 0.7 MB; 6 bits for P-521: 87 additions and 1 MB).
type multiples[P nistPoint[P]] struct {
	c   *curveTables[P]
	row [][]P
}

func newMultiples[P nistPoint[P]](c *curveTables[P], p P) *multiples[P] {
	per := 1<<c.window - 1
	rows := (c.bits + c.window - 1) / c.window
	m := &multiples[P]{c: c, row: make([][]P, rows)}
	base := c.newPoint().Set(p)
	for i := range m.row {
		r := make([]P, per)
		r[0] = c.newPoint().Set(base)
		for j := 1; j < per; j++ {
			r[j] = c.newPoint().Add(r[j-1], base)
		}
		base.Add(r[per-1], base) // 2^window times the row's base
		m.row[i] = r
	}
	return m
}

// addMul adds k·P to acc, k being a non-negative integer below 2^bits.
func (m *multiples[P]) addMul(acc P, k *big.Int) {
	words := k.Bits()
	const wordBits = bits.UintSize
	window := m.c.window
	mask := uint(1)<<window - 1
	for i := range m.row {
		bit := i * window
		w := bit / wordBits
		if w >= len(words) {
			return
		}
		d := uint(words[w]) >> (bit % wordBits)
		if off := bit % wordBits; off+window > wordBits && w+1 < len(words) {
			d |= uint(words[w+1]) << (wordBits - off)
		}
		if d &= mask; d != 0 {
			acc.Add(acc, m.row[i][d-1])
		}
	}
}

type keyVerifier[P nistPoint[P]] struct {
	c *curveTables[P]
	g *multiples[P]
	q *multiples[P]
}

// newTableVerifier returns a verifier for the uncompressed point, or nil
// when it is not a valid point of the curve.
func newTableVerifier[P nistPoint[P]](c *curveTables[P], point []byte) tableVerifier {
	q, err := c.newPoint().SetBytes(point)
	if err != nil || q.IsInfinity() == 1 {
		return nil
	}
	return &keyVerifier[P]{c: c, g: c.generator(), q: newMultiples(c, q)}
}

// verify follows FIPS 186-5 §6.4.2: r and s in [1, n-1], e the digest's
// leftmost bits, R = (e/s)·G + (r/s)·Q, valid when R is not the point at
// infinity and its x-coordinate is r mod n.
func (v *keyVerifier[P]) verify(digest, sig []byte) bool {
	r, s, ok := parseECDSASig(sig)
	if !ok {
		return false
	}
	n := v.c.n
	if r.Cmp(n) >= 0 || s.Cmp(n) >= 0 {
		return false
	}
	e := new(big.Int).SetBytes(digest)
	if excess := len(digest)*8 - v.c.bits; excess > 0 {
		e.Rsh(e, uint(excess))
	}
	w := new(big.Int).ModInverse(s, n)
	if w == nil {
		return false
	}
	u1 := e.Mul(e, w)
	u1.Mod(u1, n)
	u2 := w.Mul(r, w)
	u2.Mod(u2, n)
	acc := v.c.newPoint() // the point at infinity
	v.g.addMul(acc, u1)
	v.q.addMul(acc, u2)
	x, err := acc.BytesX() // fails at infinity
	if err != nil {
		return false
	}
	xn := new(big.Int).SetBytes(x)
	return xn.Mod(xn, n).Cmp(r) == 0
}

// parseECDSASig reads ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER },
// both positive.
func parseECDSASig(sig []byte) (r, s *big.Int, ok bool) {
	var inner cryptobyte.String
	in := cryptobyte.String(sig)
	r, s = new(big.Int), new(big.Int)
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(r) || !inner.ReadASN1Integer(s) || !inner.Empty() ||
		r.Sign() <= 0 || s.Sign() <= 0 {
		return nil, nil, false
	}
	return r, s, true
}
