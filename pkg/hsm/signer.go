package hsm

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/miekg/pkcs11"
	"github.com/qpki/qpki/pkg/algo"
)

// tokenSigner signs with a key held in a token. Each call takes its own
// session from the token's pool for the whole operation, so signers run in
// parallel up to the pool size.
type tokenSigner struct {
	key    *Key
	alg    algo.Algorithm
	family algo.Family
	mech   uint   // the mechanism for the algorithm (CKM_RSA_PKCS for RSA; PSS is chosen per call)
	v3     *p11v3 // signs in one call into C; nil: through miekg/pkcs11

	closeOnce sync.Once
	onClose   func() error
	closeErr  error
	closed    bool
	mu        sync.RWMutex // guards closed
}

// Signer returns a signer for key under algorithm alg, which comes from
// policy (the profile and the CA metadata), never from the key. A key whose
// type or size does not fit alg is an error, and so is a token that lacks
// the mechanism alg needs. Closing the signer does not close the token.
func (t *Token) Signer(key *Key, alg algo.Algorithm) (algo.SignerCloser, error) {
	return t.signer(key, alg, nil)
}

func (t *Token) signer(key *Key, alg algo.Algorithm, onClose func() error) (*tokenSigner, error) {
	if key == nil || key.st != t.st {
		return nil, errors.New("hsm: the key does not belong to this token")
	}
	info, ok := algo.Lookup(alg)
	if !ok {
		return nil, fmt.Errorf("hsm: unknown algorithm %q", alg)
	}
	if !info.CanSign {
		return nil, fmt.Errorf("hsm: %s is not a signature algorithm", alg)
	}
	st := t.st
	var wantType, mech uint
	switch info.Family {
	case algo.FamilyECDSA:
		wantType, mech = pkcs11.CKK_EC, pkcs11.CKM_ECDSA
	case algo.FamilyRSA:
		wantType, mech = pkcs11.CKK_RSA, pkcs11.CKM_RSA_PKCS
	case algo.FamilyEd25519:
		wantType, mech = CKK_EC_EDWARDS, CKM_EDDSA
	default:
		m, ok := st.table.For(alg)
		if !ok || m.Sign == 0 {
			return nil, fmt.Errorf("hsm: mechanism table %q has no signature mechanism for %s", st.table.Name, alg)
		}
		// Without a parameter, CKM_ML_DSA/CKM_SLH_DSA sign with an empty
		// context; a context string (*algo.ContextOpts) goes in a
		// CK_SIGN_ADDITIONAL_CONTEXT through the 3.x layer (p11v3.go).
		wantType, mech = m.KeyType, m.Sign
	}
	if key.KeyType != wantType {
		return nil, fmt.Errorf("hsm: key %q (id %s) is a %s key, but policy requires %s (%s)",
			key.Label, key.IDHex(), KeyTypeName(key.KeyType), alg, KeyTypeName(wantType))
	}
	if err := algo.CheckKey(key.public, alg); err != nil {
		return nil, fmt.Errorf("hsm: key %q (id %s): %v", key.Label, key.IDHex(), err)
	}
	if err := st.need(mech, "sign with "+string(alg)); err != nil {
		return nil, err
	}
	return &tokenSigner{key: key, alg: alg, family: info.Family, mech: mech, v3: st.signLayer(), onClose: onClose}, nil
}

func (s *tokenSigner) Public() crypto.PublicKey  { return s.key.public }
func (s *tokenSigner) Algorithm() algo.Algorithm { return s.alg }

// Close releases what the signer holds (the token, for OpenSigner).
func (s *tokenSigner) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		if s.onClose != nil {
			s.closeErr = s.onClose()
		}
	})
	return s.closeErr
}

// Sign follows crypto.Signer: for ECDSA and RSA, digest is the hash that
// opts names, computed by the caller; for Ed25519 and the post-quantum
// algorithms, it is the whole message and opts.HashFunc() must be 0.
// *rsa.PSSOptions selects RSASSA-PSS.
func (s *tokenSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errSignerClosed
	}
	p, err := s.prepare(digest, opts)
	if err != nil {
		return nil, err
	}
	return s.signPrepared(p)
}

