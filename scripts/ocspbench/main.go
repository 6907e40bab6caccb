// Command ocspbench prepares and measures the OCSP responder benchmark
// (scripts/bench-ocsp.sh); it is no part of qpki.
//
//	ocspbench fill --ca-dir D --count N --paths F
//	    add N certificates (1% revoked) to the CA's store and write the
//	    GET path of each one's OCSP request to F, for wrk
//	ocspbench raw --ca-dir D [--hsm-config F] [--seconds S]
//	    the raw rate of the CA's signer: digests signed back to back in
//	    batches of 32, by one session, as one worker session signs
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/ocspx"
	"github.com/qpki/qpki/pkg/store"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ocspbench fill|raw ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "fill":
		err = fill(os.Args[2:])
	case "raw":
		err = raw(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocspbench:", err)
		os.Exit(1)
	}
}

func fill(args []string) error {
	fs := flag.NewFlagSet("fill", flag.ExitOnError)
	dir := fs.String("ca-dir", "", "CA directory")
	count := fs.Int("count", 1_000_000, "certificates")
	paths := fs.String("paths", "", "file for the GET paths")
	fs.Parse(args)
	c, err := ca.Open(*dir)
	if err != nil {
		return err
	}
	issuer, err := c.Certificate("")
	if err != nil {
		return err
	}
	st, err := store.OpenBolt(filepath.Join(*dir, "ca.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	// A leaf's worth of DER, so that the store has its real size.
	key, _ := algo.GenerateKey(algo.ECDSAP256, rand.Reader)
	s, _ := algo.NewSigner(key, algo.ECDSAP256)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench.example.com"}, DNSNames: []string{"bench.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, leaf, leaf, s.Public(), s)
	if err != nil {
		return err
	}
	out, err := os.Create(*paths)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	var prefix [8]byte
	rand.Read(prefix[:])
	prefix[0] = prefix[0]&0x3f | 0x10 // positive, 16 bytes long
	now := time.Now().UTC().Truncate(time.Second)
	version := c.Meta.Active
	batch := make([]*store.Cert, 0, 10_000)
	for i := 0; i < *count; i++ {
		var b [16]byte
		copy(b[:8], prefix[:])
		binary.BigEndian.PutUint64(b[8:], uint64(i))
		n := new(big.Int).SetBytes(b[:])
		sum := sha256.Sum256(b[:])
		rec := &store.Cert{Serial: store.FormatSerial(n), Subject: "CN=bench.example.com", Names: []string{"bench.example.com"},
			Profile: "ec/tls-server", CAVersion: version, Algorithm: "ecdsa-p256", NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(90 * 24 * time.Hour), Issued: now, Fingerprint: fmt.Sprintf("%x", sum), DER: der}
		if i%100 == 99 {
			rec.Revocation = &store.Revocation{Time: now, Reason: 1}
		}
		batch = append(batch, rec)
		if len(batch) == cap(batch) || i == *count-1 {
			if err := st.ImportCerts(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		req, err := ocspx.CreateRequest(issuer, []*big.Int{n}, ocspx.SHA1, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "/ocsp/%s\n", base64.StdEncoding.EncodeToString(req))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return out.Close()
}

func raw(args []string) error {
	fs := flag.NewFlagSet("raw", flag.ExitOnError)
	dir := fs.String("ca-dir", "", "CA directory")
	hsmConfig := fs.String("hsm-config", "", "HSM config")
	seconds := fs.Float64("seconds", 10, "how long to sign")
	fs.Parse(args)
	c, err := ca.Open(*dir)
	if err != nil {
		return err
	}
	iss, closer, err := c.Issuer("", ca.KeyOptions{HSMConfig: *hsmConfig})
	if err != nil {
		return err
	}
	defer closer.Close()
	h := algo.HashFor(iss.Signer.Algorithm())
	reqs := make([]algo.SignRequest, 32)
	for i := range reqs {
		d := h.New()
		fmt.Fprintf(d, "digest %d", i)
		reqs[i] = algo.SignRequest{Digest: d.Sum(nil), Opts: h}
	}
	n := 0
	start := time.Now()
	for time.Since(start).Seconds() < *seconds {
		algo.SignBatch(iss.Signer, reqs)
		for _, r := range reqs {
			if r.Err != nil {
				return r.Err
			}
		}
		n += len(reqs)
	}
	el := time.Since(start)
	fmt.Printf("raw signer %s: %d signatures in %s: %.0f/s\n", iss.Signer.Algorithm(), n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return nil
}
