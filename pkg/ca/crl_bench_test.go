package ca

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/hsm/hsmtest"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/x509x"
)

// BenchmarkCRL builds and signs CRLs of 100,000 and 1,000,000 entries (a
// full CRL, and one shard of 16: a sixteenth of them), with a P-256 file
// key and a SoftHSM2 P-384 key. Entries come from a generator, so this is
// the encoder and the signature (over the whole TBSCertList, with the
// self-check); reading them from the store is BenchmarkRevocations in
// pkg/store. Peak memory: run one sub-benchmark under /usr/bin/time -v.
func BenchmarkCRL(b *testing.B) {
	dir := b.TempDir()
	root, err := Init(InitOptions{Dir: filepath.Join(dir, "root"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Bench Root"}})
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	raw, err := profile.Builtin("ec/issuing-ca")
	if err != nil {
		b.Fatal(err)
	}
	p256 := filepath.Join(dir, "issuing-ca-p256.yaml")
	raw = regexp.MustCompile(`(?m)^algorithm: .*$`).ReplaceAll(raw, []byte("algorithm: ecdsa-p256"))
	raw = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(raw, []byte("name: bench/issuing-ca-p256"))
	if err := os.WriteFile(p256, raw, 0o644); err != nil {
		b.Fatal(err)
	}
	file, err := Init(InitOptions{Dir: filepath.Join(dir, "file"), Profile: p256, Parent: root, Vars: map[string]any{"cn": "Bench P-256"}})
	if err != nil {
		b.Fatal(err)
	}
	defer file.Close()
	signers := []struct {
		name string
		ca   func(b *testing.B) *CA
	}{
		{"p256-file", func(*testing.B) *CA { return file }},
		{"p384-softhsm", func(b *testing.B) *CA {
			tgt := hsmtest.Use(b, "ca-hsm")
			label := uniqueLabel("crlbench")
			destroyKeysAfter(b, tgt.Config, label)
			return hsmInit(b, filepath.Join(b.TempDir(), "hsm"), "ec/issuing-ca", "Bench P-384 HSM", KeySpec{HSMConfig: tgt.Config, Label: label}, root)
		}},
	}
	for _, s := range signers {
		b.Run(s.name, func(b *testing.B) {
			c := s.ca(b)
			iss, closer, err := c.Issuer("", KeyOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer closer.Close()
			for _, n := range []int{100_000, 1_000_000} {
				for _, part := range []struct {
					name string
					div  int
				}{{"full", 1}, {"shard-of-16", 16}} {
					b.Run(fmt.Sprintf("%d/%s", n, part.name), func(b *testing.B) {
						var size int
						for b.Loop() {
							der := buildBenchCRL(b, iss, n/part.div)
							size = len(der)
						}
						b.ReportMetric(float64(size), "crl-bytes")
					})
				}
			}
		})
	}
}

// buildBenchCRL signs a CRL of n entries with 128-bit serials (as qpki
// issues them) and mixed reasons.
func buildBenchCRL(b *testing.B, iss x509x.Issuer, n int) []byte {
	now := time.Now().UTC().Truncate(time.Second)
	bld, err := x509x.NewCRLBuilder(x509x.CRLHeader{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(7 * 24 * time.Hour)}, iss, 0)
	if err != nil {
		b.Fatal(err)
	}
	serial := new(big.Int)
	var raw [16]byte
	for i := range n {
		rand.Read(raw[:])
		raw[0] &= 0x7f
		serial.SetBytes(raw[:])
		if err := bld.Add(serial, now.Add(-time.Duration(i)*time.Second), i%6); err != nil {
			b.Fatal(err)
		}
	}
	der, err := bld.Sign(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return der
}