// signPrepared signs one prepared request on a pooled session.
func (s *tokenSigner) signPrepared(p prepared) ([]byte, error) {
	if p.context != nil {
		return s.signContext(p.context, p.data)
	}
	raw, err := s.sign(p.mech, p.param, p.data)
	if err != nil {
		return nil, err
	}
	return p.finish(raw)
}

// SignBatch signs each request as Sign would, those that share a
// mechanism one after another in one call into the module (through the
// cgo layer) on one session.
func (s *tokenSigner) SignBatch(reqs []algo.SignRequest) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		for i := range reqs {
			reqs[i].Err = errSignerClosed
		}
		return
	}
	ps := make([]prepared, len(reqs))
	for i := range reqs {
		ps[i], reqs[i].Err = s.prepare(reqs[i].Digest, reqs[i].Opts)
	}
	for i := 0; i < len(reqs); {
		switch {
		case reqs[i].Err != nil:
			i++
		case ps[i].context != nil || s.v3 == nil:
			reqs[i].Sig, reqs[i].Err = s.signPrepared(ps[i])
			i++
		default:
			// A run of requests with this mechanism and parameter.
			j := i + 1
			for j < len(reqs) && reqs[j].Err == nil && ps[j].context == nil &&
				ps[j].mech == ps[i].mech && bytes.Equal(ps[j].param, ps[i].param) {
				j++
			}
			s.signRun(reqs[i:j], ps[i:j])
			i = j
		}
	}
}

// signRun signs requests that share a mechanism and parameter in one call
// into C, picking up where it stopped if the session has to be reopened.
// A request the token refuses fails alone and the others go on; a
// session that cannot be recovered fails all that are left.
func (s *tokenSigner) signRun(reqs []algo.SignRequest, ps []prepared) {
	msgs := make([][]byte, len(ps))
	for i, p := range ps {
		msgs[i] = p.data
	}
	mech, param := ps[0].mech, ps[0].param
	done := 0
	for done < len(reqs) {
		_, err := s.signOn(mech, func(sess pkcs11.SessionHandle, h pkcs11.ObjectHandle) ([]byte, error) {
			sigs, err := s.v3.signMany(s.key.st.signNice, sess, h, mech, param, msgs[done:])
			for _, raw := range sigs {
				reqs[done].Sig, reqs[done].Err = ps[done].finish(raw)
				done++
			}
			return nil, err
		})
		if err == nil {
			return
		}
		if isStale(err) {
			for ; done < len(reqs); done++ {
				reqs[done].Err = err
			}
			return
		}
		reqs[done].Err = err
		done++
	}
}

var errSignerClosed = errors.New("hsm: signer is closed")

// prepared is a signature request as the module takes it.
type prepared struct {
	mech    uint
	param   []byte
	data    []byte
	ecdsa   bool   // the module returns r||s, which X.509 wants in DER
	context []byte // a FIPS 204/205 context string, signed through signContext
}

func (p prepared) finish(raw []byte) ([]byte, error) {
	if p.ecdsa {
		return ecdsaDER(raw)
	}
	return raw, nil
}

