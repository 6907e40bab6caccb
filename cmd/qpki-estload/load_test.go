package main

import (
	"fmt"
	"testing"
	"time"
)

// The load generator enrolls through a real in-process server with both
// kinds of authentication, so that the benchmark below keeps working.
func TestLoad(t *testing.T) {
	for _, auth := range []string{"cert", "basic"} {
		t.Run(auth, func(t *testing.T) {
			fig, err := run(config{clients: 4, n: 40, auth: auth, workers: 1, cacheTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if fig.n != 40 || fig.p50 <= 0 || fig.p99 < fig.p50 || fig.max < fig.p99 {
				t.Fatalf("figures: %v", fig)
			}
		})
	}
	if _, err := run(config{clients: 4, n: 40, auth: "digest"}); err == nil {
		t.Fatal("run accepted -auth digest")
	}
}

// BenchmarkSimpleEnroll is the EST issue's figure: simpleenroll with 32
// keep-alive TLS clients authenticated by client certificates, and with
// HTTP Basic (cached verification), ecdsa-p256 CA key:
//
//	go test -run '^$' -bench SimpleEnroll -benchtime 10000x ./cmd/qpki-estload/
func BenchmarkSimpleEnroll(b *testing.B) {
	for _, auth := range []string{"cert", "basic"} {
		b.Run(fmt.Sprintf("auth=%s", auth), func(b *testing.B) {
			fig, err := run(config{clients: 32, n: max(b.N, 32), auth: auth, workers: 2, cacheTTL: 5 * time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(fig.rate(), "enroll/s")
			b.ReportMetric(float64(fig.p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(fig.p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
