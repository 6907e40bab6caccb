package testtoken_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/testtoken"
)

// One daemon serves the package; each test uses its own token (slot).
const (
	mainToken    = "qpki-main"
	restartToken = "qpki-restart"
	pinToken     = "qpki-pin"
	toolToken    = "qpki-tool"
)

func TestMain(m *testing.M) {
	testtoken.Main(m, mainToken, restartToken, pinToken, toolToken)
}

func openToken(t *testing.T, d *testtoken.Daemon, label string, opts ...hsm.Option) *hsm.Token {
	t.Helper()
	tok, err := hsm.OpenFile(d.Config(t, label), opts...)
	if err != nil {
		t.Fatalf("hsm.OpenFile: %v", err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}

func TestTokenInfoSaysWhatItIs(t *testing.T) {
	d := testtoken.Get(t)
	tok := openToken(t, d, mainToken)
	if tok.Label() != mainToken {
		t.Errorf("label %q", tok.Label())
	}
	for _, m := range []uint{hsm.CKM_ML_DSA_KEY_PAIR_GEN, hsm.CKM_ML_DSA, hsm.CKM_SLH_DSA_KEY_PAIR_GEN, hsm.CKM_SLH_DSA,
		hsm.CKM_ML_KEM_KEY_PAIR_GEN, hsm.CKM_ML_KEM, 0x1040 /* CKM_EC_KEY_PAIR_GEN */, 0x1041 /* CKM_ECDSA */} {
		if !tok.HasMechanism(m) {
			t.Errorf("token does not list %s", hsm.MechanismName(m))
		}
	}
}

// TestKeysOnToken generates each kind of key through pkg/hsm, signs or
// encapsulates on the token and checks the results with pkg/algo.
func TestKeysOnToken(t *testing.T) {
	d := testtoken.Get(t)
	tok := openToken(t, d, mainToken)
	msg := []byte("to be signed by the test token")

	keys := map[algo.Algorithm]*hsm.Key{}
	for _, alg := range []algo.Algorithm{algo.MLDSA65, algo.SLHDSASHA2128f, algo.MLKEM768, algo.ECDSAP384} {
		k, err := tok.GenerateKey(alg, "keys-"+string(alg), nil)
		if err != nil {
			t.Fatalf("GenerateKey(%s): %v", alg, err)
		}
		if k.Algorithm != alg {
			t.Errorf("%s: key algorithm %q", alg, k.Algorithm)
		}
		keys[alg] = k
	}

	// The public keys are pkg/algo types.
	mlPub, ok := keys[algo.MLDSA65].Public().(*algo.MLDSAPublicKey)
	if !ok {
		t.Fatalf("ML-DSA public key is %T", keys[algo.MLDSA65].Public())
	}
	slhPub, ok := keys[algo.SLHDSASHA2128f].Public().(*algo.SLHDSAPublicKey)
	if !ok {
		t.Fatalf("SLH-DSA public key is %T", keys[algo.SLHDSASHA2128f].Public())
	}
	kemPub, ok := keys[algo.MLKEM768].Public().(*algo.MLKEMPublicKey)
	if !ok {
		t.Fatalf("ML-KEM public key is %T", keys[algo.MLKEM768].Public())
	}
	ecPub, ok := keys[algo.ECDSAP384].Public().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("ECDSA public key is %T", keys[algo.ECDSAP384].Public())
	}

	t.Run("ml-dsa", func(t *testing.T) {
		s, err := tok.Signer(keys[algo.MLDSA65], algo.MLDSA65)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := mlPub.Verify(msg, sig); err != nil {
			t.Fatalf("pkg/algo rejects the token's ML-DSA signature: %v", err)
		}
		if mlPub.Verify(append([]byte("x"), msg...), sig) == nil {
			t.Fatal("signature verifies for another message")
		}
	})

	t.Run("ml-dsa-context", func(t *testing.T) {
		s, err := tok.Signer(keys[algo.MLDSA65], algo.MLDSA65)
		if err != nil {
			t.Fatal(err)
		}
		ctx := []byte("qpki context")
		sig, err := s.Sign(rand.Reader, msg, &algo.ContextOpts{Context: ctx})
		if err != nil {
			t.Fatal(err)
		}
		if err := mlPub.VerifyWithContext(msg, ctx, sig); err != nil {
			t.Fatalf("signature does not verify under its context: %v", err)
		}
		if mlPub.Verify(msg, sig) == nil {
			t.Fatal("a signature made under a context verifies with the empty context")
		}
		if _, err := s.Sign(rand.Reader, msg, &algo.ContextOpts{Context: make([]byte, 256)}); err == nil {
			t.Fatal("a 256-byte context was accepted")
		}
	})

	t.Run("slh-dsa", func(t *testing.T) {
		s, err := tok.Signer(keys[algo.SLHDSASHA2128f], algo.SLHDSASHA2128f)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := slhPub.Verify(msg, sig); err != nil {
			t.Fatalf("pkg/algo rejects the token's SLH-DSA signature: %v", err)
		}
		ctx := []byte("slh context")
		sig, err = s.Sign(rand.Reader, msg, &algo.ContextOpts{Context: ctx})
		if err != nil {
			t.Fatal(err)
		}
		if err := slhPub.VerifyWithContext(msg, ctx, sig); err != nil {
			t.Fatalf("SLH-DSA signature does not verify under its context: %v", err)
		}
	})

	t.Run("ecdsa", func(t *testing.T) {
		s, err := tok.Signer(keys[algo.ECDSAP384], algo.ECDSAP384)
		if err != nil {
			t.Fatal(err)
		}
		h := sha512.Sum384(msg)
		sig, err := s.Sign(rand.Reader, h[:], crypto.SHA384)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(ecPub, h[:], sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	})

	t.Run("composite", func(t *testing.T) {
		// A composite signature from two token keys, the ML-DSA half signed
		// under the composite label as its context.
		pq, err := tok.Signer(keys[algo.MLDSA65], algo.MLDSA65)
		if err != nil {
			t.Fatal(err)
		}
		trad, err := tok.Signer(keys[algo.ECDSAP384], algo.ECDSAP384)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := algo.NewCompositeSigner(algo.CompositeMLDSA65ECDSAP384, pq, trad)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := cs.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.Public().(*algo.CompositePublicKey).Verify(msg, sig); err != nil {
			t.Fatalf("composite signature from two token keys does not verify: %v", err)
		}
	})

	t.Run("ml-kem", func(t *testing.T) {
		k := keys[algo.MLKEM768]
		ct, ss, err := tok.Encapsulate(k)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != 1088 || len(ss) != 32 {
			t.Fatalf("ciphertext %d bytes, secret %d bytes", len(ct), len(ss))
		}
		got, err := tok.Decapsulate(k, ct)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, ss) {
			t.Fatal("decapsulated secret differs from the encapsulated one")
		}
		// A ciphertext made in software for the token's public key.
		ct2, ss2, err := kemPub.Encapsulate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		got2, err := tok.Decapsulate(k, ct2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got2, ss2) {
			t.Fatal("token and pkg/algo disagree on the shared secret")
		}
		if _, err := tok.Decapsulate(k, ct2[:100]); err == nil {
			t.Fatal("a short ciphertext was accepted")
		}
		if _, _, err := tok.Encapsulate(keys[algo.MLDSA65]); err == nil {
			t.Fatal("encapsulation with an ML-DSA key was accepted")
		}
	})

	t.Run("find-and-list", func(t *testing.T) {
		for alg, k := range keys {
			found, err := tok.FindKey(k.Label, k.ID)
			if err != nil {
				t.Fatalf("FindKey(%s): %v", alg, err)
			}
			pub := found.Public().(interface{ Equal(crypto.PublicKey) bool })
			if !pub.Equal(k.Public()) {
				t.Errorf("%s: FindKey returns another public key", alg)
			}
		}
		infos, err := tok.ListKeys()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]string{}
		for _, ki := range infos {
			seen[ki.Label] = ki.Algorithm
		}
		for alg := range keys {
			if seen["keys-"+string(alg)] != string(alg) {
				t.Errorf("ListKeys: %s listed as %q", alg, seen["keys-"+string(alg)])
			}
		}
	})

	t.Run("policy", func(t *testing.T) {
		if _, err := tok.Signer(keys[algo.MLDSA65], algo.MLDSA87); err == nil {
			t.Fatal("an ML-DSA-65 key signs for ML-DSA-87")
		}
		if _, err := tok.Signer(keys[algo.MLKEM768], algo.MLKEM768); err == nil {
			t.Fatal("an ML-KEM key was accepted as a signer")
		}
	})
}

