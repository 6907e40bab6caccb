package main

import (
	"bytes"
	"encoding/binary"
	"sort"
)

// attribute is one CK_ATTRIBUTE as it came off the wire.
type attribute struct {
	typ   uint64
	value []byte
}

// mechanism is one CK_MECHANISM as it came off the wire.
type mechanism struct {
	typ        uint64
	hasContext bool // a CK_SIGN_ADDITIONAL_CONTEXT was given
	hedge      uint64
	context    []byte
	hasRaw     bool // any other parameter
	raw        []byte
}

type attrKind int

const (
	kindBool attrKind = iota
	kindULong
	kindBytes
)

// attrSpec says how an attribute is encoded and who may set it.
type attrSpec struct {
	kind attrKind
	// classes lists the object classes that carry the attribute.
	classes []uint64
	// settable means a template may give it when a key is made.
	settable bool
	// modifiable means C_SetAttributeValue may change it.
	modifiable bool
}

var (
	keyClasses = []uint64{CKO_PUBLIC_KEY, CKO_PRIVATE_KEY, CKO_SECRET_KEY}
	pubPriv    = []uint64{CKO_PUBLIC_KEY, CKO_PRIVATE_KEY}
	pubOnly    = []uint64{CKO_PUBLIC_KEY}
	privOnly   = []uint64{CKO_PRIVATE_KEY}
	privSecret = []uint64{CKO_PRIVATE_KEY, CKO_SECRET_KEY}
	pubSecret  = []uint64{CKO_PUBLIC_KEY, CKO_SECRET_KEY}
	secretOnly = []uint64{CKO_SECRET_KEY}
	attrSpecs  = map[uint64]attrSpec{}
	ulongAttrs = map[uint64]bool{}
)

func init() {
	add := func(t uint64, k attrKind, classes []uint64, settable, modifiable bool) {
		attrSpecs[t] = attrSpec{kind: k, classes: classes, settable: settable, modifiable: modifiable}
		if k == kindULong {
			ulongAttrs[t] = true
		}
	}
	add(CKA_CLASS, kindULong, keyClasses, true, false)
	add(CKA_TOKEN, kindBool, keyClasses, true, false)
	add(CKA_PRIVATE, kindBool, keyClasses, true, false)
	add(CKA_MODIFIABLE, kindBool, keyClasses, true, false)
	add(CKA_COPYABLE, kindBool, keyClasses, true, false)
	add(CKA_DESTROYABLE, kindBool, keyClasses, true, false)
	add(CKA_LABEL, kindBytes, keyClasses, true, true)
	add(CKA_UNIQUE_ID, kindBytes, keyClasses, false, false)
	add(CKA_KEY_TYPE, kindULong, keyClasses, true, false)
	add(CKA_ID, kindBytes, keyClasses, true, true)
	add(CKA_START_DATE, kindBytes, keyClasses, true, true)
	add(CKA_END_DATE, kindBytes, keyClasses, true, true)
	add(CKA_DERIVE, kindBool, keyClasses, true, false)
	add(CKA_LOCAL, kindBool, keyClasses, false, false)
	add(CKA_KEY_GEN_MECHANISM, kindULong, keyClasses, false, false)
	add(CKA_SUBJECT, kindBytes, pubPriv, true, true)
	add(CKA_ENCRYPT, kindBool, pubSecret, true, false)
	add(CKA_VERIFY, kindBool, pubSecret, true, false)
	add(CKA_VERIFY_RECOVER, kindBool, pubOnly, true, false)
	add(CKA_WRAP, kindBool, pubSecret, true, false)
	add(CKA_TRUSTED, kindBool, pubSecret, false, false)
	add(CKA_ENCAPSULATE, kindBool, pubOnly, true, false)
	add(CKA_PUBLIC_KEY_INFO, kindBytes, pubPriv, false, false)
	add(CKA_SENSITIVE, kindBool, privSecret, true, false)
	add(CKA_DECRYPT, kindBool, privSecret, true, false)
	add(CKA_SIGN, kindBool, privSecret, true, false)
	add(CKA_SIGN_RECOVER, kindBool, privOnly, true, false)
	add(CKA_UNWRAP, kindBool, privSecret, true, false)
	add(CKA_EXTRACTABLE, kindBool, privSecret, true, false)
	add(CKA_ALWAYS_SENSITIVE, kindBool, privSecret, false, false)
	add(CKA_NEVER_EXTRACTABLE, kindBool, privSecret, false, false)
	add(CKA_WRAP_WITH_TRUSTED, kindBool, privSecret, true, false)
	add(CKA_ALWAYS_AUTHENTICATE, kindBool, privOnly, true, false)
	add(CKA_DECAPSULATE, kindBool, privOnly, true, false)
	add(CKA_EC_PARAMS, kindBytes, pubPriv, true, false)
	add(CKA_EC_POINT, kindBytes, pubOnly, false, false)
	add(CKA_PARAMETER_SET, kindULong, pubPriv, true, false)
	add(CKA_VALUE, kindBytes, keyClasses, false, false)
	add(CKA_VALUE_LEN, kindULong, secretOnly, true, false)
	add(CKA_SEED, kindBytes, privOnly, false, false)
}

func (s attrSpec) allows(class uint64) bool {
	for _, c := range s.classes {
		if c == class {
			return true
		}
	}
	return false
}

