package hsm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
	"github.com/qpki/qpki/pkg/algo"
)

// maxObjects bounds a search, so that a token full of objects cannot make
// qpki allocate without limit.
const maxObjects = 10000

// maxKeyIDLen bounds a CKA_ID given by a user.
const maxKeyIDLen = 64

// Key is a private key held in a token, with its public half read from
// the token.
type Key struct {
	Label   string
	ID      []byte
	KeyType uint // CKK_ value
	// Algorithm is what the token's key is, as far as qpki can tell; ""
	// when unknown. It is informative only: the signing algorithm always
	// comes from policy (see Token.Signer).
	Algorithm algo.Algorithm

	public crypto.PublicKey
	st     *tokenState

	mu   sync.Mutex // guards priv, which is refreshed if the token drops it
	priv pkcs11.ObjectHandle
}

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.public }

// IDHex returns CKA_ID in lower-case hex.
func (k *Key) IDHex() string { return hex.EncodeToString(k.ID) }

// Ref returns the metadata reference to this key; cfgPath is the
// configuration path as the metadata records it.
func (k *Key) Ref(cfgPath string) KeyRef {
	return KeyRef{Config: cfgPath, Label: k.Label, KeyID: k.IDHex()}
}

func (k *Key) handle() pkcs11.ObjectHandle {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.priv
}

// refind looks the private key up again by label, id and type, for tokens
// that invalidate object handles when their sessions are closed.
func (k *Key) refind(s pkcs11.SessionHandle) (pkcs11.ObjectHandle, error) {
	hs, err := findObjects(k.st.mod.ctx, s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.Label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, k.ID),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, k.KeyType),
	}, 2)
	if err != nil {
		return 0, err
	}
	if len(hs) != 1 {
		return 0, fmt.Errorf("hsm: key %q (id %s) is no longer on token %q", k.Label, k.IDHex(), k.st.label)
	}
	k.mu.Lock()
	k.priv = hs[0]
	k.mu.Unlock()
	return hs[0], nil
}

// KeyInfo describes a key for listings (qpki key list, --json).
type KeyInfo struct {
	Label     string `json:"label"`
	KeyID     string `json:"key_id"`
	KeyType   string `json:"key_type"`
	Algorithm string `json:"algorithm,omitempty"`
}

// ParseKeyID decodes a --key-id value (hex, optionally 0x-prefixed).
func ParseKeyID(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	if s == "" {
		return nil, nil
	}
	id, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("key id %q is not hex: %v", s, err)
	}
	if len(id) > maxKeyIDLen {
		return nil, fmt.Errorf("key id of %d bytes is longer than %d", len(id), maxKeyIDLen)
	}
	return id, nil
}

func findObjects(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(s, tmpl); err != nil {
		return nil, err
	}
	var out []pkcs11.ObjectHandle
	for {
		hs, _, err := ctx.FindObjects(s, 64)
		if err != nil {
			ctx.FindObjectsFinal(s)
			return nil, err
		}
		out = append(out, hs...)
		if len(hs) == 0 || len(out) >= max {
			break
		}
	}
	if err := ctx.FindObjectsFinal(s); err != nil {
		return nil, err
	}
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}

// attrs reads attributes that must all be present.
func attrs(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, h pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, t := range types {
		tmpl[i] = pkcs11.NewAttribute(t, nil)
	}
	got, err := ctx.GetAttributeValue(s, h, tmpl)
	if err != nil {
		return nil, err
	}
	m := make(map[uint][]byte, len(got))
	for _, a := range got {
		m[a.Type] = a.Value
	}
	return m, nil
}

// optionalAttr reads one attribute that may be absent.
func optionalAttr(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, h pkcs11.ObjectHandle, t uint) ([]byte, bool) {
	got, err := ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(t, nil)})
	if err != nil || len(got) != 1 || got[0].Value == nil {
		return nil, false
	}
	return got[0].Value, true
}

// ulong decodes a CK_ULONG attribute value (native byte order and size).
func ulong(b []byte) (uint, error) {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b)), nil
	case 4:
		return uint(binary.NativeEndian.Uint32(b)), nil
	}
	return 0, fmt.Errorf("CK_ULONG attribute of %d bytes", len(b))
}

