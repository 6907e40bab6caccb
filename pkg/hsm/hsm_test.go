package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/hsm/hsmtest"
)

// Every token the package's tests use: SoftHSM2 is initialised once per
// process, so they are all made up front. "qpki-dup" is there twice.
func TestMain(m *testing.M) {
	hsmtest.Main(m, "qpki-main", "qpki-a", "qpki-b", "qpki-dup", "qpki-dup",
		"qpki-pin", "qpki-recover", "qpki-logout", "qpki-selftest", "qpki-bench")
}

func openToken(t testing.TB, label string, opts ...Option) *Token {
	t.Helper()
	env := hsmtest.Get(t)
	tok, err := OpenFile(env.Config(t, label), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}

// genKey generates a key that is destroyed when the test ends: the
// tokens live as long as the test process, and a second run (-count 2)
// must not find the first run's keys under the same labels and ids.
func genKey(t testing.TB, tok *Token, alg algo.Algorithm, label string, id []byte) (*Key, error) {
	k, err := tok.GenerateKey(alg, label, id)
	if err == nil {
		t.Cleanup(func() { tok.DestroyKey(k) })
	}
	return k, err
}

// noSecret fails when an error message contains a PIN.
func noSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, hsmtest.PIN, hsmtest.SOPIN) {
		if err != nil && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a PIN", err)
		}
	}
}

func mustContain(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

// selfSign makes and checks a self-signed certificate with s, which shows
// that Public() is usable by crypto/x509 and that the signature is in the
// form X.509 wants.
func selfSign(t *testing.T, s crypto.Signer, sigAlg x509.SignatureAlgorithm) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "qpki hsm test"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		SignatureAlgorithm:    sigAlg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Fatalf("certificate signature: %v", err)
	}
}