// object is a key held by a slot. attrs holds every readable attribute in
// canonical form (CK_ULONG values as 8 little-endian bytes, CK_BBOOL as
// one byte); the key material is only ever held sealed under the token key
// (token objects) or in memory (session objects).
type object struct {
	handle uint64
	attrs  map[uint64][]byte
	// material is the secret part of a private or secret key: the EC
	// scalar, the ML-DSA or ML-KEM seed, the SLH-DSA private key, the
	// shared secret. For token objects it is nil and sealed holds it.
	material []byte
	sealed   []byte

	// Session objects belong to one session of one application.
	session uint64
	owner   *app
}

func (o *object) ulong(t uint64) (uint64, bool) {
	v, ok := o.attrs[t]
	if !ok || len(v) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(v), true
}

func (o *object) flag(t uint64) bool {
	v, ok := o.attrs[t]
	return ok && len(v) == 1 && v[0] != 0
}

func (o *object) class() uint64   { c, _ := o.ulong(CKA_CLASS); return c }
func (o *object) keyType() uint64 { k, _ := o.ulong(CKA_KEY_TYPE); return k }
func (o *object) isToken() bool   { return o.flag(CKA_TOKEN) }
func (o *object) isPrivate() bool { return o.flag(CKA_PRIVATE) }

func ulongBytes(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func boolBytes(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// canonical converts a value given by a client whose CK_ULONG has
// ulongSize bytes into the stored form, or returns the CKR_ code that
// rejects it.
func canonical(t uint64, v []byte, ulongSize int) ([]byte, uint64) {
	spec, ok := attrSpecs[t]
	if !ok {
		return nil, CKR_ATTRIBUTE_TYPE_INVALID
	}
	switch spec.kind {
	case kindBool:
		if len(v) != 1 {
			return nil, CKR_ATTRIBUTE_VALUE_INVALID
		}
		return boolBytes(v[0] != 0), CKR_OK
	case kindULong:
		switch {
		case len(v) != ulongSize:
			return nil, CKR_ATTRIBUTE_VALUE_INVALID
		case ulongSize == 4:
			return ulongBytes(uint64(binary.LittleEndian.Uint32(v))), CKR_OK
		default:
			return ulongBytes(binary.LittleEndian.Uint64(v)), CKR_OK
		}
	}
	return v, CKR_OK
}

// external converts a stored value for a client.
func external(t uint64, v []byte, ulongSize int) []byte {
	if ulongAttrs[t] && len(v) == 8 && ulongSize == 4 {
		return binary.LittleEndian.AppendUint32(nil, uint32(binary.LittleEndian.Uint64(v)))
	}
	return v
}

// template is a validated template: canonical values by type.
type template map[uint64][]byte

func (t template) ulong(typ uint64) (uint64, bool) {
	v, ok := t[typ]
	if !ok {
		return 0, false
	}
	return binary.LittleEndian.Uint64(v), true
}

func (t template) flag(typ uint64, def bool) bool {
	v, ok := t[typ]
	if !ok {
		return def
	}
	return v[0] != 0
}

// parseTemplate checks a template for an object of class: every attribute
// known, carried by the class, settable and well formed.
func parseTemplate(attrs []attribute, class uint64, ulongSize int) (template, uint64) {
	t := template{}
	for _, a := range attrs {
		spec, ok := attrSpecs[a.typ]
		if !ok || !spec.allows(class) {
			return nil, CKR_ATTRIBUTE_TYPE_INVALID
		}
		if !spec.settable {
			return nil, CKR_ATTRIBUTE_READ_ONLY
		}
		v, rv := canonical(a.typ, a.value, ulongSize)
		if rv != CKR_OK {
			return nil, rv
		}
		if old, dup := t[a.typ]; dup && !bytes.Equal(old, v) {
			return nil, CKR_TEMPLATE_INCONSISTENT
		}
		t[a.typ] = v
	}
	if c, ok := t.ulong(CKA_CLASS); ok && c != class {
		return nil, CKR_TEMPLATE_INCONSISTENT
	}
	return t, CKR_OK
}

// matches reports whether o has every attribute of a search template. The
// sensitive material is never compared.
func (o *object) matches(search []attribute, ulongSize int) bool {
	for _, a := range search {
		have, ok := o.attrs[a.typ]
		if !ok {
			return false
		}
		want, rv := canonical(a.typ, a.value, ulongSize)
		if rv != CKR_OK || !bytes.Equal(have, want) {
			return false
		}
	}
	return true
}

// readable returns an attribute for C_GetAttributeValue.
func (o *object) readable(t uint64) ([]byte, uint64) {
	switch t {
	case CKA_VALUE, CKA_SEED:
		if o.class() == CKO_PRIVATE_KEY {
			return nil, attrSensitive
		}
		if o.class() == CKO_SECRET_KEY && t == CKA_VALUE {
			if o.flag(CKA_SENSITIVE) || !o.flag(CKA_EXTRACTABLE) {
				return nil, attrSensitive
			}
			return nil, attrOK // filled in by the caller, which holds the token key
		}
	}
	v, ok := o.attrs[t]
	if !ok {
		return nil, attrInvalid
	}
	return v, attrOK
}

func sortedHandles(m map[uint64]*object) []uint64 {
	hs := make([]uint64, 0, len(m))
	for h := range m {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i] < hs[j] })
	return hs
}