// GenerateKey makes a key pair of algorithm alg in the token: CKA_TOKEN,
// CKA_PRIVATE, CKA_SENSITIVE, not extractable, signing only (no derive,
// decrypt or unwrap). An existing key with the same label and id is an
// error; an empty id gets one derived from the public key.
func (t *Token) GenerateKey(alg algo.Algorithm, label string, id []byte) (*Key, error) {
	if label == "" {
		return nil, errors.New("hsm: a key label is required")
	}
	if len(label) > 256 {
		return nil, errors.New("hsm: key label longer than 256 bytes")
	}
	if len(id) > maxKeyIDLen {
		return nil, fmt.Errorf("hsm: key id of %d bytes is longer than %d", len(id), maxKeyIDLen)
	}
	var key *Key
	err := t.st.withSession(func(s pkcs11.SessionHandle) error {
		if len(id) > 0 {
			if err := t.st.checkIDFree(s, label, id); err != nil {
				return err
			}
		}
		k, err := t.st.generate(s, alg, label, id, true)
		if err != nil {
			return err
		}
		key = k
		return nil
	})
	if err != nil {
		return nil, err
	}
	return key, nil
}

// checkIDFree refuses an id that a key on the token already has.
func (st *tokenState) checkIDFree(s pkcs11.SessionHandle, label string, id []byte) error {
	ctx := st.mod.ctx
	hs, err := findObjects(ctx, s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, id)}, maxObjects)
	if err != nil {
		return fmt.Errorf("hsm: token %q: searching for key id %x: %w", st.label, id, err)
	}
	for _, h := range hs {
		l, _ := optionalAttr(ctx, s, h, pkcs11.CKA_LABEL)
		if string(l) == label {
			return fmt.Errorf("hsm: token %q already holds a key labelled %q with id %x; choose another label or --key-id", st.label, label, id)
		}
	}
	if len(hs) > 0 {
		l, _ := optionalAttr(ctx, s, hs[0], pkcs11.CKA_LABEL)
		return fmt.Errorf("hsm: token %q already uses id %x for the key labelled %q; choose another --key-id", st.label, id, l)
	}
	return nil
}

// generate makes a key pair. onToken false makes session objects (for the
// self-test), which vanish when the session closes.
func (st *tokenState) generate(s pkcs11.SessionHandle, alg algo.Algorithm, label string, id []byte, onToken bool) (*Key, error) {
	info, ok := algo.Lookup(alg)
	if !ok {
		return nil, fmt.Errorf("hsm: unknown algorithm %q", alg)
	}
	mech, keyType, pubAttrs, privAttrs, err := st.keyGenParams(info)
	if err != nil {
		return nil, err
	}
	if err := st.need(mech, "generate "+string(alg)+" keys"); err != nil {
		return nil, err
	}
	genPair := func(id []byte) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
		pub := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, onToken),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		}
		priv := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, onToken),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		}
		if len(id) > 0 {
			pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
			priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
		}
		pub = append(pub, pubAttrs...)
		priv = append(priv, privAttrs...)
		return st.mod.ctx.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pub, priv)
	}
	pubH, privH, err := genPair(id)
	if err != nil {
		if isStale(err) {
			return nil, err
		}
		return nil, fmt.Errorf("hsm: token %q: generating %s key %q: %w", st.label, alg, label, err)
	}
	pub, err := st.readPublic(s, pubH, keyType)
	if err != nil {
		st.destroy(s, pubH, privH)
		return nil, fmt.Errorf("hsm: token %q: reading the new public key: %w", st.label, err)
	}
	if len(id) == 0 {
		derived, err := keyIDFor(pub)
		if err != nil {
			st.destroy(s, pubH, privH)
			return nil, fmt.Errorf("hsm: deriving a key id: %w", err)
		}
		set := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, derived)}
		err1 := st.mod.ctx.SetAttributeValue(s, pubH, set)
		err2 := st.mod.ctx.SetAttributeValue(s, privH, set)
		id = derived
		if err1 != nil || err2 != nil {
			// The token will not relabel its objects: make the pair again
			// with a random id fixed up front.
			st.destroy(s, pubH, privH)
			id = randomID()
			if pubH, privH, err = genPair(id); err != nil {
				return nil, fmt.Errorf("hsm: token %q: generating %s key %q: %w", st.label, alg, label, err)
			}
			if pub, err = st.readPublic(s, pubH, keyType); err != nil {
				st.destroy(s, pubH, privH)
				return nil, fmt.Errorf("hsm: token %q: reading the new public key: %w", st.label, err)
			}
		}
	}
	k := &Key{Label: label, ID: bytes.Clone(id), KeyType: keyType, public: pub, st: st, priv: privH}
	k.Algorithm, _ = algo.Of(pub)
	return k, nil
}

