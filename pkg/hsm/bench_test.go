package hsm

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/qpki/qpki/pkg/algo"
)

// BenchmarkSigner compares signatures per second through the signer with
// raw C_SignInit+C_Sign on the same key, with 1, 2 and 4 goroutines each
// holding a session. The signer's overhead should stay under 10%.
//
//	go test -run x -bench Signer ./pkg/hsm/
func BenchmarkSigner(b *testing.B) {
	tok := openToken(b, "qpki-bench", WithMaxSessions(4))
	ctx := tok.st.mod.ctx
	for _, alg := range []algo.Algorithm{algo.ECDSAP256, algo.ECDSAP384, algo.RSA2048} {
		key, err := tok.FindKey("bench-"+string(alg), nil)
		if err != nil {
			key, err = tok.GenerateKey(alg, "bench-"+string(alg), nil)
		}
		if err != nil {
			b.Fatal(err)
		}
		s, err := tok.Signer(key, alg)
		if err != nil {
			b.Fatal(err)
		}
		h := algo.HashFor(alg)
		var digest []byte
		switch h.Size() {
		case 32:
			d := sha256.Sum256([]byte("bench"))
			digest = d[:]
		case 48:
			d := sha512.Sum384([]byte("bench"))
			digest = d[:]
		}
		// What the raw path hands the token: the digest for CKM_ECDSA, the
		// DigestInfo for CKM_RSA_PKCS.
		mech, input := uint(pkcs11.CKM_ECDSA), digest
		if alg.Family() == algo.FamilyRSA {
			mech, input = pkcs11.CKM_RSA_PKCS, append(append([]byte{}, digestInfoPrefix[h]...), digest...)
		}
		for _, n := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("%s/sessions=%d/signer", alg, n), func(b *testing.B) {
				parallel(b, n, func(int) error {
					_, err := s.Sign(rand.Reader, digest, h)
					return err
				})
			})
			b.Run(fmt.Sprintf("%s/sessions=%d/raw", alg, n), func(b *testing.B) {
				sessions := make([]pkcs11.SessionHandle, n)
				for i := range sessions {
					if sessions[i], err = ctx.OpenSession(tok.Slot(), pkcs11.CKF_SERIAL_SESSION); err != nil {
						b.Fatal(err)
					}
				}
				defer func() {
					for _, sess := range sessions {
						ctx.CloseSession(sess)
					}
				}()
				m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}
				priv := key.handle()
				parallel(b, n, func(w int) error {
					if err := ctx.SignInit(sessions[w], m, priv); err != nil {
						return err
					}
					_, err := ctx.Sign(sessions[w], input)
					return err
				})
			})
		}
	}
}

// parallel runs b.N calls of f spread over n goroutines, f's argument
// being the goroutine's index, and reports signatures per second.
func parallel(b *testing.B, n int, f func(worker int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := f(w); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}
