package hsm

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// maxCiphertext bounds a KEM ciphertext given to Decapsulate (ML-KEM-1024
// ciphertexts are 1568 bytes).
const maxCiphertext = 64 << 10

// p11v3 returns the module's PKCS#11 3.x layer.
func (st *tokenState) p11v3(purpose string) (*p11v3, error) {
	v3, err := loadP11v3(st.mod.path)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: %s needs the PKCS#11 3.x functions: %v", st.label, purpose, err)
	}
	return v3, nil
}

// signContext signs the whole message under a FIPS 204/205 context string,
// passed in a CK_SIGN_ADDITIONAL_CONTEXT (PKCS#11 3.2), hedged if the
// token can.
func (s *tokenSigner) signContext(ctx, data []byte) ([]byte, error) {
	if len(ctx) > 255 {
		return nil, fmt.Errorf("hsm: %s: context of %d bytes exceeds 255", s.alg, len(ctx))
	}
	v3, err := s.key.st.p11v3("signing with a context")
	if err != nil {
		return nil, err
	}
	return s.signOn(s.mech, func(sess pkcs11.SessionHandle, h pkcs11.ObjectHandle) ([]byte, error) {
		return v3.signWithContext(s.key.st.signNice, sess, h, s.mech, CKH_HEDGE_PREFERRED, ctx, data)
	})
}

// kemMechanism returns the encapsulation mechanism of key k.
func (st *tokenState) kemMechanism(k *Key) (uint, error) {
	if k == nil || k.st != st {
		return 0, errors.New("hsm: the key does not belong to this token")
	}
	m, ok := st.table.For(k.Algorithm)
	if !ok || m.Encapsulate == 0 || m.KeyType != k.KeyType {
		return 0, fmt.Errorf("hsm: key %q (id %s) is a %s key, not a KEM key of mechanism table %q",
			k.Label, k.IDHex(), KeyTypeName(k.KeyType), st.table.Name)
	}
	if err := st.need(m.Encapsulate, "encapsulate with "+string(k.Algorithm)); err != nil {
		return 0, err
	}
	return m.Encapsulate, nil
}

// takeSecret reads the shared secret that C_EncapsulateKey or
// C_DecapsulateKey left in a session object, and destroys the object.
func (st *tokenState) takeSecret(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) ([]byte, error) {
	defer st.mod.ctx.DestroyObject(s, h)
	a, err := attrs(st.mod.ctx, s, h, pkcs11.CKA_VALUE)
	if err != nil {
		return nil, err
	}
	if len(a[pkcs11.CKA_VALUE]) == 0 {
		return nil, errors.New("the token returned an empty shared secret")
	}
	return a[pkcs11.CKA_VALUE], nil
}

// Encapsulate makes a fresh shared secret with the public half of the
// ML-KEM key k (C_EncapsulateKey, PKCS#11 3.2) and returns it with the
// ciphertext that carries it to the private key.
func (t *Token) Encapsulate(k *Key) (ciphertext, sharedSecret []byte, err error) {
	st := t.st
	mech, err := st.kemMechanism(k)
	if err != nil {
		return nil, nil, err
	}
	v3, err := st.p11v3("C_EncapsulateKey")
	if err != nil {
		return nil, nil, err
	}
	if !v3.has32() {
		major, minor := v3.version()
		return nil, nil, fmt.Errorf("hsm: token %q: the module speaks PKCS#11 %d.%d; C_EncapsulateKey needs 3.2", st.label, major, minor)
	}
	err = st.withSession(func(s pkcs11.SessionHandle) error {
		hs, err := findObjects(st.mod.ctx, s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_ID, k.ID),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, k.KeyType),
		}, 2)
		if err != nil {
			return st.wrap(err, "searching for the public key of "+k.Label)
		}
		if len(hs) != 1 {
			return fmt.Errorf("hsm: token %q: %d public key objects with id %s, want 1", st.label, len(hs), k.IDHex())
		}
		ct, secretH, err := v3.encapsulate(s, mech, hs[0])
		if err != nil {
			return st.wrap(err, "C_EncapsulateKey with key "+k.Label)
		}
		secret, err := st.takeSecret(s, secretH)
		if err != nil {
			return st.wrap(err, "reading the shared secret")
		}
		ciphertext, sharedSecret = ct, secret
		return nil
	})
	return ciphertext, sharedSecret, err
}

// Decapsulate recovers the shared secret of ciphertext with the private
// ML-KEM key k (C_DecapsulateKey, PKCS#11 3.2).
func (t *Token) Decapsulate(k *Key, ciphertext []byte) ([]byte, error) {
	st := t.st
	mech, err := st.kemMechanism(k)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) == 0 || len(ciphertext) > maxCiphertext {
		return nil, fmt.Errorf("hsm: ciphertext of %d bytes", len(ciphertext))
	}
	v3, err := st.p11v3("C_DecapsulateKey")
	if err != nil {
		return nil, err
	}
	if !v3.has32() {
		major, minor := v3.version()
		return nil, fmt.Errorf("hsm: token %q: the module speaks PKCS#11 %d.%d; C_DecapsulateKey needs 3.2", st.label, major, minor)
	}
	var secret []byte
	err = st.withSession(func(s pkcs11.SessionHandle) error {
		h, err := v3.decapsulate(s, mech, k.handle(), ciphertext)
		if isCKR(err, pkcs11.CKR_KEY_HANDLE_INVALID) || isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) {
			if !st.sessionLoggedIn(s) {
				return pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)
			}
			kh, ferr := k.refind(s)
			if ferr != nil {
				return ferr
			}
			h, err = v3.decapsulate(s, mech, kh, ciphertext)
		}
		if err != nil {
			return st.wrap(err, "C_DecapsulateKey with key "+k.Label)
		}
		secret, err = st.takeSecret(s, h)
		return st.wrap(err, "reading the shared secret")
	})
	return secret, err
}