func randomID() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}

func (st *tokenState) destroy(s pkcs11.SessionHandle, hs ...pkcs11.ObjectHandle) {
	for _, h := range hs {
		st.mod.ctx.DestroyObject(s, h)
	}
}

// need returns an error naming mechanism m when the token does not list it.
func (st *tokenState) need(m uint, purpose string) error {
	if len(st.mechs) == 0 || st.mechs[m] {
		return nil // an empty list means the token would not tell
	}
	return fmt.Errorf("hsm: token %q does not offer %s (needed to %s)", st.label, MechanismName(m), purpose)
}

// keyGenParams returns the mechanism, key type and algorithm-specific
// template parts for generating a key pair of info's algorithm.
func (st *tokenState) keyGenParams(info *algo.Info) (mech, keyType uint, pub, priv []*pkcs11.Attribute, err error) {
	signOnly := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
	}
	verifyOnly := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
	}
	switch info.Family {
	case algo.FamilyECDSA, algo.FamilyEd25519:
		oid, ok := curveOID(info.Name)
		if !ok {
			return 0, 0, nil, nil, fmt.Errorf("hsm: no curve for %s", info.Name)
		}
		params, _ := asn1.Marshal(oid)
		mech, keyType = pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKK_EC
		if info.Family == algo.FamilyEd25519 {
			mech, keyType = CKM_EC_EDWARDS_KEY_PAIR_GEN, CKK_EC_EDWARDS
		}
		pub = append([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params)}, verifyOnly...)
		return mech, keyType, pub, signOnly, nil
	case algo.FamilyRSA:
		pub = append([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, info.Bits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		}, verifyOnly...)
		return pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKK_RSA, pub, signOnly, nil
	}
	m, ok := st.table.For(info.Name)
	if !ok {
		return 0, 0, nil, nil, fmt.Errorf("hsm: mechanism table %q has no entry for %s", st.table.Name, info.Name)
	}
	ps := pkcs11.NewAttribute(st.table.ParameterSetAttribute, m.ParameterSet)
	if m.Sign != 0 {
		return m.KeyGen, m.KeyType, append([]*pkcs11.Attribute{ps}, verifyOnly...), signOnly, nil
	}
	pub = []*pkcs11.Attribute{ps, pkcs11.NewAttribute(CKA_ENCAPSULATE, true), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false)}
	priv = []*pkcs11.Attribute{pkcs11.NewAttribute(CKA_DECAPSULATE, true), pkcs11.NewAttribute(pkcs11.CKA_SIGN, false)}
	return m.KeyGen, m.KeyType, pub, priv, nil
}