// prepare checks a request against the key's algorithm and turns it into
// the mechanism, parameter and data the module signs.
func (s *tokenSigner) prepare(digest []byte, opts crypto.SignerOpts) (prepared, error) {
	if opts == nil {
		opts = crypto.Hash(0)
	}
	switch s.family {
	case algo.FamilyECDSA:
		h := opts.HashFunc()
		if h == 0 || len(digest) != h.Size() {
			return prepared{}, fmt.Errorf("hsm: %s signs a digest: got %d bytes for hash %v", s.alg, len(digest), h)
		}
		return prepared{mech: pkcs11.CKM_ECDSA, data: digest, ecdsa: true}, nil
	case algo.FamilyRSA:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return s.preparePSS(digest, pss)
		}
		h := opts.HashFunc()
		prefix, ok := digestInfoPrefix[h]
		if !ok {
			return prepared{}, fmt.Errorf("hsm: RSA PKCS#1 v1.5 with hash %v is not supported", h)
		}
		if len(digest) != h.Size() {
			return prepared{}, fmt.Errorf("hsm: %s: got %d bytes for a %v digest", s.alg, len(digest), h)
		}
		di := make([]byte, 0, len(prefix)+len(digest))
		di = append(append(di, prefix...), digest...)
		return prepared{mech: pkcs11.CKM_RSA_PKCS, data: di}, nil
	case algo.FamilyEd25519:
		if opts.HashFunc() != 0 {
			return prepared{}, errors.New("hsm: Ed25519ph is not supported; ed25519 signs the message itself")
		}
		if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
			return prepared{}, errors.New("hsm: Ed25519ctx is not supported")
		}
		return prepared{mech: CKM_EDDSA, data: digest}, nil
	}
	if opts.HashFunc() != 0 {
		return prepared{}, fmt.Errorf("hsm: %s signs the message itself, not a %v digest", s.alg, opts.HashFunc())
	}
	switch o := opts.(type) {
	case crypto.Hash:
	case *algo.ContextOpts:
		if o != nil && len(o.Context) > 0 {
			return prepared{mech: s.mech, data: digest, context: o.Context}, nil
		}
	default:
		return prepared{}, fmt.Errorf("hsm: %s signing options of type %T are not supported", s.alg, opts)
	}
	return prepared{mech: s.mech, data: digest}, nil
}

func (s *tokenSigner) preparePSS(digest []byte, o *rsa.PSSOptions) (prepared, error) {
	h := o.HashFunc()
	hp, ok := pssHash[h]
	if !ok {
		return prepared{}, fmt.Errorf("hsm: RSA-PSS with hash %v is not supported", h)
	}
	if len(digest) != h.Size() {
		return prepared{}, fmt.Errorf("hsm: %s: got %d bytes for a %v digest", s.alg, len(digest), h)
	}
	salt := o.SaltLength
	switch salt {
	case rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto:
		// Auto lets the verifier accept any length; the hash length is the
		// usual choice and what RFC 4055 profiles expect.
		salt = h.Size()
	}
	if salt < 0 {
		return prepared{}, fmt.Errorf("hsm: invalid PSS salt length %d", o.SaltLength)
	}
	if err := s.key.st.need(pkcs11.CKM_RSA_PKCS_PSS, "sign with RSA-PSS"); err != nil {
		return prepared{}, err
	}
	return prepared{mech: pkcs11.CKM_RSA_PKCS_PSS, param: pkcs11.NewPSSParams(hp.mech, hp.mgf, uint(salt)), data: digest}, nil
}

// signLayer returns the cgo layer when it can sign on the sessions
// miekg/pkcs11 opened: it must see them, in the state miekg/pkcs11 sees,
// through its own function list (a module whose C_GetInterface list kept
// state apart would not). Otherwise, or when the layer cannot load the
// module, it returns nil and miekg/pkcs11 signs.
func (st *tokenState) signLayer() *p11v3 {
	st.signV3Once.Do(func() {
		v3, err := loadP11v3(st.mod.path)
		if err != nil {
			return
		}
		err = st.withSession(func(s pkcs11.SessionHandle) error {
			info, err := st.mod.ctx.GetSessionInfo(s)
			if err != nil {
				return err
			}
			state, err := v3.sessionState(s)
			if err != nil {
				return err
			}
			if state != info.State {
				return fmt.Errorf("session state %d through the cgo layer, %d through miekg/pkcs11", state, info.State)
			}
			return nil
		})
		if err == nil {
			st.signV3 = v3
		}
	})
	return st.signV3
}

// sign runs C_SignInit and C_Sign on a pooled session.
func (s *tokenSigner) sign(mech uint, param []byte, data []byte) ([]byte, error) {
	if v3 := s.v3; v3 != nil {
		return s.signOn(mech, func(sess pkcs11.SessionHandle, h pkcs11.ObjectHandle) ([]byte, error) {
			return v3.sign(s.key.st.signNice, sess, h, mech, param, data)
		})
	}
	ctx := s.key.st.mod.ctx
	m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, param)}
	return s.signOn(mech, func(sess pkcs11.SessionHandle, h pkcs11.ObjectHandle) ([]byte, error) {
		if err := ctx.SignInit(sess, m, h); err != nil {
			return nil, err
		}
		return ctx.Sign(sess, data)
	})
}

