package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/x509x"
)

// BenchmarkIssue measures issuing from a CSR with an ecdsa-p256 file key
// (the CSR's proof of possession is checked in every iteration), next to
// the raw P-256 sign and verify it must at least cost.
func BenchmarkIssue(b *testing.B) {
	dir := b.TempDir()
	root, err := Init(InitOptions{Dir: filepath.Join(dir, "root"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Bench Root"}})
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	// An issuing CA with a P-256 key, so that the CA signature is P-256.
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
	sub, err := Init(InitOptions{Dir: filepath.Join(dir, "sub"), Profile: p256, Parent: root,
		Vars: map[string]any{"cn": "Bench Sub"}})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	csr := newCSR(b, algo.ECDSAP256, "bench.example.com", "bench.example.com")

	priv, _ := ecdsa.GenerateKey(ellipticP256(), rand.Reader)
	digest := sha256.Sum256([]byte("tbs"))
	sig, _ := ecdsa.SignASN1(rand.Reader, priv, digest[:])

	b.Run("raw-p256-sign", func(b *testing.B) {
		for b.Loop() {
			d := sha256.Sum256(csr.RawTBSCertificateRequest)
			if _, err := priv.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-p256-verify", func(b *testing.B) {
		for b.Loop() {
			if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig) {
				b.Fatal("verify")
			}
		}
	})
	for _, lint := range []bool{false, true} {
		name := "issue-lint-off"
		if lint {
			name = "issue-lint-on"
		}
		b.Run(name, func(b *testing.B) {
			iss, closer, err := sub.Issuer("", KeyOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer closer.Close()
			p, err := sub.Prepare(IssueRequest{Profile: "ec/tls-server", CSR: csr})
			if err != nil {
				b.Fatal(err)
			}
			p.Lint.Enabled = lint
			for b.Loop() {
				// What every issuance costs: the CSR's proof of
				// possession, policy, the CA signature, (lint).
				parsed, err := x509x.ParseCertificateRequest(csr.Raw)
				if err != nil {
					b.Fatal(err)
				}
				p, err := sub.Prepare(IssueRequest{Profile: "ec/tls-server", CSR: parsed})
				if err != nil {
					b.Fatal(err)
				}
				p.Lint.Enabled = lint
				serial, _ := NewSerial()
				if _, err := Sign(p, serial, iss); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("issue-and-record", func(b *testing.B) {
		for b.Loop() {
			if _, err := sub.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: csr}, KeyOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
