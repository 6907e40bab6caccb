// Package storetest holds behavioural tests that every implementation of
// the store interfaces must pass (bbolt in package store, JetStream
// key-value in pkg/store/jskv), including races between two clients of
// the same backing state.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

// CAStore is what a CA's store implements.
type CAStore interface {
	store.Store
	store.JobStore
}

// Opener returns a fresh, empty store state and a function that opens a
// client of it; each call gives another client (another connection) of
// the same state, or the same one where the backend allows one client
// only.
type Opener[T any] func(t *testing.T) (open func() T)

// RunStore runs the certificate, reservation, revocation, CRL number and
// job tests.
func RunStore(t *testing.T, opener Opener[CAStore]) {
	t.Run("ReserveAndPut", func(t *testing.T) { testReserveAndPut(t, opener(t)()) })
	t.Run("RevokeAndList", func(t *testing.T) { testRevokeAndList(t, opener(t)()) })
	t.Run("CRLNumber", func(t *testing.T) { testCRLNumber(t, opener(t)()) })
	t.Run("Jobs", func(t *testing.T) { testJobs(t, opener(t)()) })
	t.Run("Origin", func(t *testing.T) { testOrigin(t, opener(t)()) })
	t.Run("StreamSeqs", func(t *testing.T) { testStreamSeqs(t, opener(t)()) })
	t.Run("OCSP", func(t *testing.T) { testOCSP(t, opener(t)()) })
	t.Run("RaceSerial", func(t *testing.T) {
		open := opener(t)
		testRaceSerial(t, open(), open())
	})
	t.Run("RaceFinish", func(t *testing.T) {
		open := opener(t)
		testRaceFinish(t, open(), open())
	})
	t.Run("RaceCounters", func(t *testing.T) {
		open := opener(t)
		testRaceCounters(t, open(), open())
	})
}

func testReserveAndPut(t *testing.T, s CAStore) {
	serial := big.NewInt(0x1234)
	if err := s.Reserve(serial, "job-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(serial, "job-a"); err != nil {
		t.Fatalf("same job re-reserving: %v", err)
	}
	if err := s.Reserve(serial, "job-b"); !errors.Is(err, store.ErrSerialInUse) {
		t.Fatalf("other job reserving: got %v, want ErrSerialInUse", err)
	}
	if got, err := s.Reservation(serial); err != nil || got != "job-a" {
		t.Fatalf("Reservation = %q, %v", got, err)
	}
	if _, err := s.Reservation(big.NewInt(7)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Reservation of a free serial: %v", err)
	}
	if err := s.PutCert(&store.Cert{Serial: "1234", JobID: "job-b", DER: []byte{1}}); !errors.Is(err, store.ErrSerialInUse) {
		t.Fatalf("put by another job: got %v", err)
	}
	c := &store.Cert{Serial: "1234", JobID: "job-a", DER: []byte{1, 2}, Issued: time.Now()}
	if err := s.PutCert(c); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCert(c); err != nil {
		t.Fatalf("recording the same certificate twice must be a no-op: %v", err)
	}
	if err := s.PutCert(&store.Cert{Serial: "1234", JobID: "job-a", DER: []byte{9}}); !errors.Is(err, store.ErrSerialInUse) {
		t.Fatalf("different certificate under a used serial: got %v", err)
	}
	if err := s.Reserve(serial, "job-a"); !errors.Is(err, store.ErrSerialInUse) {
		t.Fatalf("reserving an issued serial: got %v", err)
	}
	got, err := s.Cert(serial)
	if err != nil || got.JobID != "job-a" || !bytes.Equal(got.DER, c.DER) {
		t.Fatalf("Cert: %v %+v", err, got)
	}
	if _, err := s.Cert(big.NewInt(0x999)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown certificate: %v", err)
	}
	if err := s.PutCert(&store.Cert{Serial: "zz"}); err == nil {
		t.Fatal("a bad serial was accepted")
	}
}

