package cmp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkIR: ir then certConf/pkiConf transactions from 32 concurrent
// clients against a serve with an ecdsa-p256 issuing CA key,
// MAC-protected (one fresh secret per transaction) and signature-
// protected (cr signed by a certificate issued here). Reports
// transactions/s and the p50/p99 of one transaction.
func BenchmarkIR(b *testing.B) {
	for _, mode := range []string{"mac", "signature"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b, envConfig{p256: true})
			if mode == "signature" {
				e.waitRA()
			}
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			const clients = 32
			// The signing identities (signature mode) or the secrets (MAC),
			// made before the clock runs.
			ids := make([]*client, clients)
			if mode == "signature" {
				for i := range ids {
					c := newClient(b, e.url+Path, fmt.Sprintf("id-%d", i), e.secret(fmt.Sprintf("id-%d", i), "", nil))
					m, _ := c.post(c.message(BodyIR, ir(b, key, fmt.Sprintf("id%d.example.com", i)), InfoTypeAndValue{Type: OIDITImplicitConfirm}))
					ids[i] = &client{signer: key, cert: issued(b, m)}
				}
			}
			secrets := make([]string, b.N)
			if mode == "mac" {
				for i := range secrets {
					secrets[i] = e.secret(fmt.Sprintf("b-%d", i), "", nil)
				}
			}
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < clients; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						t0 := time.Now()
						c := newClient(b, e.url+Path, fmt.Sprintf("b-%d", i), secrets[i])
						typ := BodyIR
						if mode == "signature" {
							c.signer, c.cert, typ = ids[w].signer, ids[w].cert, BodyCR
						}
						m, _ := c.post(c.message(typ, ir(b, key, fmt.Sprintf("b%d.example.com", i))))
						cert := issued(b, m)
						if m, _ := c.post(c.message(BodyCertConf, certConfBody(cert, 0))); m.Type() != BodyPKIConf {
							b.Errorf("certConf: %s", errorText(m))
							return
						}
						lat[i] = time.Since(t0)
					}
				}(w)
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tx/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