// readPublic decodes the public key of object h (a public key object, or
// a private key object that carries its public half).
func (st *tokenState) readPublic(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, keyType uint) (crypto.PublicKey, error) {
	ctx := st.mod.ctx
	switch keyType {
	case pkcs11.CKK_EC, CKK_EC_EDWARDS:
		a, err := attrs(ctx, s, h, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
		if err != nil {
			break
		}
		if keyType == CKK_EC_EDWARDS {
			return decodeEdwardsPublic(a[pkcs11.CKA_EC_PARAMS], a[pkcs11.CKA_EC_POINT])
		}
		return decodeECPublic(a[pkcs11.CKA_EC_PARAMS], a[pkcs11.CKA_EC_POINT])
	case pkcs11.CKK_RSA:
		a, err := attrs(ctx, s, h, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			break
		}
		return decodeRSAPublic(a[pkcs11.CKA_MODULUS], a[pkcs11.CKA_PUBLIC_EXPONENT])
	default:
		if st.table.isPQCKeyType(keyType) {
			if pub, err := st.readPQCPublic(s, h, keyType); err == nil {
				return pub, nil
			}
		}
	}
	// PKCS#11 3.0 lets any key object carry its SubjectPublicKeyInfo.
	if spki, ok := optionalAttr(ctx, s, h, pkcs11.CKA_PUBLIC_KEY_INFO); ok && len(spki) > 0 {
		if len(spki) > algo.MaxKeyDER {
			return nil, errors.New("CKA_PUBLIC_KEY_INFO too large")
		}
		return algo.ParsePKIX(spki)
	}
	return nil, fmt.Errorf("cannot read the public half of a %s key", KeyTypeName(keyType))
}

func (st *tokenState) readPQCPublic(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, keyType uint) (crypto.PublicKey, error) {
	ctx := st.mod.ctx
	a, err := attrs(ctx, s, h, st.table.ParameterSetAttribute, pkcs11.CKA_VALUE)
	if err != nil {
		return nil, err
	}
	ps, err := ulong(a[st.table.ParameterSetAttribute])
	if err != nil {
		return nil, err
	}
	alg, ok := st.table.algorithmFor(keyType, ps)
	if !ok {
		return nil, fmt.Errorf("unknown parameter set %d for %s", ps, KeyTypeName(keyType))
	}
	if len(a[pkcs11.CKA_VALUE]) > algo.MaxKeyDER {
		return nil, errors.New("public key value too large")
	}
	return publicFromRaw(alg, a[pkcs11.CKA_VALUE])
}

// FindKey finds one private key by label, id or both. No match, or more
// than one, is an error that lists what the token holds.
func (t *Token) FindKey(label string, id []byte) (*Key, error) {
	if label == "" && len(id) == 0 {
		return nil, errors.New("hsm: give a key label, a key id or both")
	}
	var key *Key
	err := t.st.withSession(func(s pkcs11.SessionHandle) error {
		k, err := t.st.findKey(s, label, id)
		key = k
		return err
	})
	return key, err
}

func describeKey(label string, id []byte) string {
	switch {
	case label != "" && len(id) > 0:
		return fmt.Sprintf("label %q and id %x", label, id)
	case label != "":
		return fmt.Sprintf("label %q", label)
	}
	return fmt.Sprintf("id %x", id)
}

func (st *tokenState) findKey(s pkcs11.SessionHandle, label string, id []byte) (*Key, error) {
	ctx := st.mod.ctx
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}
	if label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if len(id) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	hs, err := findObjects(ctx, s, tmpl, maxObjects)
	if err != nil {
		if isStale(err) {
			return nil, err
		}
		return nil, fmt.Errorf("hsm: token %q: searching for keys: %w", st.label, err)
	}
	switch len(hs) {
	case 0:
		msg := fmt.Sprintf("hsm: token %q holds no private key with %s", st.label, describeKey(label, id))
		if label != "" && len(id) > 0 {
			if others, err := st.listPrivate(s, label, nil); err == nil && len(others) > 0 {
				msg += "; keys with that label: " + listKeyInfos(others)
			}
		}
		return nil, errors.New(msg)
	case 1:
		return st.loadKey(s, hs[0])
	}
	infos := make([]KeyInfo, 0, len(hs))
	for _, h := range hs {
		infos = append(infos, st.keyInfo(s, h))
	}
	return nil, fmt.Errorf("hsm: %d private keys on token %q match %s: %s; select one with its label and id",
		len(hs), st.label, describeKey(label, id), listKeyInfos(infos))
}

func listKeyInfos(ks []KeyInfo) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = fmt.Sprintf("label %q id %s (%s)", k.Label, k.KeyID, k.KeyType)
	}
	return strings.Join(s, ", ")
}

// loadKey reads a private key object and its public half.
func (st *tokenState) loadKey(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) (*Key, error) {
	ctx := st.mod.ctx
	a, err := attrs(ctx, s, h, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_KEY_TYPE)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: reading key attributes: %w", st.label, err)
	}
	kt, err := ulong(a[pkcs11.CKA_KEY_TYPE])
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: CKA_KEY_TYPE: %w", st.label, err)
	}
	k := &Key{Label: string(a[pkcs11.CKA_LABEL]), ID: a[pkcs11.CKA_ID], KeyType: kt, st: st, priv: h}
	pub, err := st.publicFor(s, k, h)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: key %q (id %s): %w", st.label, k.Label, k.IDHex(), err)
	}
	k.public = pub
	k.Algorithm, _ = algo.Of(pub)
	return k, nil
}