func TestParallelSigners(t *testing.T) {
	d := testtoken.Get(t)
	tok := openToken(t, d, mainToken, hsm.WithMaxSessions(6))
	k, err := tok.GenerateKey(algo.MLDSA44, "parallel", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tok.Signer(k, algo.MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*algo.MLDSAPublicKey)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 12; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				msg := fmt.Appendf(nil, "message %d/%d", g, i)
				ctx := fmt.Appendf(nil, "ctx %d", g)
				sig, err := s.Sign(rand.Reader, msg, &algo.ContextOpts{Context: ctx})
				if err == nil {
					err = pub.VerifyWithContext(msg, ctx, sig)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestDaemonRestart kills the daemon under an open token: the next
// signature reconnects (CKR_DEVICE_REMOVED is a stale-session error for
// pkg/hsm) and succeeds with the key, which the daemon kept on disk.
func TestDaemonRestart(t *testing.T) {
	d := testtoken.Get(t)
	tok := openToken(t, d, restartToken)
	k, err := tok.GenerateKey(algo.MLDSA65, "restart", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tok.Signer(k, algo.MLDSA65)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*algo.MLDSAPublicKey)
	sign := func() {
		t.Helper()
		msg := []byte("before and after a restart")
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if err := pub.Verify(msg, sig); err != nil {
			t.Fatal(err)
		}
	}
	sign()
	for i := 0; i < 2; i++ {
		if err := d.Restart(); err != nil {
			t.Fatal(err)
		}
		sign()
	}
	// The key is found again by a fresh search after the restart.
	if _, err := tok.FindKey("restart", k.ID); err != nil {
		t.Fatal(err)
	}
}

// TestWrongPINAndLockout: a wrong PIN gives CKR_PIN_INCORRECT, five in a
// row lock the PIN, and the SO's C_InitPIN gives a new PIN with which the
// keys made before are still usable.
func TestWrongPINAndLockout(t *testing.T) {
	d := testtoken.Get(t)
	tool := pkcs11Tool(t)
	slot, _ := d.Slot(pinToken)

	tok, err := hsm.OpenFile(d.Config(t, pinToken))
	if err != nil {
		t.Fatal(err)
	}
	k, err := tok.GenerateKey(algo.MLDSA44, "survives-initpin", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := k.ID
	tok.Close()

	const wrongEnv = "QPKI_TESTTOKEN_WRONG_PIN"
	wrong := "not-the-pin-9d3"
	cfg := strings.Replace(d.ConfigYAML(pinToken), "pin_env: "+testtoken.PINEnv, "pin_env: "+wrongEnv, 1)
	path := t.TempDir() + "/wrong.yaml"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(wrongEnv, wrong)
	for i := 1; i <= 5; i++ {
		_, err := hsm.OpenFile(path)
		if err == nil {
			t.Fatalf("try %d: a wrong PIN opened the token", i)
		}
		want := "CKR_PIN_INCORRECT"
		if i == 5 {
			want = "CKR_PIN_LOCKED"
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("try %d: %v, want %s", i, err, want)
		}
		if strings.Contains(err.Error(), wrong) {
			t.Fatalf("the error shows the PIN: %v", err)
		}
	}
	// Locked: the right PIN no longer works either.
	if _, err := hsm.OpenFile(d.Config(t, pinToken)); err == nil || !strings.Contains(err.Error(), "CKR_PIN_LOCKED") {
		t.Fatalf("right PIN on a locked token: %v", err)
	}

	// The SO sets a new user PIN; the token key is re-wrapped, not replaced.
	newPIN := "new-user-pin-51a"
	out, err := exec.Command(tool, "--module", d.Lib, "--slot", fmt.Sprint(slot),
		"--init-pin", "--so-pin", testtoken.SOPIN, "--pin", newPIN).CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --init-pin: %v\n%s", err, out)
	}
	t.Setenv(wrongEnv, newPIN)
	tok, err = hsm.OpenFile(path)
	if err != nil {
		t.Fatalf("new PIN after C_InitPIN: %v", err)
	}
	defer tok.Close()
	k, err = tok.FindKey("survives-initpin", id)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tok.Signer(k, algo.MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("after C_InitPIN")
	sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		t.Fatalf("a key made before C_InitPIN cannot sign: %v", err)
	}
	if err := k.Public().(*algo.MLDSAPublicKey).Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
}
