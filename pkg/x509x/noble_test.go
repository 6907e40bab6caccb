package x509x

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/internal/nobletest"
	"github.com/qpki/qpki/pkg/algo"
)

// nobleDir holds package.json, package-lock.json (pinning
// @noble/post-quantum) and pq.mjs.
const nobleDir = "../../interop/noble"

// noble returns node and pq.mjs of the installed verifier (nobletest).
func noble(t *testing.T) (node, script string) { return nobletest.Script(t, nobleDir) }

var nobleAlgorithms = []algo.Algorithm{algo.MLDSA44, algo.MLDSA65, algo.MLDSA87, algo.SLHDSASHA2128f, algo.SLHDSASHAKE128f}

func runNoble(t *testing.T, node string, args ...string) ([]string, error) {
	t.Helper()
	out, err := exec.Command(node, args...).CombinedOutput()
	return strings.Fields(string(out)), err
}

// Signatures on qpki's certificates verify with @noble/post-quantum, and a
// changed certificate does not.
func TestNobleVerifiesQpkiCertificates(t *testing.T) {
	node, script := noble(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := []string{script, "verify"}
	var want []string
	for _, a := range nobleAlgorithms {
		root := newRoot(t, a, "")
		leaf := issueLeaf(t, root, newSigner(t, algo.ECDSAP256).Public(), nil)
		pub := write(string(a)+".pub", root.iss.Signer.Public().(interface{ Bytes() []byte }).Bytes())
		sig := write(string(a)+".sig", leaf.Signature)
		args = append(args, string(a), pub, write(string(a)+".tbs", leaf.RawTBSCertificate), sig,
			string(a), pub, write(string(a)+".bad", append([]byte{1}, leaf.RawTBSCertificate...)), sig)
		want = append(want, "OK", "INVALID")
	}
	got, err := runNoble(t, node, args...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("noble: %v %v", err, got)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("noble says %v, want %v (pairs of qpki signature, changed message; algorithms %v)", got, want, nobleAlgorithms)
	}
}

// qpki verifies signatures @noble/post-quantum makes.
func TestQpkiVerifiesNobleSignatures(t *testing.T) {
	node, script := noble(t)
	dir := t.TempDir()
	msg := []byte("made by @noble/post-quantum at " + time.Now().String())
	p := func(n string) string { return filepath.Join(dir, n) }
	if err := os.WriteFile(p("msg"), msg, 0o600); err != nil {
		t.Fatal(err)
	}
	// SLH-DSA-SHAKE signing is slow in JavaScript; one SLH-DSA set suffices.
	algs := nobleAlgorithms[:4]
	args := []string{script, "sign"}
	for _, a := range algs {
		args = append(args, string(a), p("msg"), p(string(a)+".pub"), p(string(a)+".sig"))
	}
	if out, err := runNoble(t, node, args...); err != nil {
		t.Fatalf("noble sign: %v %v", err, out)
	}
	for _, a := range algs {
		rawPub, _ := os.ReadFile(p(string(a) + ".pub"))
		sig, _ := os.ReadFile(p(string(a) + ".sig"))
		var v interface{ Verify(msg, sig []byte) error }
		var err error
		if a.Family() == algo.FamilyMLDSA {
			v, err = algo.ParseMLDSAPublicKey(a, rawPub)
		} else {
			v, err = algo.ParseSLHDSAPublicKey(a, rawPub)
		}
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if err := v.Verify(msg, sig); err != nil {
			t.Errorf("%s: qpki rejects noble's signature: %v", a, err)
		}
		if err := v.Verify(bytes.ToUpper(msg), sig); err == nil {
			t.Errorf("%s: changed message verified", a)
		}
	}
}