func testRevokeAndList(t *testing.T, s CAStore) {
	now := time.Now()
	for i, nb := range []time.Time{now.Add(-48 * time.Hour), now} {
		c := &store.Cert{Serial: big.NewInt(int64(i + 10)).Text(16), DER: []byte{byte(i)}, Issued: nb, NotAfter: nb.Add(24 * time.Hour)}
		if err := s.PutCert(c); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := s.Revoke(big.NewInt(11), store.Revocation{Time: now, Reason: 1}); err != nil || c.Revocation == nil || c.Revocation.Reason != 1 {
		t.Fatalf("Revoke: %+v %v", c, err)
	}
	if _, err := s.Revoke(big.NewInt(11), store.Revocation{Time: now, Reason: 1}); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("double revoke: %v", err)
	}
	if _, err := s.Revoke(big.NewInt(99), store.Revocation{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if c, _ := s.Cert(big.NewInt(11)); c == nil || c.Revocation == nil {
		t.Fatal("the revocation was not stored")
	}
	for status, want := range map[string]int{"": 2, "revoked": 1, "expired": 1, "valid": 0} {
		got, err := s.List(store.Filter{Status: status, Now: now})
		if err != nil || len(got) != want {
			t.Errorf("List(%q) = %d, %v; want %d", status, len(got), err, want)
		}
	}
	all, _ := s.List(store.Filter{})
	if len(all) != 2 || !all[0].Issued.Before(all[1].Issued) {
		t.Fatalf("List is not oldest first: %+v", all)
	}
}

func testCRLNumber(t *testing.T, s CAStore) {
	for want := int64(1); want <= 3; want++ {
		n, err := s.NextCRLNumber()
		if err != nil || n.Int64() != want {
			t.Fatalf("NextCRLNumber = %v, %v; want %d", n, err, want)
		}
	}
}

func testJobs(t *testing.T, s CAStore) {
	j := &store.Job{ID: "j1", Key: "k1", RequestHash: "h1", Kind: "issue", State: store.JobQueued, Serial: "abc", Payload: []byte("p"), Created: time.Now()}
	got, created, err := s.CreateJob(j)
	if err != nil || !created || got.ID != "j1" {
		t.Fatalf("CreateJob: %+v %v %v", got, created, err)
	}
	if owner, err := s.Reservation(big.NewInt(0xabc)); err != nil || owner != "j1" {
		t.Fatalf("the job did not reserve its serial: %q %v", owner, err)
	}
	if got, created, err := s.CreateJob(&store.Job{ID: "j1", Key: "k1", RequestHash: "h1", Serial: "abd"}); err != nil || created || got.Serial != "abc" {
		t.Fatalf("the same request again: %+v %v %v", got, created, err)
	}
	if _, _, err := s.CreateJob(&store.Job{ID: "j1", Key: "k1", RequestHash: "other"}); !errors.Is(err, store.ErrKeyReused) {
		t.Fatalf("a key reused for another request: %v", err)
	}
	if _, _, err := s.CreateJob(&store.Job{ID: "j2", RequestHash: "h2", State: store.JobQueued, Serial: "abc"}); !errors.Is(err, store.ErrSerialInUse) {
		t.Fatalf("a second job on a reserved serial: %v", err)
	}
	s.CreateJob(&store.Job{ID: "j3", RequestHash: "h3", State: store.JobQueued, Kind: "crl"})
	if _, err := s.Job("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}

	// A certificate under another serial than the reserved one is refused.
	if _, err := s.FinishJob(store.Finished{ID: "j1", State: store.JobDone, Cert: &store.Cert{Serial: "abd", JobID: "j1", DER: []byte{1}}}); err == nil {
		t.Fatal("a certificate with the wrong serial was recorded")
	}
	cert := &store.Cert{Serial: "abc", JobID: "j1", DER: []byte{1, 2, 3}, Issued: time.Now()}
	first, err := s.FinishJob(store.Finished{ID: "j1", State: store.JobDone, Cert: cert})
	if err != nil || !first {
		t.Fatalf("FinishJob: %v %v", first, err)
	}
	first, err = s.FinishJob(store.Finished{ID: "j1", State: store.JobDone, Cert: &store.Cert{Serial: "abc", JobID: "j1", DER: []byte{4}}})
	if err != nil || first {
		t.Fatalf("a second outcome must be dropped: first=%v %v", first, err)
	}
	if c, err := s.Cert(big.NewInt(0xabc)); err != nil || !bytes.Equal(c.DER, cert.DER) {
		t.Fatalf("the first certificate must stay: %+v %v", c, err)
	}
	done, err := s.Job("j1")
	if err != nil || done.State != store.JobDone || done.Payload != nil || done.Finished.IsZero() {
		t.Fatalf("finished job: %+v %v", done, err)
	}
	firsts, err := s.FinishJobs([]store.Finished{{ID: "j3", State: store.JobDone, Result: []byte("crl")}, {ID: "j1", State: store.JobFailed, Error: "late"}})
	if err != nil || !firsts[0] || firsts[1] {
		t.Fatalf("FinishJobs: %v %v", firsts, err)
	}
	if j3, _ := s.Job("j3"); j3 == nil || string(j3.Result) != "crl" {
		t.Fatalf("j3: %+v", j3)
	}
	if _, err := s.FinishJob(store.Finished{ID: "nope", State: store.JobDone}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("finishing an unknown job: %v", err)
	}
	s.CreateJob(&store.Job{ID: "j4", RequestHash: "h4", State: store.JobQueued})
	// A dead-lettered failure is kept as retryable; only a failure can be.
	s.CreateJob(&store.Job{ID: "j5", RequestHash: "h5", State: store.JobQueued})
	s.CreateJob(&store.Job{ID: "j6", RequestHash: "h6", State: store.JobQueued, Kind: "crl"})
	if _, err := s.FinishJobs([]store.Finished{{ID: "j5", State: store.JobFailed, Error: "dead letter", Retryable: true},
		{ID: "j6", State: store.JobDone, Result: []byte("crl"), Retryable: true}}); err != nil {
		t.Fatal(err)
	}
	if j5, err := s.Job("j5"); err != nil || !j5.Retryable || j5.State != store.JobFailed {
		t.Fatalf("dead-lettered job: %+v %v", j5, err)
	}
	if j6, err := s.Job("j6"); err != nil || j6.Retryable {
		t.Fatalf("a done job marked retryable: %+v %v", j6, err)
	}
	for state, want := range map[string]int{"": 5, store.JobQueued: 1, store.JobDone: 3, store.JobFailed: 1} {
		js, err := s.Jobs(state)
		if err != nil || len(js) != want {
			t.Errorf("Jobs(%q) = %d, %v; want %d", state, len(js), err, want)
		}
	}
}

// testStreamSeqs: the sweeper's stream sequences go into queued jobs
// only; a finished or unknown job is left alone.
func testStreamSeqs(t *testing.T, s CAStore) {
	s.CreateJob(&store.Job{ID: "q1", RequestHash: "h1", State: store.JobQueued, Kind: "crl", Payload: []byte("p")})
	s.CreateJob(&store.Job{ID: "q2", RequestHash: "h2", State: store.JobQueued, Kind: "crl"})
	if _, err := s.FinishJob(store.Finished{ID: "q2", State: store.JobDone, Result: []byte("crl")}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStreamSeqs(map[string]uint64{"q1": 7, "q2": 8, "nope": 9}); err != nil {
		t.Fatal(err)
	}
	if j, err := s.Job("q1"); err != nil || j.StreamSeq != 7 || string(j.Payload) != "p" || j.State != store.JobQueued {
		t.Fatalf("queued job: %+v %v", j, err)
	}
	if j, err := s.Job("q2"); err != nil || j.StreamSeq != 0 || j.State != store.JobDone {
		t.Fatalf("finished job: %+v %v", j, err)
	}
	if _, err := s.Job("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetStreamSeqs created a job: %v", err)
	}
}

// race runs f(0..n-1) on two clients at once, half on each.
// testOrigin: the certificate of a job carries the job's origin (who
// asked, through which front-end and label), FinishJob and FinishJobs
// alike; a certificate recorded without a job has none.
func testOrigin(t *testing.T, s CAStore) {
	est := &store.Origin{Frontend: "est", Label: "devices", Principal: "user:alice"}
	acme := &store.Origin{Frontend: "acme", Account: "acct1"}
	for _, j := range []*store.Job{
		{ID: "o1", RequestHash: "h1", State: store.JobQueued, Serial: "e1", Origin: est},
		{ID: "o2", RequestHash: "h2", State: store.JobQueued, Serial: "e2", Origin: acme},
		{ID: "o3", RequestHash: "h3", State: store.JobQueued, Serial: "e3"},
	} {
		if _, _, err := s.CreateJob(j); err != nil {
			t.Fatal(err)
		}
	}
	if j, err := s.Job("o1"); err != nil || j.Origin == nil || *j.Origin != *est {
		t.Fatalf("job origin: %+v %v", j, err)
	}
	if _, err := s.FinishJob(store.Finished{ID: "o1", State: store.JobDone, Cert: &store.Cert{Serial: "e1", JobID: "o1", DER: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishJobs([]store.Finished{
		{ID: "o2", State: store.JobDone, Cert: &store.Cert{Serial: "e2", JobID: "o2", DER: []byte{2}}},
		{ID: "o3", State: store.JobDone, Cert: &store.Cert{Serial: "e3", JobID: "o3", DER: []byte{3}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCert(&store.Cert{Serial: "e4", DER: []byte{4}}); err != nil {
		t.Fatal(err)
	}
	for serial, want := range map[int64]*store.Origin{0xe1: est, 0xe2: acme, 0xe3: nil, 0xe4: nil} {
		c, err := s.Cert(big.NewInt(serial))
		if err != nil {
			t.Fatal(err)
		}
		if (want == nil) != (c.Origin == nil) || want != nil && *c.Origin != *want {
			t.Errorf("certificate %x: origin %+v, want %+v", serial, c.Origin, want)
		}
	}
}

func race(n int, a, b CAStore, f func(i int, s CAStore)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i, s)
		}()
	}
	close(start)
	wg.Wait()
}

// Two clients race for the same serials: each serial goes to exactly one
// job, and exactly one certificate is recorded under it.
func testRaceSerial(t *testing.T, a, b CAStore) {
	const serials, contenders = 20, 6
	var mu sync.Mutex
	winners := map[int][]string{}
	race(serials*contenders, a, b, func(i int, s CAStore) {
		sn, who := i/contenders, fmt.Sprintf("job-%d-%d", i/contenders, i%contenders)
		j := &store.Job{ID: who, RequestHash: who, State: store.JobQueued, Serial: big.NewInt(int64(1000 + sn)).Text(16)}
		if _, created, err := s.CreateJob(j); err == nil && created {
			mu.Lock()
			winners[sn] = append(winners[sn], who)
			mu.Unlock()
		} else if err != nil && !errors.Is(err, store.ErrSerialInUse) {
			t.Errorf("CreateJob %s: %v", who, err)
		}
	})
	for sn := range serials {
		if len(winners[sn]) != 1 {
			t.Fatalf("serial %d reserved by %v, want exactly one job", sn, winners[sn])
		}
	}
	// Every contender now tries to record its own certificate under the
	// serial: only the reserving job's goes in.
	var recorded sync.Map
	race(serials*contenders, a, b, func(i int, s CAStore) {
		sn, who := i/contenders, fmt.Sprintf("job-%d-%d", i/contenders, i%contenders)
		c := &store.Cert{Serial: big.NewInt(int64(1000 + sn)).Text(16), JobID: who, DER: []byte(who)}
		if err := s.PutCert(c); err == nil {
			if prev, dup := recorded.LoadOrStore(sn, who); dup {
				t.Errorf("serial %d recorded for %s and %s", sn, prev, who)
			}
		} else if !errors.Is(err, store.ErrSerialInUse) {
			t.Errorf("PutCert %s: %v", who, err)
		}
	})
	all, err := a.List(store.Filter{})
	if err != nil || len(all) != serials {
		t.Fatalf("%d certificates listed (%v), want %d", len(all), err, serials)
	}
	for _, c := range all {
		sn, _ := store.ParseSerial(c.Serial)
		if c.JobID != winners[int(sn.Int64()-1000)][0] {
			t.Fatalf("serial %s recorded for %s, reserved by %v", c.Serial, c.JobID, winners[int(sn.Int64()-1000)])
		}
	}
}

// Two recorders race to finish the same jobs with different
// certificates (a redelivered job signed twice): each job is finished
// once, with the certificate that is in the store.
func testRaceFinish(t *testing.T, a, b CAStore) {
	const jobs = 20
	for i := range jobs {
		id := fmt.Sprintf("f%d", i)
		if _, _, err := a.CreateJob(&store.Job{ID: id, RequestHash: id, State: store.JobQueued, Serial: big.NewInt(int64(5000 + i)).Text(16)}); err != nil {
			t.Fatal(err)
		}
	}
	var firsts [jobs]int
	var mu sync.Mutex
	race(jobs*4, a, b, func(i int, s CAStore) {
		n := i / 4
		id := fmt.Sprintf("f%d", n)
		c := &store.Cert{Serial: big.NewInt(int64(5000 + n)).Text(16), JobID: id, DER: []byte(fmt.Sprintf("%s-%d", id, i%4))}
		var first bool
		var err error
		if i%8 < 4 {
			first, err = s.FinishJob(store.Finished{ID: id, State: store.JobDone, Cert: c})
		} else {
			var fs []bool
			fs, err = s.FinishJobs([]store.Finished{{ID: id, State: store.JobDone, Cert: c}})
			if len(fs) == 1 {
				first = fs[0]
			}
		}
		if err != nil && !errors.Is(err, store.ErrSerialInUse) {
			t.Errorf("finish %s: %v", id, err)
		}
		if first {
			mu.Lock()
			firsts[n]++
			mu.Unlock()
		}
	})
	for i, n := range firsts {
		if n != 1 {
			t.Fatalf("job f%d finished first %d times, want once", i, n)
		}
		j, err := b.Job(fmt.Sprintf("f%d", i))
		if err != nil || j.State != store.JobDone {
			t.Fatalf("job f%d: %+v %v", i, j, err)
		}
		if _, err := b.Cert(big.NewInt(int64(5000 + i))); err != nil {
			t.Fatalf("job f%d has no certificate: %v", i, err)
		}
	}
}

// Read-modify-write under contention loses no update: CRL numbers are
// all different, a certificate is revoked once.
func testRaceCounters(t *testing.T, a, b CAStore) {
	const n = 24
	nums := make([]int64, n)
	race(n, a, b, func(i int, s CAStore) {
		v, err := s.NextCRLNumber()
		if err != nil {
			t.Errorf("NextCRLNumber: %v", err)
			return
		}
		nums[i] = v.Int64()
	})
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	for i, v := range nums {
		if v != int64(i+1) {
			t.Fatalf("CRL numbers %v, want 1..%d each once", nums, n)
		}
	}
	if err := a.PutCert(&store.Cert{Serial: "77", DER: []byte{7}, Issued: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var revoked sync.Map
	race(8, a, b, func(i int, s CAStore) {
		if _, err := s.Revoke(big.NewInt(0x77), store.Revocation{Time: time.Now(), Reason: i}); err == nil {
			revoked.Store(i, true)
		} else if !errors.Is(err, store.ErrRevoked) {
			t.Errorf("Revoke: %v", err)
		}
	})
	count := 0
	revoked.Range(func(_, _ any) bool { count++; return true })
	if count != 1 {
		t.Fatalf("revoked %d times, want once", count)
	}
}
