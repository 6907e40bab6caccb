package storetest

import (
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

// testOCSP: pre-signed responses are kept per serial and hash, a late
// response with an older thisUpdate never replaces a newer one, and
// EachCert and EachOCSP visit everything.
func testOCSP(t *testing.T, cs CAStore) {
	s, ok := cs.(store.OCSPStore)
	if !ok {
		t.Fatalf("%T keeps no OCSP responses", cs)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for i := int64(1); i <= 3; i++ {
		if err := cs.PutCert(&store.Cert{Serial: store.FormatSerial(big.NewInt(i)), DER: []byte{byte(i)}, NotAfter: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.OCSP(big.NewInt(1), "sha1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no response yet: %v", err)
	}
	newer := &store.OCSPResponse{Serial: "1", Hash: "sha1", Status: "good", ThisUpdate: now, NextUpdate: now.Add(time.Hour), DER: []byte("new")}
	older := &store.OCSPResponse{Serial: "1", Hash: "sha1", Status: "good", ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour), DER: []byte("old")}
	other := &store.OCSPResponse{Serial: "1", Hash: "sha256", Status: "revoked", ThisUpdate: now, NextUpdate: now.Add(time.Hour), DER: []byte("256")}
	if err := s.PutOCSP([]*store.OCSPResponse{newer, other}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOCSP([]*store.OCSPResponse{older}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.OCSP(big.NewInt(1), "sha1"); err != nil || string(r.DER) != "new" || !r.ThisUpdate.Equal(now) {
		t.Fatalf("sha1 response: %+v %v (an older one must not replace it)", r, err)
	}
	if r, err := s.OCSP(big.NewInt(1), "sha256"); err != nil || string(r.DER) != "256" || r.Status != "revoked" {
		t.Fatalf("sha256 response: %+v %v", r, err)
	}
	n := 0
	if err := s.EachOCSP("sha1", func(r *store.OCSPResponse) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("EachOCSP sha1: %d, %v", n, err)
	}
	certs := 0
	if err := s.EachCert(func(*store.Cert) error { certs++; return nil }); err != nil || certs != 3 {
		t.Fatalf("EachCert: %d, %v", certs, err)
	}
}
