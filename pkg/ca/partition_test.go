package ca

import (
	"context"
	"crypto/x509"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/store"
)

// 200 certificates over 8 shards, 40 revoked: each revoked certificate is
// revoked by the CRL its own crlDistributionPoints names (openssl verify
// -crl_check), an unrevoked one verifies with its own shard's CRL, another
// shard's CRL is refused for the issuingDistributionPoint mismatch, and the
// full CRL (no IDP) lists all 40.
func TestPartitionedCRLs(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(t, filepath.Join(dir, "root"), "ec/root-ca", "Shard Root")
	sub := newSub(t, filepath.Join(dir, "issuing"), "ec/issuing-ca", "Shard Issuing", root)
	// Issued before partitioning: keeps the profile's URL, on no shard.
	before, err := sub.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "old.example.com", "old.example.com")}, KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if before.Shard != nil {
		t.Fatalf("certificate before crl-config got shard %d", *before.Shard)
	}
	if err := sub.SetCRLConfig(8, "http://pki.example.com/crl/", "issuing"); err != nil {
		t.Fatal(err)
	}
	if again, err := Open(sub.Dir); err != nil || again.Meta.CRL == nil || *again.Meta.CRL != (CRLConfig{Shards: 8, BaseURL: "http://pki.example.com/crl", Name: "issuing", Published: 8}) {
		t.Fatalf("ca.meta.json crl: %v %+v", err, again.Meta.CRL)
	} else {
		again.Close()
	}
	csr := newCSR(t, algo.ECDSAP256, "leaf.example.com", "leaf.example.com")
	var certs []*store.Cert
	perShard := map[int]int{}
	for range 200 {
		rec, err := sub.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: csr}, KeyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(rec.DER)
		if rec.Shard == nil || len(cert.CRLDistributionPoints) != 1 || cert.CRLDistributionPoints[0] != fmt.Sprintf("http://pki.example.com/crl/issuing/%d.crl", *rec.Shard) {
			t.Fatalf("certificate %s: shard %v, CDP %v", rec.Serial, rec.Shard, cert.CRLDistributionPoints)
		}
		perShard[*rec.Shard]++
		certs = append(certs, rec)
	}
	if len(perShard) != 8 {
		t.Fatalf("shards used: %v", perShard)
	}
	revoked := map[string]bool{}
	for _, rec := range certs[:40] {
		if _, err := sub.Revoke(rec.Serial, 1, nowUTC()); err != nil {
			t.Fatal(err)
		}
		revoked[rec.Serial] = true
	}
	if _, err := sub.Revoke(before.Serial, 4, nowUTC()); err != nil {
		t.Fatal(err)
	}

	rootCert, _ := root.Certificate("")
	subCert, _ := sub.Certificate("")
	rootPEM := writeCertsFile(t, filepath.Join(dir, "root.pem"), rootCert)
	subPEM := writeCertsFile(t, filepath.Join(dir, "sub.pem"), subCert)
	crlFiles := map[int]string{}
	for k := range 8 {
		der, err := sub.GenerateCRL(CRLOptions{Shard: &k})
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := IssuingDistributionPointURL(crl), fmt.Sprintf("http://pki.example.com/crl/issuing/%d.crl", k); got != want {
			t.Errorf("shard %d: IDP %q, want %q", k, got, want)
		}
		if crl.Number.Int64() != 1 {
			t.Errorf("shard %d: CRL number %v, want its own sequence's 1", k, crl.Number)
		}
		for _, e := range crl.RevokedCertificateEntries {
			s := store.FormatSerial(e.SerialNumber)
			if !revoked[s] {
				t.Errorf("shard %d lists %s, not revoked or not of this shard", k, s)
			}
			for _, rec := range certs {
				if rec.Serial == s && *rec.Shard != k {
					t.Errorf("shard %d lists %s of shard %d", k, s, *rec.Shard)
				}
			}
		}
		crlFiles[k] = writePEM(t, filepath.Join(dir, fmt.Sprintf("%d.crl", k)), der, "X509 CRL")
	}
	verify := func(rec *store.Cert, crlPEM string) (string, bool) {
		leaf := writePEM(t, filepath.Join(dir, "leaf-"+rec.Serial+".pem"), rec.DER, "CERTIFICATE")
		out, err := runOpenSSL(t, "verify", "-crl_check", "-CRLfile", crlPEM, "-CAfile", rootPEM, "-untrusted", subPEM, leaf)
		return out, err == nil
	}
	for _, rec := range certs[:40] {
		if out, ok := verify(rec, crlFiles[*rec.Shard]); ok || !strings.Contains(out, "certificate revoked") {
			t.Errorf("revoked %s on its shard %d's CRL: %s", rec.Serial, *rec.Shard, out)
		}
	}
	var good, other *store.Cert
	for _, rec := range certs[40:] {
		if good == nil {
			good = rec
		} else if *rec.Shard != *good.Shard {
			other = rec
			break
		}
	}
	if out, ok := verify(good, crlFiles[*good.Shard]); !ok {
		t.Errorf("unrevoked %s with its own shard's CRL: %s", good.Serial, out)
	}
	if out, ok := verify(good, crlFiles[*other.Shard]); ok || !strings.Contains(out, "different CRL scope") {
		t.Errorf("unrevoked %s of shard %d with shard %d's CRL: accepted or other error: %s", good.Serial, *good.Shard, *other.Shard, out)
	}

	full, err := sub.GenerateCRL(CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := x509.ParseRevocationList(full)
	if len(crl.RevokedCertificateEntries) != 41 || IssuingDistributionPointURL(crl) != "" {
		t.Fatalf("full CRL: %d entries, IDP %q", len(crl.RevokedCertificateEntries), IssuingDistributionPointURL(crl))
	}
	if _, err := sub.GenerateCRL(CRLOptions{Shard: new(int(8))}); err == nil {
		t.Fatal("a CRL of shard 8 of 8")
	}
}

func runOpenSSL(t testing.TB, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(opensslBin(t), args...).CombinedOutput()
	return string(out), err
}