// publicFor finds the public key object paired with a private key (same
// CKA_ID and key type, preferring the same label) and decodes it, falling
// back to what the private object itself carries.
func (st *tokenState) publicFor(s pkcs11.SessionHandle, k *Key, privH pkcs11.ObjectHandle) (crypto.PublicKey, error) {
	ctx := st.mod.ctx
	var hs []pkcs11.ObjectHandle
	if len(k.ID) > 0 {
		var err error
		hs, err = findObjects(ctx, s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_ID, k.ID),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, k.KeyType),
		}, 16)
		if err != nil {
			return nil, err
		}
	}
	// Same label first.
	ordered := make([]pkcs11.ObjectHandle, 0, len(hs))
	var others []pkcs11.ObjectHandle
	for _, h := range hs {
		if l, _ := optionalAttr(ctx, s, h, pkcs11.CKA_LABEL); string(l) == k.Label {
			ordered = append(ordered, h)
		} else {
			others = append(others, h)
		}
	}
	for _, h := range append(ordered, others...) {
		if pub, err := st.readPublic(s, h, k.KeyType); err == nil {
			return pub, nil
		}
	}
	return st.readPublic(s, privH, k.KeyType)
}

func (st *tokenState) keyInfo(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) KeyInfo {
	ctx := st.mod.ctx
	a, err := attrs(ctx, s, h, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_KEY_TYPE)
	if err != nil {
		return KeyInfo{KeyType: "unreadable"}
	}
	ki := KeyInfo{Label: string(a[pkcs11.CKA_LABEL]), KeyID: hex.EncodeToString(a[pkcs11.CKA_ID])}
	kt, err := ulong(a[pkcs11.CKA_KEY_TYPE])
	if err != nil {
		ki.KeyType = "unreadable"
		return ki
	}
	ki.KeyType = KeyTypeName(kt)
	k := &Key{Label: ki.Label, ID: a[pkcs11.CKA_ID], KeyType: kt}
	if pub, err := st.publicFor(s, k, h); err == nil {
		if alg, err := algo.Of(pub); err == nil {
			ki.Algorithm = string(alg)
		}
	}
	return ki
}

func (st *tokenState) listPrivate(s pkcs11.SessionHandle, label string, id []byte) ([]KeyInfo, error) {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}
	if label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if len(id) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	hs, err := findObjects(st.mod.ctx, s, tmpl, maxObjects)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, 0, len(hs))
	for _, h := range hs {
		out = append(out, st.keyInfo(s, h))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Label != out[j].Label {
			return out[i].Label < out[j].Label
		}
		return out[i].KeyID < out[j].KeyID
	})
	return out, nil
}

// wrap names the token and the operation in err, leaving errors that
// withSession retries on as they are.
func (st *tokenState) wrap(err error, what string) error {
	if err == nil || isStale(err) {
		return err
	}
	return fmt.Errorf("hsm: token %q: %s: %w", st.label, what, err)
}

// ListKeys lists the private keys on the token, sorted by label and id.
func (t *Token) ListKeys() ([]KeyInfo, error) {
	var out []KeyInfo
	err := t.st.withSession(func(s pkcs11.SessionHandle) error {
		ks, err := t.st.listPrivate(s, "", nil)
		out = ks
		return t.st.wrap(err, "listing keys")
	})
	return out, err
}

// DestroyKey deletes a key pair (the private key and its public objects).
// It is meant for undoing a failed setup; the CLI does not expose it.
func (t *Token) DestroyKey(k *Key) error {
	return t.st.withSession(func(s pkcs11.SessionHandle) error {
		ctx := t.st.mod.ctx
		hs, err := findObjects(ctx, s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.Label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, k.ID),
		}, maxObjects)
		if err != nil {
			return t.st.wrap(err, "searching for key "+k.Label)
		}
		for _, h := range hs {
			if err := ctx.DestroyObject(s, h); err != nil {
				return t.st.wrap(err, "destroying key "+k.Label)
			}
		}
		return nil
	})
}