// signOn runs one signature (once) on a pooled session. If the token no
// longer knows the key handle, the key is looked up again once.
func (s *tokenSigner) signOn(mech uint, once func(sess pkcs11.SessionHandle, h pkcs11.ObjectHandle) ([]byte, error)) ([]byte, error) {
	st := s.key.st
	var sig []byte
	err := st.withSession(func(sess pkcs11.SessionHandle) error {
		out, err := once(sess, s.key.handle())
		if isCKR(err, pkcs11.CKR_KEY_HANDLE_INVALID) || isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) {
			if !st.sessionLoggedIn(sess) {
				// Logged out behind our back: log in again and retry.
				return pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)
			}
			h, ferr := s.key.refind(sess)
			if ferr != nil {
				return ferr
			}
			out, err = once(sess, h)
		}
		if err != nil {
			if isStale(err) {
				return err
			}
			if isCKR(err, pkcs11.CKR_MECHANISM_INVALID) || isCKR(err, pkcs11.CKR_MECHANISM_PARAM_INVALID) {
				return fmt.Errorf("hsm: token %q refuses %s for key %q: %w", st.label, MechanismName(mech), s.key.Label, err)
			}
			return fmt.Errorf("hsm: token %q: signing with key %q (%s): %w", st.label, s.key.Label, MechanismName(mech), err)
		}
		sig = out
		return nil
	})
	return sig, err
}

// ecdsaDER turns the r||s that CKM_ECDSA returns into the ASN.1
// Ecdsa-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }) that X.509 and
// crypto/ecdsa use. It is written out by hand: encoding/asn1 costs several
// microseconds a signature, a visible share of a fast token's time.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 || len(raw) > 2*66 {
		return nil, fmt.Errorf("hsm: CKM_ECDSA returned %d bytes, not r||s", len(raw))
	}
	n := len(raw) / 2
	r, s := derUint(raw[:n]), derUint(raw[n:])
	body := 2 + len(r) + 2 + len(s) // each integer is at most 67 bytes: short-form lengths
	out := make([]byte, 0, 3+body)
	out = append(out, 0x30)
	if body >= 0x80 {
		out = append(out, 0x81)
	}
	out = append(out, byte(body), 0x02, byte(len(r)))
	out = append(out, r...)
	out = append(out, 0x02, byte(len(s)))
	return append(out, s...), nil
}

// derUint returns the content octets of a non-negative DER INTEGER whose
// big-endian magnitude is b: no superfluous leading zeros, and a zero byte
// in front when the top bit is set.
func derUint(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 {
		return []byte{0}
	}
	if b[0]&0x80 != 0 {
		return append([]byte{0}, b...)
	}
	return b
}

type pssParams struct{ mech, mgf uint }

var pssHash = map[crypto.Hash]pssParams{
	crypto.SHA224: {pkcs11.CKM_SHA224, pkcs11.CKG_MGF1_SHA224},
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// digestInfoPrefix holds, per hash, the DER DigestInfo (RFC 8017 §9.2)
// up to the digest itself: CKM_RSA_PKCS pads whatever it is given, so the
// caller supplies the DigestInfo.
var digestInfoPrefix = map[crypto.Hash][]byte{}

func init() {
	for h, oid := range map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA224: {2, 16, 840, 1, 101, 3, 4, 2, 4},
		crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
		crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2},
		crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3},
	} {
		der, err := asn1.Marshal(struct {
			Algo   pkix.AlgorithmIdentifier
			Digest []byte
		}{pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue}, make([]byte, h.Size())})
		if err != nil {
			panic(err)
		}
		digestInfoPrefix[h] = der[:len(der)-h.Size()]
	}
}
