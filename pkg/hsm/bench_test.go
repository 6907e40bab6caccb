package hsm

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/qpki/qpki/pkg/algo"
)

// BenchmarkSigner measures signatures per second through the signer and
// through raw C_SignInit+C_Sign (miekg/pkcs11 directly, on sessions of its
// own) on the same key, for P-256, P-384 and RSA-2048 with 1, 2 and 4
// goroutines. Each goroutine alternates the two paths, so both see the same
// machine load; the signer's overhead over raw C_Sign should stay under 10%.
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
		m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}
		for _, n := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("%s/sessions=%d", alg, n), func(b *testing.B) {
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
				priv := key.handle()
				viaSigner := func(int) error {
					_, err := s.Sign(rand.Reader, digest, h)
					return err
				}
				raw := func(w int) error {
					if err := ctx.SignInit(sessions[w], m, priv); err != nil {
						return err
					}
					_, err := ctx.Sign(sessions[w], input)
					return err
				}
				paired(b, n, viaSigner, raw)
			})
		}
	}
}

// paired runs b.N rounds of f and g spread over n goroutines, alternating
// which goes first, and reports each one's signatures per second and f's
// overhead over g.
func paired(b *testing.B, n int, f, g func(worker int) error) {
	var next, fNS, gNS atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				first, second, firstNS, secondNS := f, g, &fNS, &gNS
				if i%2 == 0 {
					first, second, firstNS, secondNS = g, f, &gNS, &fNS
				}
				t0 := time.Now()
				err := first(w)
				t1 := time.Now()
				if err == nil {
					err = second(w)
				}
				t2 := time.Now()
				if err != nil {
					failed.Store(err)
					return
				}
				firstNS.Add(int64(t1.Sub(t0)))
				secondNS.Add(int64(t2.Sub(t1)))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	// n goroutines ran each path concurrently: its wall time is its total
	// time over n.
	rate := func(ns int64) float64 { return float64(b.N) / (float64(ns) / float64(n) / 1e9) }
	b.ReportMetric(rate(fNS.Load()), "signer-sigs/s")
	b.ReportMetric(rate(gNS.Load()), "raw-sigs/s")
	b.ReportMetric(100*(float64(fNS.Load())/float64(gNS.Load())-1), "overhead-%")
}
