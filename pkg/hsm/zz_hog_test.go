package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
)

var hogs = 3

func TestZZHog(t *testing.T) {
	tok := openToken(t, "qpki-main")
	for _, alg := range []algo.Algorithm{algo.ECDSAP384, algo.RSA3072} {
		key, err := tok.GenerateKey(alg, "hog"+string(alg), []byte(alg))
		if err != nil {
			t.Fatal(err)
		}
		s, err := tok.signer(key, alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := sha512.Sum384([]byte("x"))
		h := crypto.SHA384
		run := func(name string, hog func(stop *atomic.Bool)) {
			var stop atomic.Bool
			var wg sync.WaitGroup
			for i := 0; i < hogs; i++ {
				if hog == nil {
					break
				}
				wg.Add(1)
				go func() { defer wg.Done(); hog(&stop) }()
			}
			time.Sleep(50 * time.Millisecond)
			n := 0
			start := time.Now()
			for time.Since(start) < 1500*time.Millisecond {
				if _, err := s.Sign(rand.Reader, d[:], h); err != nil {
					t.Fatal(err)
				}
				n++
			}
			stop.Store(true)
			wg.Wait()
			fmt.Printf("%s %-10s %.0f signs/s\n", alg, name, float64(n)/time.Since(start).Seconds())
		}
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		sig, _ := ecdsa.SignASN1(rand.Reader, k, d[:32])
		mem := make([]byte, 16<<20)
		for r := 0; r < 2; r++ {
			run("alone", nil)
			run("alu", func(stop *atomic.Bool) {
				x := uint64(1)
				for !stop.Load() {
					for i := 0; i < 10000; i++ {
						x = x*6364136223846793005 + 1442695040888963407
					}
				}
				_ = x
			})
			run("verify", func(stop *atomic.Bool) {
				for !stop.Load() {
					ecdsa.VerifyASN1(&k.PublicKey, d[:32], sig)
				}
			})
			run("mem", func(stop *atomic.Bool) {
				for !stop.Load() {
					for i := 0; i < len(mem); i += 64 {
						mem[i]++
					}
				}
			})
			run("alloc", func(stop *atomic.Bool) {
				var keep [][]byte
				for !stop.Load() {
					keep = append(keep, make([]byte, 512))
					if len(keep) > 10000 {
						keep = keep[:0]
					}
				}
			})
		}
	}
}
