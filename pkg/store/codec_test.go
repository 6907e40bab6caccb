package store

import (
	"bytes"
	"encoding/json"
	"math/big"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestRecordsRoundTrip stores a certificate and a job and reads them back
// unchanged: times to the nanosecond, a zero time, a revocation, names.
func TestRecordsRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	at := time.Date(2026, 11, 27, 6, 0, 0, 123456789, time.UTC)
	c := &Cert{Serial: "0abc", Subject: "CN=a", Names: []string{"a.example", "b.example"}, Profile: "ec/tls-server",
		CAVersion: "v1", Algorithm: "ecdsa-p256", NotBefore: at, NotAfter: at.Add(time.Hour), Issued: at,
		Fingerprint: "ff", JobID: "j1", DER: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}
	if err := s.PutCert(c); err != nil {
		t.Fatal(err)
	}
	got, err := s.Cert(big.NewInt(0xabc))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("read back %+v, want %+v", got, c)
	}
	rev, err := s.Revoke(big.NewInt(0xabc), Revocation{Time: at.Add(time.Minute), Reason: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ = s.Cert(big.NewInt(0xabc)); !reflect.DeepEqual(got, rev) || got.Revocation.Reason != 4 {
		t.Fatalf("revoked cert read back %+v, want %+v", got, rev)
	}

	j := &Job{ID: "j2", Key: "k2", RequestHash: "h", Kind: "issue", Class: "batch", Profile: "ec/tls-server",
		Serial: "0def", State: JobQueued, Created: at, Payload: []byte(`{"profile":"ec/tls-server"}`)}
	if _, created, err := s.CreateJob(j); err != nil || !created {
		t.Fatalf("CreateJob: %v %v", created, err)
	}
	gj, err := s.Job("j2")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gj, j) || !gj.Finished.IsZero() {
		t.Fatalf("job read back %+v, want %+v", gj, j)
	}
}

// TestReadsJSONRecords reads certificate and job records that an earlier
// version wrote as JSON, and updates them.
func TestReadsJSONRecords(t *testing.T) {
	s, _ := openTest(t)
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	c := Cert{Serial: "0abc", Subject: "CN=old", NotAfter: at.Add(time.Hour), Issued: at, DER: []byte{1, 2, 3}}
	j := Job{ID: "old", Key: "k", Kind: "issue", Class: "interactive", State: JobQueued, Serial: "0abc", Created: at, Payload: []byte("{}")}
	cj, _ := json.Marshal(c)
	jj, _ := json.Marshal(j)
	err := s.db.Update(func(tx *bolt.Tx) error {
		jobs, err := tx.CreateBucketIfNotExists(bucketJobs)
		if err != nil {
			return err
		}
		if err := jobs.Put([]byte("old"), jj); err != nil {
			return err
		}
		return tx.Bucket(bucketCerts).Put(serialKey(big.NewInt(0xabc)), cj)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Cert(big.NewInt(0xabc))
	if err != nil || got.Subject != "CN=old" || !bytes.Equal(got.DER, c.DER) || !got.Issued.Equal(at) {
		t.Fatalf("JSON cert read as %+v, %v", got, err)
	}
	if _, err := s.Revoke(big.NewInt(0xabc), Revocation{Time: at, Reason: 1}); err != nil {
		t.Fatalf("revoking a JSON record: %v", err)
	}
	if got, _ = s.Cert(big.NewInt(0xabc)); got.Revocation == nil || got.Subject != "CN=old" {
		t.Fatalf("after revocation: %+v", got)
	}
	gj, err := s.Job("old")
	if err != nil || gj.Key != "k" || !gj.Created.Equal(at) || string(gj.Payload) != "{}" {
		t.Fatalf("JSON job read as %+v, %v", gj, err)
	}
	if first, err := s.FinishJob(Finished{ID: "old", State: JobFailed, Error: "gave up"}); err != nil || !first {
		t.Fatalf("finishing a JSON job: %v %v", first, err)
	}
	if gj, _ = s.Job("old"); gj.State != JobFailed || gj.Error != "gave up" {
		t.Fatalf("after finishing: %+v", gj)
	}
}

// TestDecodedRecordsOwnTheirBytes checks that a record's DER stays intact
// after the transaction that read it ends and the file grows (bbolt
// remaps it): the decoder must copy out of bbolt's memory.
func TestDecodedRecordsOwnTheirBytes(t *testing.T) {
	s, _ := openTest(t)
	s.db.NoSync = true // this test is about memory, not durability
	der := bytes.Repeat([]byte{0x5a}, 2000)
	if err := s.PutCert(&Cert{Serial: "01", DER: der}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Cert(big.NewInt(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 3000; i++ {
		if err := s.PutCert(&Cert{Serial: big.NewInt(int64(i)).Text(16), DER: bytes.Repeat([]byte{byte(i)}, 2000)}); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.DER, der) {
		t.Fatal("the DER read before the file grew changed")
	}
}