func TestGenerateSignVerify(t *testing.T) {
	tok := openToken(t, "qpki-main")
	for _, alg := range []algo.Algorithm{algo.ECDSAP256, algo.ECDSAP384, algo.ECDSAP521,
		algo.RSA2048, algo.RSA3072, algo.RSA4096, algo.Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			key, err := genKey(t, tok, alg, "gen-"+string(alg), nil)
			if err != nil {
				t.Fatal(err)
			}
			if key.Algorithm != alg {
				t.Errorf("key algorithm %q, want %q", key.Algorithm, alg)
			}
			// The derived id is the public key's RFC 7093 identifier.
			if id, _ := keyIDFor(key.Public()); !bytes.Equal(id, key.ID) {
				t.Errorf("key id %x, want %x", key.ID, id)
			}
			s, err := tok.Signer(key, alg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Algorithm() != alg {
				t.Errorf("Algorithm() = %s", s.Algorithm())
			}
			msg := []byte("to be signed by " + string(alg))
			sig, err := algo.SignDigest(s, rand.Reader, msg, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := algo.VerifyDigest(s.Public(), alg, msg, sig, false); err != nil {
				t.Fatalf("Go does not verify the token's signature: %v", err)
			}
			if err := algo.VerifyDigest(s.Public(), alg, []byte("other"), sig, false); err == nil {
				t.Fatal("signature verifies for another message")
			}
			selfSign(t, s, 0)

			// The private key is sensitive and cannot leave the token.
			err = tok.st.withSession(func(sess pkcs11.SessionHandle) error {
				a, err := attrs(tok.st.mod.ctx, sess, key.handle(), pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE,
					pkcs11.CKA_SIGN, pkcs11.CKA_DERIVE, pkcs11.CKA_DECRYPT, pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE)
				if err != nil {
					return err
				}
				want := map[uint]byte{pkcs11.CKA_SENSITIVE: 1, pkcs11.CKA_EXTRACTABLE: 0, pkcs11.CKA_SIGN: 1,
					pkcs11.CKA_DERIVE: 0, pkcs11.CKA_DECRYPT: 0, pkcs11.CKA_TOKEN: 1, pkcs11.CKA_PRIVATE: 1}
				for typ, v := range want {
					if len(a[typ]) != 1 || a[typ][0] != v {
						t.Errorf("attribute 0x%x = %v, want %d", typ, a[typ], v)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRSASignatureSchemes(t *testing.T) {
	tok := openToken(t, "qpki-main")
	key, err := genKey(t, tok, algo.RSA2048, "rsa-schemes", []byte{0x52, 0x53})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := tok.signer(key, algo.RSA2048, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ts.v3 == nil {
		t.Fatal("the signer does not sign through the cgo layer")
	}
	// Both signing paths: one call into C, and miekg/pkcs11's two, which
	// signs when the cgo layer cannot load the module.
	t.Run("one call", func(t *testing.T) { checkRSASchemes(t, ts) })
	ts.v3 = nil
	t.Run("miekg", func(t *testing.T) { checkRSASchemes(t, ts) })
}

func checkRSASchemes(t *testing.T, s *tokenSigner) {
	pub := s.Public().(*rsa.PublicKey)
	msg := []byte("rsa schemes")
	d256 := sha256.Sum256(msg)
	d384 := sha512.Sum384(msg)
	d512 := sha512.Sum512(msg)
	for _, c := range []struct {
		h crypto.Hash
		d []byte
	}{{crypto.SHA256, d256[:]}, {crypto.SHA384, d384[:]}, {crypto.SHA512, d512[:]}} {
		sig, err := s.Sign(rand.Reader, c.d, c.h)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(pub, c.h, c.d, sig); err != nil {
			t.Errorf("PKCS#1 v1.5 with %v: %v", c.h, err)
		}
		for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, 20} {
			opts := &rsa.PSSOptions{SaltLength: salt, Hash: c.h}
			sig, err := s.Sign(rand.Reader, c.d, opts)
			if err != nil {
				t.Fatalf("PSS %v salt %d: %v", c.h, salt, err)
			}
			verify := &rsa.PSSOptions{SaltLength: salt}
			if salt == rsa.PSSSaltLengthAuto {
				verify.SaltLength = c.h.Size() // what the signer chose for "auto"
			}
			if err := rsa.VerifyPSS(pub, c.h, c.d, sig, verify); err != nil {
				t.Errorf("PSS with %v, salt %d: %v", c.h, salt, err)
			}
			if err := rsa.VerifyPKCS1v15(pub, c.h, c.d, sig); err == nil {
				t.Error("a PSS signature verifies as PKCS#1 v1.5")
			}
		}
	}
	sig, err := algo.SignDigest(s, rand.Reader, msg, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := algo.VerifyDigest(pub, algo.RSA2048, msg, sig, true); err != nil {
		t.Error(err)
	}
	selfSign(t, s, x509.SHA256WithRSAPSS)
	selfSign(t, s, x509.SHA384WithRSA)

	if _, err := s.Sign(rand.Reader, d256[:20], crypto.SHA256); err == nil {
		t.Error("a short digest was signed")
	}
	if _, err := s.Sign(rand.Reader, d256[:20], crypto.SHA1); err == nil {
		t.Error("SHA-1 PKCS#1 v1.5 was signed")
	}
	if _, err := s.Sign(rand.Reader, msg, crypto.Hash(0)); err == nil {
		t.Error("a raw message was signed with RSA")
	}
}

func TestSignerOptionChecks(t *testing.T) {
	tok := openToken(t, "qpki-main")
	ec, err := genKey(t, tok, algo.ECDSAP256, "opts-ec", nil)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := genKey(t, tok, algo.Ed25519, "opts-ed", nil)
	if err != nil {
		t.Fatal(err)
	}
	es, _ := tok.Signer(ec, algo.ECDSAP256)
	if _, err := es.Sign(rand.Reader, []byte("message"), crypto.Hash(0)); err == nil {
		t.Error("ECDSA signed a message with no hash")
	}
	d := sha256.Sum256([]byte("m"))
	if _, err := es.Sign(rand.Reader, d[:], crypto.SHA384); err == nil {
		t.Error("ECDSA signed a digest of the wrong length")
	}
	eds, _ := tok.Signer(ed, algo.Ed25519)
	if _, err := eds.Sign(rand.Reader, d[:], crypto.SHA512); err == nil {
		t.Error("Ed25519ph accepted")
	}
	if _, err := eds.Sign(rand.Reader, []byte("m"), &ed25519.Options{Context: "ctx"}); err == nil {
		t.Error("Ed25519ctx accepted")
	}
	sig, err := eds.Sign(rand.Reader, []byte("m"), &ed25519.Options{})
	if err != nil || !ed25519.Verify(eds.Public().(ed25519.PublicKey), []byte("m"), sig) {
		t.Errorf("pure Ed25519 through ed25519.Options: %v", err)
	}
	es.Close()
	if _, err := es.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
		t.Error("a closed signer signed")
	}
	// Closing a signer from Token.Signer leaves the token usable.
	if _, err := tok.FindKey("opts-ec", nil); err != nil {
		t.Error(err)
	}
}

func TestSignerRefusesKeyOfOtherAlgorithm(t *testing.T) {
	tok := openToken(t, "qpki-main")
	p256, err := genKey(t, tok, algo.ECDSAP256, "mismatch-p256", nil)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := genKey(t, tok, algo.RSA2048, "mismatch-rsa", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  *Key
		alg  algo.Algorithm
		want string
	}{
		{p256, algo.ECDSAP384, "ecdsa-p384"},
		{p256, algo.RSA2048, "CKK_EC"},
		{p256, algo.Ed25519, "CKK_EC"},
		{rsa2048, algo.ECDSAP256, "CKK_RSA"},
		{rsa2048, algo.RSA3072, "rsa-3072"},
		{p256, "no-such-algorithm", "unknown algorithm"},
	} {
		_, err := tok.Signer(c.key, c.alg)
		mustContain(t, err, c.want)
	}
	if mlkem, ok := algo.Lookup("ml-kem-768"); ok {
		_, err := tok.Signer(p256, mlkem.Name)
		mustContain(t, err, "not a signature algorithm")
	}
}

func TestFindAndListKeys(t *testing.T) {
	tok := openToken(t, "qpki-main")
	k1, err := genKey(t, tok, algo.ECDSAP384, "find-me", []byte{0x01})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := genKey(t, tok, algo.Ed25519, "find-me", []byte{0x02})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tok.FindKey("find-me", []byte{0x01})
	if err != nil {
		t.Fatal(err)
	}
	if got.KeyType != pkcs11.CKK_EC || got.Algorithm != algo.ECDSAP384 || !got.Public().(*ecdsa.PublicKey).Equal(k1.Public()) {
		t.Errorf("found %+v", got)
	}
	got, err = tok.FindKey("", []byte{0x02})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Public().(ed25519.PublicKey).Equal(k2.Public()) || got.Label != "find-me" {
		t.Errorf("found by id %+v", got)
	}
	// Two keys under one label: the error lists both.
	_, err = tok.FindKey("find-me", nil)
	mustContain(t, err, "2 private keys", "id 01", "id 02", "CKK_EC_EDWARDS")
	_, err = tok.FindKey("find-me", []byte{0x03})
	mustContain(t, err, "no private key", `label "find-me" and id 03`, "id 01")
	_, err = tok.FindKey("no-such-label", nil)
	mustContain(t, err, `no private key with label "no-such-label"`, "qpki-main")
	_, err = tok.FindKey("", nil)
	mustContain(t, err, "label")

	// A signer over a found key works.
	s, err := tok.Signer(got, algo.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := s.Sign(rand.Reader, []byte("m"), crypto.Hash(0))
	if !ed25519.Verify(k2.Public().(ed25519.PublicKey), []byte("m"), sig) {
		t.Error("signature by the found key does not verify")
	}

	ks, err := tok.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, k := range ks {
		if k.Label == "find-me" {
			seen = append(seen, k.KeyID+" "+k.KeyType+" "+k.Algorithm)
		}
	}
	want := []string{"01 CKK_EC ecdsa-p384", "02 CKK_EC_EDWARDS ed25519"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("ListKeys shows %q, want %q", seen, want)
	}
}

func TestGenerateRefusesDuplicates(t *testing.T) {
	tok := openToken(t, "qpki-main")
	if _, err := genKey(t, tok, algo.ECDSAP256, "dup-key", []byte{0xd1}); err != nil {
		t.Fatal(err)
	}
	_, err := genKey(t, tok, algo.ECDSAP256, "dup-key", []byte{0xd1})
	mustContain(t, err, "already holds", `"dup-key"`, "d1")
	_, err = genKey(t, tok, algo.RSA2048, "other-label", []byte{0xd1})
	mustContain(t, err, "already uses id d1", `"dup-key"`)
	// Nothing was added by the refused calls.
	ks, _ := tok.ListKeys()
	n := 0
	for _, k := range ks {
		if k.KeyID == "d1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d keys with id d1, want 1", n)
	}
	// Same label, new id (a hybrid CA's second key): allowed.
	if _, err := genKey(t, tok, algo.Ed25519, "dup-key", []byte{0xd2}); err != nil {
		t.Error(err)
	}
	_, err = genKey(t, tok, algo.ECDSAP256, "", nil)
	mustContain(t, err, "label is required")
	_, err = genKey(t, tok, "no-such-algorithm", "x", nil)
	mustContain(t, err, "unknown algorithm")
}

// token_serial and slot select the right one of two tokens.
func TestSelectTokenBySerialAndSlot(t *testing.T) {
	env := hsmtest.Get(t)
	a, b := env.Token(t, "qpki-a"), env.Token(t, "qpki-b")
	cfgYAML := func(sel string) string {
		return fmt.Sprintf("type: pkcs11\npkcs11:\n  lib: %s\n%s  pin_env: %s\n", env.Lib, sel, hsmtest.PINEnv)
	}
	for _, c := range []struct {
		name, sel string
		want      hsmtest.Token
	}{
		{"serial b", fmt.Sprintf("  token_serial: %q\n", b.Serial), b},
		{"serial a", fmt.Sprintf("  token_serial: %q\n", a.Serial), a},
		{"slot b", fmt.Sprintf("  slot: %d\n", b.Slot), b},
		{"slot a", fmt.Sprintf("  slot: %d\n", a.Slot), a},
		{"label and serial", fmt.Sprintf("  token: qpki-b\n  token_serial: %q\n", b.Serial), b},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := OpenFile(hsmtest.WriteFile(t, "hsm.yaml", cfgYAML(c.sel)))
			if err != nil {
				t.Fatal(err)
			}
			defer tok.Close()
			if tok.Label() != c.want.Label || tok.Serial() != c.want.Serial || tok.Slot() != c.want.Slot {
				t.Errorf("selected %q serial %s slot %d, want %+v", tok.Label(), tok.Serial(), tok.Slot(), c.want)
			}
		})
	}

	// A key made through the serial is on b only.
	tb, err := OpenFile(hsmtest.WriteFile(t, "b.yaml", cfgYAML(fmt.Sprintf("  token_serial: %q\n", b.Serial))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() }) // after genKey's clean-up
	if _, err := genKey(t, tb, algo.ECDSAP256, "only-on-b", nil); err != nil {
		t.Fatal(err)
	}
	ta := openToken(t, "qpki-a")
	if _, err := ta.FindKey("only-on-b", nil); err == nil {
		t.Error("a key made on token b is visible on token a")
	}
	if _, err := openToken(t, "qpki-b").FindKey("only-on-b", nil); err != nil {
		t.Error(err)
	}

	// Selectors that contradict each other, or name nothing, never fall
	// back to another token.
	for _, c := range []struct{ name, sel, want string }{
		{"label a serial b", fmt.Sprintf("  token: qpki-a\n  token_serial: %q\n", b.Serial), "no token with"},
		{"unknown serial", "  token_serial: \"0000000000000000\"\n", `no token with serial "0000000000000000"`},
		{"unknown slot", "  slot: 4000000000\n", "no token with slot 4000000000"},
		{"slot a label b", fmt.Sprintf("  slot: %d\n  token: qpki-b\n", a.Slot), "no token with"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := OpenFile(hsmtest.WriteFile(t, "hsm.yaml", cfgYAML(c.sel)))
			mustContain(t, err, c.want, "tokens present", "qpki-a")
		})
	}
}

func TestOpenErrors(t *testing.T) {
	env := hsmtest.Get(t)
	withLib := func(lib, rest string) string {
		return hsmtest.WriteFile(t, "hsm.yaml", fmt.Sprintf("type: pkcs11\npkcs11:\n  lib: %s\n%s  pin_env: %s\n", lib, rest, hsmtest.PINEnv))
	}

	t.Run("wrong PIN", func(t *testing.T) {
		const wrong = "wrong-pin-31337"
		t.Setenv(hsmtest.PINEnv, wrong)
		_, err := OpenFile(env.Config(t, "qpki-pin"))
		mustContain(t, err, "wrong PIN", "CKR_PIN_INCORRECT", "$"+hsmtest.PINEnv, "qpki-pin")
		noSecret(t, err, wrong)
		// The self-test fails at the login step, also without the PIN.
		var out strings.Builder
		cfg, _ := LoadConfig(env.Config(t, "qpki-pin"))
		err = SelfTest(&out, cfg)
		mustContain(t, err, "step 4 (log in)", "CKR_PIN_INCORRECT")
		noSecret(t, err, wrong)
		if strings.Contains(out.String(), wrong) || !strings.Contains(out.String(), "FAILED") {
			t.Errorf("self-test output:\n%s", out.String())
		}
	})
	t.Run("right PIN after a wrong one", func(t *testing.T) {
		tok, err := OpenFile(env.Config(t, "qpki-pin"))
		if err != nil {
			t.Fatal(err)
		}
		tok.Close()
	})
	t.Run("empty PIN variable", func(t *testing.T) {
		t.Setenv(hsmtest.PINEnv, "")
		_, err := OpenFile(env.Config(t, "qpki-pin"))
		mustContain(t, err, hsmtest.PINEnv, "empty")
	})
	t.Run("missing token", func(t *testing.T) {
		_, err := OpenFile(env.Config(t, "no-such-token"))
		mustContain(t, err, `no token with label "no-such-token"`, "qpki-main", "qpki-b")
		noSecret(t, err)
	})
	t.Run("ambiguous label", func(t *testing.T) {
		_, err := OpenFile(env.Config(t, "qpki-dup"))
		mustContain(t, err, `2 tokens match label "qpki-dup"`, "token_serial or slot")
		for _, tok := range env.Tokens {
			if tok.Label == "qpki-dup" && !strings.Contains(err.Error(), tok.Serial) {
				t.Errorf("error %q does not list serial %s", err, tok.Serial)
			}
		}
	})
	t.Run("wrong module path", func(t *testing.T) {
		_, err := OpenFile(withLib("/nonexistent/libpkcs11.so", "  token: qpki-main\n"))
		mustContain(t, err, "/nonexistent/libpkcs11.so", "does not exist")
	})
	t.Run("not a module", func(t *testing.T) {
		notLib := hsmtest.WriteFile(t, "lib.so", "not a shared library")
		_, err := OpenFile(withLib(notLib, "  token: qpki-main\n"))
		mustContain(t, err, "cannot load PKCS#11 module", notLib)
	})
	t.Run("unknown key label", func(t *testing.T) {
		cfgPath := env.Config(t, "qpki-main")
		_, err := OpenSigner(cfgPath, KeyRef{Label: "no-such-key", KeyID: "0001"}, algo.ECDSAP256)
		mustContain(t, err, "no private key", `"no-such-key"`)
		noSecret(t, err)
	})
}

func TestOpenSignerFromKeyRef(t *testing.T) {
	env := hsmtest.Get(t)
	cfgPath := env.Config(t, "qpki-main")
	tok := openToken(t, "qpki-main")
	key, err := genKey(t, tok, algo.ECDSAP384, "ref-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := key.Ref(cfgPath)
	if ref.Config != cfgPath || ref.Label != "ref-key" || ref.KeyID != key.IDHex() {
		t.Fatalf("Ref = %+v", ref)
	}
	for _, override := range []string{"", env.Config(t, "qpki-main")} {
		s, err := OpenSigner(override, ref, algo.ECDSAP384)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := algo.SignDigest(s, rand.Reader, []byte("ref"), false)
		if err != nil {
			t.Fatal(err)
		}
		if err := algo.VerifyDigest(key.Public(), algo.ECDSAP384, []byte("ref"), sig, false); err != nil {
			t.Error(err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
	// A worker on another machine points at its own config: a config
	// naming another token does not find the key.
	_, err = OpenSigner(env.Config(t, "qpki-a"), ref, algo.ECDSAP384)
	mustContain(t, err, "no private key", "qpki-a")
	_, err = OpenSigner("", KeyRef{Label: "ref-key"}, algo.ECDSAP384)
	mustContain(t, err, "no HSM configuration")
	_, err = OpenSigner(cfgPath, KeyRef{Label: "ref-key", KeyID: "zz"}, algo.ECDSAP384)
	mustContain(t, err, "not hex")
	_, err = OpenSigner(cfgPath, ref, algo.ECDSAP256)
	mustContain(t, err, "ecdsa-p256")
}

// All sessions closed behind the signer's back: the next signatures still
// succeed, after the pool reopens its sessions and logs in again.
func TestRecoverAfterSessionsClosed(t *testing.T) {
	tok := openToken(t, "qpki-recover", WithMaxSessions(4))
	key, err := genKey(t, tok, algo.ECDSAP256, "recover", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tok.Signer(key, algo.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	signN := func(n int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := []byte(fmt.Sprint("recover ", i))
				sig, err := algo.SignDigest(s, rand.Reader, msg, false)
				if err == nil {
					err = algo.VerifyDigest(s.Public(), algo.ECDSAP256, msg, sig, false)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	signN(8) // fills the pool with idle, logged-in sessions

	// A second handle on the same token closes every session of the
	// application (with one module instance per process, that is ours).
	other := openToken(t, "qpki-recover")
	if err := other.st.mod.ctx.CloseAllSessions(other.Slot()); err != nil {
		t.Fatal(err)
	}
	before := tok.st.recoveries.Load()
	signN(1)
	if tok.st.recoveries.Load() == before {
		t.Error("the signer did not have to reopen its session; the test did not test recovery")
	}
	signN(8)

	// The same after an explicit logout.
	err = tok.st.withSession(func(sess pkcs11.SessionHandle) error { return tok.st.mod.ctx.Logout(sess) })
	if err != nil {
		t.Fatal(err)
	}
	before = tok.st.recoveries.Load()
	signN(1)
	if tok.st.recoveries.Load() == before {
		t.Error("no recovery after logout")
	}
}

func TestConcurrentSigning(t *testing.T) {
	tok := openToken(t, "qpki-main", WithMaxSessions(3))
	var keys []*Key
	for _, alg := range []algo.Algorithm{algo.ECDSAP256, algo.Ed25519} {
		k, err := genKey(t, tok, alg, "concurrent", []byte(alg))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	const goroutines, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := keys[g%len(keys)]
			s, err := tok.Signer(k, k.Algorithm)
			if err != nil {
				errs <- err
				return
			}
			for i := 0; i < each; i++ {
				msg := []byte(fmt.Sprintf("goroutine %d message %d", g, i))
				sig, err := algo.SignDigest(s, rand.Reader, msg, false)
				if err == nil {
					err = algo.VerifyDigest(k.Public(), k.Algorithm, msg, sig, false)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tok.st.pool.mu.Lock()
	peak, limit, idle := tok.st.pool.peak, tok.st.pool.limit, len(tok.st.pool.idle)
	tok.st.pool.mu.Unlock()
	if peak > limit || limit < 3 {
		t.Errorf("pool peak %d over limit %d", peak, limit)
	}
	if peak < 2 {
		t.Errorf("pool peak %d: signatures did not run in parallel", peak)
	}
	if idle > limit {
		t.Errorf("%d idle sessions over the limit %d", idle, limit)
	}
}

func sessionState(t *testing.T, tok *Token) uint {
	t.Helper()
	var state uint
	err := tok.st.withSession(func(s pkcs11.SessionHandle) error {
		si, err := tok.st.mod.ctx.GetSessionInfo(s)
		state = si.State
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

func TestLogoutAfterUse(t *testing.T) {
	env := hsmtest.Get(t)
	cfg := env.ConfigYAML("qpki-logout") + "  logout_after_use: true\n"
	tok, err := OpenFile(hsmtest.WriteFile(t, "hsm.yaml", cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err := genKey(t, tok, algo.ECDSAP256, "logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := tok.Signer(key, algo.ECDSAP256)
	for i := 0; i < 3; i++ {
		if _, err := algo.SignDigest(s, rand.Reader, []byte("m"), false); err != nil {
			t.Fatal(err)
		}
		// While the operation runs, the session is logged in ...
		if st := sessionState(t, tok); st != pkcs11.CKS_RW_USER_FUNCTIONS {
			t.Errorf("state during use %d, want CKS_RW_USER_FUNCTIONS", st)
		}
		// ... and between operations it is not.
		var state uint
		tok.st.pool.mu.Lock()
		idle := tok.st.pool.idle[0]
		tok.st.pool.mu.Unlock()
		si, err := tok.st.mod.ctx.GetSessionInfo(idle)
		if err != nil {
			t.Fatal(err)
		}
		state = si.State
		if state != pkcs11.CKS_RW_PUBLIC_SESSION {
			t.Errorf("state after use %d, want CKS_RW_PUBLIC_SESSION", state)
		}
	}

	// Without logout_after_use the login stays.
	tok2 := openToken(t, "qpki-main")
	if _, err := tok2.ListKeys(); err != nil {
		t.Fatal(err)
	}
	tok2.st.pool.mu.Lock()
	idle := tok2.st.pool.idle[0]
	tok2.st.pool.mu.Unlock()
	si, _ := tok2.st.mod.ctx.GetSessionInfo(idle)
	if si.State != pkcs11.CKS_RW_USER_FUNCTIONS {
		t.Errorf("state %d, want CKS_RW_USER_FUNCTIONS", si.State)
	}
}

// Tokens share one module instance per library; the last Close finalises
// it and a later Open initialises it again.
func TestModuleSharedAndFinalised(t *testing.T) {
	env := hsmtest.Get(t)
	count := func() (int, int) {
		modulesMu.Lock()
		defer modulesMu.Unlock()
		if m, ok := modules[moduleKey(env.Lib)]; ok {
			return len(modules), m.refs
		}
		return len(modules), 0
	}
	if n, _ := count(); n != 0 {
		t.Fatalf("%d modules loaded before the test: a test leaked a token", n)
	}
	a, err := OpenFile(env.Config(t, "qpki-a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenFile(env.Config(t, "qpki-b"))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := OpenFile(env.Config(t, "qpki-b"))
	if err != nil {
		t.Fatal(err)
	}
	if b2.st != b.st {
		t.Error("two Opens of one token do not share its session pool")
	}
	if n, refs := count(); n != 1 || refs != 2 {
		t.Errorf("%d modules, %d references; want 1 module held by 2 tokens", n, refs)
	}
	a.Close()
	b.Close()
	b.Close() // idempotent: must not drop b2's reference
	if _, err := b2.ListKeys(); err != nil {
		t.Errorf("b2 after b.Close: %v", err)
	}
	b2.Close()
	if n, _ := count(); n != 0 {
		t.Errorf("%d modules still loaded after every token closed", n)
	}
	c, err := OpenFile(env.Config(t, "qpki-a"))
	if err != nil {
		t.Fatalf("reopen after finalise: %v", err)
	}
	if _, err := c.ListKeys(); err != nil {
		t.Error(err)
	}
	c.Close()
	if _, err := c.ListKeys(); err == nil {
		t.Error("a closed token listed keys")
	}
}

func TestSelfTestAndDiagnostics(t *testing.T) {
	env := hsmtest.Get(t)
	cfg, err := LoadConfig(env.Config(t, "qpki-selftest"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := SelfTest(&out, cfg); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"[1/7] load module", "[2/7] find token", "[3/7] open session", "[4/7] log in",
		"PIN from $" + hsmtest.PINEnv, "[5/7] generate a session key (ecdsa-p256, CKA_TOKEN false)", "[6/7] sign and verify ... ok",
		"[7/7] log out ... ok"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("self-test output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), hsmtest.PIN) {
		t.Error("self-test output contains the PIN")
	}
	// The session key vanished with the session.
	tok := openToken(t, "qpki-selftest")
	if _, err := tok.FindKey("qpki-self-test", nil); err == nil {
		t.Error("the self-test left its key on the token")
	}

	bad := *cfg
	bad.PKCS11.Token = "no-such-token"
	out.Reset()
	err = SelfTest(&out, &bad)
	mustContain(t, err, "step 2 (find token")

	out.Reset()
	if err := ListSlots(&out, env.Lib); err != nil {
		t.Fatal(err)
	}
	for _, tk := range env.Tokens {
		if !strings.Contains(out.String(), fmt.Sprintf("%q", tk.Label)) || !strings.Contains(out.String(), tk.Serial) ||
			!strings.Contains(out.String(), fmt.Sprintf("slot %d:", tk.Slot)) {
			t.Errorf("hsm list lacks token %+v:\n%s", tk, out.String())
		}
	}
	if !strings.Contains(out.String(), "login_required") || !strings.Contains(out.String(), "token_initialized") {
		t.Errorf("hsm list lacks token flags:\n%s", out.String())
	}
	rep, err := Slots(env.Lib)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Slots) != len(env.Tokens)+1 { // SoftHSM2 adds one free slot
		t.Errorf("%d slots, want %d", len(rep.Slots), len(env.Tokens)+1)
	}
	_, err = Slots("/nonexistent/lib.so")
	mustContain(t, err, "does not exist")

	out.Reset()
	if err := Mechanisms(&out, cfg, "ecdsa"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "CKM_ECDSA ") || !strings.Contains(out.String(), "sign") || strings.Contains(out.String(), "CKM_RSA_PKCS ") {
		t.Errorf("hsm mechanisms --filter ecdsa:\n%s", out.String())
	}
	ms, err := MechanismList(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range ms {
		names[m.Name] = true
	}
	for _, want := range []string{"CKM_ECDSA", "CKM_RSA_PKCS", "CKM_RSA_PKCS_PSS", "CKM_EDDSA", "CKM_EC_EDWARDS_KEY_PAIR_GEN"} {
		if !names[want] {
			t.Errorf("mechanism list lacks %s", want)
		}
	}
	out.Reset()
	if err := Mechanisms(&out, cfg, "ML_DSA"); err != nil || !strings.Contains(out.String(), "no mechanism matches") {
		t.Errorf("ML_DSA filter on SoftHSM2 2.6: %v\n%s", err, out.String())
	}

	out.Reset()
	if err := Info(&out, cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"qpki-selftest"`, env.Token(t, "qpki-selftest").Serial, `table "pkcs11-3.2"`, "post-quantum not offered: ml-dsa-44"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("hsm info lacks %q:\n%s", want, out.String())
		}
	}
}

// SoftHSM2 2.6 has no post-quantum mechanisms: generating such a key must
// fail with an error that names the missing mechanism.
func TestPQCKeyNeedsMechanism(t *testing.T) {
	if _, ok := algo.Lookup("ml-dsa-65"); !ok {
		t.Skip("pkg/algo has no ml-dsa-65 in this build")
	}
	tok := openToken(t, "qpki-main")
	_, err := genKey(t, tok, "ml-dsa-65", "pqc", nil)
	mustContain(t, err, "CKM_ML_DSA_KEY_PAIR_GEN", "qpki-main")
	_, err = genKey(t, tok, "slh-dsa-sha2-128s", "pqc", nil)
	mustContain(t, err, "CKM_SLH_DSA_KEY_PAIR_GEN")
}

func TestMechanismTables(t *testing.T) {
	std, err := LookupMechanismTable("")
	if err != nil || std.Name != "pkcs11-3.2" {
		t.Fatalf("default table: %v %v", std, err)
	}
	for alg, want := range map[algo.Algorithm]PQCMechanisms{
		"ml-dsa-44":          {KeyType: 0x4a, ParameterSet: 1, KeyGen: 0x1c, Sign: 0x1d},
		"ml-dsa-87":          {KeyType: 0x4a, ParameterSet: 3, KeyGen: 0x1c, Sign: 0x1d},
		"slh-dsa-shake-256f": {KeyType: 0x4b, ParameterSet: 0x0c, KeyGen: 0x2d, Sign: 0x2e},
		"slh-dsa-sha2-128s":  {KeyType: 0x4b, ParameterSet: 0x01, KeyGen: 0x2d, Sign: 0x2e},
		"ml-kem-768":         {KeyType: 0x49, ParameterSet: 2, KeyGen: 0x0f, Encapsulate: 0x17},
	} {
		if got, ok := std.For(alg); !ok || got != want {
			t.Errorf("%s: %+v, want %+v", alg, got, want)
		}
	}
	if len(std.Algorithms) != 3+12+3 {
		t.Errorf("%d algorithms in the standard table", len(std.Algorithms))
	}
	if std.ParameterSetAttribute != 0x61d {
		t.Errorf("parameter-set attribute 0x%x", std.ParameterSetAttribute)
	}
	if a, ok := std.algorithmFor(CKK_ML_DSA, CKP_ML_DSA_65); !ok || a != "ml-dsa-65" {
		t.Errorf("algorithmFor(ML-DSA, 65) = %q", a)
	}
	if _, err := LookupMechanismTable("acme"); err == nil || !strings.Contains(err.Error(), "pkcs11-3.2") {
		t.Errorf("unknown table: %v", err)
	}
	luna, err := LookupMechanismTable("thales-luna-pqc-fm")
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := luna.For("ml-dsa-65"); m.KeyType != 0xC0000008 || m.Sign != 0xC0000066 || m.ParameterSet != 2 {
		t.Errorf("luna ml-dsa-65: %+v", m)
	}
	if MechanismName(0x1d) != "CKM_ML_DSA" || MechanismName(0x1041) != "CKM_ECDSA" || MechanismName(0x80001234) != "vendor-defined 0x80001234" {
		t.Error("MechanismName")
	}
}

// While the module signs, the signing thread runs at the nice value
// sign_nice asks for, and afterwards at its own again.
func TestSigningThreadPriority(t *testing.T) {
	if err := priorityProbe(DefaultSignNice); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("root may not raise a thread's priority: %v", err)
		}
		t.Skipf("this process may not raise a thread's priority: %v", err)
	}
	tok := openToken(t, "qpki-main")
	key, err := genKey(t, tok, algo.RSA2048, "priority", []byte{0x50, 0x52})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := tok.signer(key, algo.RSA2048, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ts.v3 == nil || ts.key.st.signNice != DefaultSignNice {
		t.Fatalf("signer: cgo layer %v, sign_nice %d", ts.v3 != nil, ts.key.st.signNice)
	}
	// A goroutine locked to its thread signs over and over; this one
	// reads that thread's nice value from /proc until it sees the raised
	// one. RSA signatures keep the thread in the module most of the time.
	tid := make(chan int)
	stop := make(chan struct{})
	before, after := make(chan int, 1), make(chan int, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		before <- threadNice()
		tid <- syscall.Gettid()
		d := sha256.Sum256([]byte("priority"))
		defer func() { after <- threadNice() }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := ts.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	id := <-tid
	base := <-before
	seen := false
	for deadline := time.Now().Add(20 * time.Second); !seen && time.Now().Before(deadline); {
		n, err := procNice(id)
		if err != nil {
			t.Fatal(err)
		}
		seen = n == base+DefaultSignNice
		if !seen && n != base {
			t.Fatalf("the signing thread ran at nice %d, neither %d nor %d", n, base, base+DefaultSignNice)
		}
	}
	close(stop)
	if !seen {
		t.Errorf("the signing thread never ran at nice %d", base+DefaultSignNice)
	}
	if got := <-after; got != base {
		t.Errorf("after signing the thread's nice value is %d, was %d", got, base)
	}
}

// procNice reads a thread's nice value, field 19 of /proc/self/task/TID/stat.
func procNice(tid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 17 {
		return 0, fmt.Errorf("short stat line %q", b)
	}
	return strconv.Atoi(f[16])
}

// SignBatch signs each request as Sign would: runs of one mechanism in one
// call into the module, a bad request failing alone, and a batch after
// the token dropped every session still signed in full.
func TestSignBatch(t *testing.T) {
	tok := openToken(t, "qpki-main")
	ecKey, err := genKey(t, tok, algo.ECDSAP384, "batch-ec", []byte{0x42, 0x01})
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := genKey(t, tok, algo.RSA2048, "batch-rsa", []byte{0x42, 0x02})
	if err != nil {
		t.Fatal(err)
	}
	ec, err := tok.signer(ecKey, algo.ECDSAP384, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := tok.signer(rsaKey, algo.RSA2048, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ec.v3 == nil {
		t.Fatal("the signer does not sign through the cgo layer")
	}
	digest := func(i int) []byte { d := sha512.Sum384([]byte(fmt.Sprint("batch ", i))); return d[:] }

	reqs := make([]algo.SignRequest, 20)
	for i := range reqs {
		reqs[i] = algo.SignRequest{Digest: digest(i), Opts: crypto.SHA384}
	}
	reqs[7].Digest = reqs[7].Digest[:20] // not a SHA-384 digest
	ec.SignBatch(reqs)
	pub := ec.Public().(*ecdsa.PublicKey)
	for i, r := range reqs {
		if i == 7 {
			if r.Err == nil {
				t.Error("a 20-byte SHA-384 digest was signed")
			}
			continue
		}
		if r.Err != nil || !ecdsa.VerifyASN1(pub, r.Digest, r.Sig) {
			t.Errorf("request %d: %v, signature verifies: %v", i, r.Err, r.Err == nil && ecdsa.VerifyASN1(pub, r.Digest, r.Sig))
		}
	}

	// PKCS#1 v1.5 and PSS alternate: a run per mechanism.
	rreqs := make([]algo.SignRequest, 6)
	for i := range rreqs {
		rreqs[i] = algo.SignRequest{Digest: digest(i), Opts: crypto.SHA384}
		if i%3 == 2 {
			rreqs[i].Opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA384}
		}
	}
	rs.SignBatch(rreqs)
	rpub := rs.Public().(*rsa.PublicKey)
	for i, r := range rreqs {
		if r.Err != nil {
			t.Fatalf("RSA request %d: %v", i, r.Err)
		}
		if pss, ok := r.Opts.(*rsa.PSSOptions); ok {
			err = rsa.VerifyPSS(rpub, crypto.SHA384, r.Digest, r.Sig, pss)
		} else {
			err = rsa.VerifyPKCS1v15(rpub, crypto.SHA384, r.Digest, r.Sig)
		}
		if err != nil {
			t.Errorf("RSA request %d: %v", i, err)
		}
	}

	// A message the token refuses (longer than the RSA modulus allows)
	// fails alone; the requests after it in the same run are signed.
	ps := make([]prepared, 5)
	runReqs := make([]algo.SignRequest, len(ps))
	for i := range ps {
		runReqs[i] = algo.SignRequest{Digest: digest(200 + i), Opts: crypto.SHA384}
		if ps[i], err = rs.prepare(runReqs[i].Digest, runReqs[i].Opts); err != nil {
			t.Fatal(err)
		}
	}
	ps[1].data = make([]byte, 300)
	rs.signRun(runReqs, ps)
	for i, r := range runReqs {
		switch {
		case i == 1 && r.Err == nil:
			t.Error("an over-long message was signed")
		case i != 1 && (r.Err != nil || rsa.VerifyPKCS1v15(rpub, crypto.SHA384, r.Digest, r.Sig) != nil):
			t.Errorf("request %d after a refused one: %v", i, r.Err)
		}
	}

	// Every session closed behind the signer's back.
	if err := tok.st.mod.ctx.CloseAllSessions(tok.Slot()); err != nil {
		t.Fatal(err)
	}
	before := tok.st.recoveries.Load()
	reqs = reqs[:5]
	for i := range reqs {
		reqs[i] = algo.SignRequest{Digest: digest(100 + i), Opts: crypto.SHA384}
	}
	ec.SignBatch(reqs)
	for i, r := range reqs {
		if r.Err != nil || !ecdsa.VerifyASN1(pub, r.Digest, r.Sig) {
			t.Errorf("after the sessions were closed, request %d: %v", i, r.Err)
		}
	}
	if tok.st.recoveries.Load() == before {
		t.Error("the batch did not have to reopen its session; the test did not test recovery")
	}
}
