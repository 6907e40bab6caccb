package store

import (
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T) (*Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestReserveAndPut(t *testing.T) {
	s, _ := openTest(t)
	serial := big.NewInt(0x1234)
	if err := s.Reserve(serial, "job-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(serial, "job-a"); err != nil {
		t.Fatalf("same job re-reserving: %v", err)
	}
	if err := s.Reserve(serial, "job-b"); !errors.Is(err, ErrSerialInUse) {
		t.Fatalf("other job reserving: got %v, want ErrSerialInUse", err)
	}
	if err := s.PutCert(&Cert{Serial: "1234", JobID: "job-b", DER: []byte{1}}); !errors.Is(err, ErrSerialInUse) {
		t.Fatalf("put by another job: got %v", err)
	}
	c := &Cert{Serial: "1234", JobID: "job-a", DER: []byte{1, 2}, Issued: time.Now()}
	if err := s.PutCert(c); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCert(c); err != nil {
		t.Fatalf("recording the same certificate twice must be a no-op: %v", err)
	}
	if err := s.PutCert(&Cert{Serial: "1234", JobID: "job-a", DER: []byte{9}}); !errors.Is(err, ErrSerialInUse) {
		t.Fatalf("different certificate under a used serial: got %v", err)
	}
	if err := s.Reserve(serial, "job-a"); !errors.Is(err, ErrSerialInUse) {
		t.Fatalf("reserving an issued serial: got %v", err)
	}
	got, err := s.Cert(serial)
	if err != nil || got.JobID != "job-a" {
		t.Fatalf("Cert: %v %+v", err, got)
	}
}

func TestRevokeAndList(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	for i, nb := range []time.Time{now.Add(-48 * time.Hour), now} {
		c := &Cert{Serial: big.NewInt(int64(i + 10)).Text(16), DER: []byte{byte(i)}, Issued: nb, NotAfter: nb.Add(24 * time.Hour)}
		if err := s.PutCert(c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Revoke(big.NewInt(11), Revocation{Time: now, Reason: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke(big.NewInt(11), Revocation{Time: now, Reason: 1}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("double revoke: %v", err)
	}
	if _, err := s.Revoke(big.NewInt(99), Revocation{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	for status, want := range map[string]int{"": 2, "revoked": 1, "expired": 1, "valid": 0} {
		got, err := s.List(Filter{Status: status, Now: now})
		if err != nil || len(got) != want {
			t.Errorf("List(%q) = %d, %v; want %d", status, len(got), err, want)
		}
	}
}

func TestCRLNumberPersists(t *testing.T) {
	s, path := openTest(t)
	for want := int64(1); want <= 3; want++ {
		n, err := s.NextCRLNumber()
		if err != nil || n.Int64() != want {
			t.Fatalf("NextCRLNumber = %v, %v; want %d", n, err, want)
		}
	}
	s.Close()
	s2, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n, _ := s2.NextCRLNumber(); n.Int64() != 4 {
		t.Fatalf("after reopen: %v", n)
	}
}

func TestLockedStoreFailsFast(t *testing.T) {
	_, path := openTest(t)
	start := time.Now()
	if _, err := OpenBolt(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("second open hung")
	}
}

func TestParseSerial(t *testing.T) {
	for in, want := range map[string]string{"0A:1b:FF": "a1bff", "0x10": "10", " abc ": "abc"} {
		n, err := ParseSerial(in)
		if err != nil || FormatSerial(n) != want {
			t.Errorf("ParseSerial(%q) = %v, %v; want %s", in, n, err, want)
		}
	}
	for _, bad := range []string{"", "xyz", "-1", "12:zz"} {
		if _, err := ParseSerial(bad); err == nil {
			t.Errorf("ParseSerial(%q) accepted", bad)
		}
	}
}

// EachCert visits every certificate once, in pages, and fn may write to
// the store meanwhile (a read transaction held across fn would block a
// write that grows the file).
func TestBoltEachCertPages(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var cs []*Cert
	for i := 0; i < 3*eachPage+7; i++ {
		cs = append(cs, &Cert{Serial: FormatSerial(big.NewInt(int64(i + 1))), DER: []byte{byte(i)}})
	}
	if err := s.ImportCerts(cs); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err = s.EachCert(func(c *Cert) error {
		if seen[c.Serial] {
			t.Fatalf("%s twice", c.Serial)
		}
		seen[c.Serial] = true
		if len(seen)%eachPage != 1 {
			return nil
		}
		// A write big enough to grow the file, from inside fn.
		return s.PutOCSP([]*OCSPResponse{{Serial: c.Serial, Hash: "sha1", DER: make([]byte, 4<<20)}})
	})
	if err != nil || len(seen) != len(cs) {
		t.Fatalf("visited %d of %d: %v", len(seen), len(cs), err)
	}
	if err := s.ImportCerts(cs[:1]); !errors.Is(err, ErrSerialInUse) {
		t.Fatalf("importing a serial again: %v", err)
	}
}

// BenchmarkRevocations walks a revocation index of 1,000,000 entries: the
// store's part of building a full CRL.
func BenchmarkRevocations(b *testing.B) {
	s, err := OpenBolt(filepath.Join(b.TempDir(), "ca.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 1_000_000
	now := time.Now().UTC().Truncate(time.Second)
	err = s.db.Update(func(tx *bolt.Tx) error {
		ix := tx.Bucket(bucketRevoked)
		ix.FillPercent = 1
		for i := range n {
			serial := new(big.Int).Lsh(big.NewInt(int64(i)+1), 96)
			if err := ix.Put(serialKey(serial), encodeRevoked(Revoked{Serial: serial, Time: now, Reason: i % 6, NotAfter: now.Add(time.Hour), CAVersion: "v1"})); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		count := 0
		if err := s.Revocations(func(Revoked) error { count++; return nil }); err != nil || count != n {
			b.Fatalf("%d entries: %v", count, err)
		}
	}
}

// Revoke and PutCert of a revoked certificate feed the revocation index,
// and a store file written before the index existed gets it built on open.
func TestRevocationIndex(t *testing.T) {
	s, path := openTest(t)
	now := time.Now().UTC().Truncate(time.Second)
	for i := 1; i <= 4; i++ {
		c := &Cert{Serial: big.NewInt(int64(i)).Text(16), CAVersion: "v1", DER: []byte{byte(i)}, NotAfter: now.Add(time.Hour)}
		if i == 4 {
			c.Revocation = &Revocation{Time: now, Reason: 4}
		}
		if err := s.PutCert(c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Revoke(big.NewInt(2), Revocation{Time: now, Reason: 1}); err != nil {
		t.Fatal(err)
	}
	want := "2:1:v1 4:4:v1 "
	list := func() string {
		got := ""
		if err := s.Revocations(func(r Revoked) error {
			if !r.Time.Equal(now) || !r.NotAfter.Equal(now.Add(time.Hour)) {
				t.Errorf("times of %v: %v %v", r.Serial, r.Time, r.NotAfter)
			}
			got += fmt.Sprintf("%v:%d:%s ", r.Serial, r.Reason, r.CAVersion)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := list(); got != want {
		t.Fatalf("index %q, want %q", got, want)
	}
	// An older file: no index bucket.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketRevoked) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := OpenBolt(path); err != nil {
		t.Fatal(err)
	} else {
		defer s.Close()
		got := ""
		s.Revocations(func(r Revoked) error { got += fmt.Sprintf("%v:%d:%s ", r.Serial, r.Reason, r.CAVersion); return nil })
		if got != want {
			t.Fatalf("rebuilt index %q, want %q", got, want)
		}
	}
}
