package est

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/qpki/qpki/acme/ratelimit"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/server"
	"github.com/qpki/qpki/worker"
)

// A server-generated key is bound to the principal that asked as well as
// to the CSR: a second user sending the same CSR while the first one's
// job waits gets a job, a key and a certificate of its own, never the
// first one's key.
func TestServerKeygenBoundToPrincipal(t *testing.T) {
	e := newEnv(t, envConfig{workers: 0, tlsCert: true, opts: func(o *Options) {
		o.Wait, o.RetryAfter = 300*time.Millisecond, time.Second
	}})
	if _, err := SetUser(e.dataDir, "mallory", []byte("mallory's password"), nil); err != nil {
		t.Fatal(err)
	}
	csr, _ := newCSR(t, "shared-kg.example.com")
	users := [][2]string{{testUser, testPass}, {"mallory", "mallory's password"}}
	for _, u := range users {
		if r := e.do(e.client(nil), "POST", "serverkeygen", b64(csr), u[0], u[1]); r.code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", u[0], r.code, r.text())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		wq, err := e.srv.Core.Queue.WorkerQueue(ctx) // the worker user, as qpki worker signs in
		if err != nil {
			done <- err
			return
		}
		defer wq.Close()
		done <- worker.Run(ctx, e.srv.Core.CA, wq, worker.Options{QueueName: enroll.QueueName(e.srv.Core.CA)})
	}()
	t.Cleanup(func() { cancel(); <-done })
	var keys [][]byte
	for _, u := range users {
		var r response
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if r = e.do(e.client(nil), "POST", "serverkeygen", b64(csr), u[0], u[1]); r.code != http.StatusAccepted {
				break
			}
		}
		parts := splitKeygen(t, r)
		checkKeyMatches(t, parts.key, parts.cert)
		keys = append(keys, parts.key)
	}
	if bytes.Equal(keys[0], keys[1]) {
		t.Fatal("the second principal received the first one's private key")
	}
	if n := e.certCount(); n != 2 {
		t.Fatalf("%d certificates, want one per principal", n)
	}
}

// Password checks beyond --est-auth-max-checks are refused at once with
// 503 and Retry-After, not queued behind the running ones.
func TestPasswordChecksBounded(t *testing.T) {
	e := newEnv(t, envConfig{tlsCert: true, opts: func(o *Options) {
		o.MaxPasswordChecks, o.RetryAfter, o.Wait = 1, 7*time.Second, 200*time.Millisecond
	}})
	e.fe.basic.sem <- struct{}{} // one check running
	csr, _ := newCSR(t, "bounded.example.com")
	c := e.client(nil)
	c.Timeout = 20 * time.Second // a queued request would wait for the slot
	r := e.do(c, "POST", "simpleenroll", b64(csr), testUser, testPass)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "7" {
		t.Fatalf("over the bound: %d %q %s", r.code, r.header.Get("Retry-After"), r.text())
	}
	<-e.fe.basic.sem
	if r := e.do(c, "POST", "simpleenroll", b64(csr), testUser, testPass); r.code != http.StatusAccepted && r.code != http.StatusOK {
		t.Fatalf("with a free slot: %d %s", r.code, r.text())
	}
}

// EST limits each client address and each principal, answering 429 with
// Retry-After; exempt principals are not limited.
func TestRateLimits(t *testing.T) {
	e := newEnv(t, envConfig{workers: 0, tlsCert: true, opts: func(o *Options) {
		o.RateIP = ratelimit.Limit{Rate: 0.001, Burst: 6}
		o.RatePrincipal = ratelimit.Limit{Rate: 0.001, Burst: 2}
		o.RateExempt = []string{"user:" + testUser}
		o.Wait = 100 * time.Millisecond
	}})
	dev := e.deviceCert("router-rl")
	c := e.client(&dev)
	for i := range 3 {
		csr, _ := newCSR(t, "rl.example.com")
		r := e.do(c, "POST", "simpleenroll", b64(csr), "", "")
		if i < 2 && r.code != http.StatusAccepted || i == 2 && (r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "") {
			t.Fatalf("enrollment %d by one device: %d %q %s", i+1, r.code, r.header.Get("Retry-After"), r.text())
		}
	}
	// alice is exempt from the principal limit, not from the address's.
	for i := range 4 {
		csr, _ := newCSR(t, "rl2.example.com")
		r := e.do(e.client(nil), "POST", "simpleenroll", b64(csr), testUser, testPass)
		want := http.StatusAccepted
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		if r.code != want {
			t.Fatalf("request %d from the address: %d %s", i+4, r.code, r.text())
		}
	}
}

// Behind a trusted proxy EST limits each client (its X-Forwarded-For
// address), and an IPv6 client by its /64, whichever of its addresses it
// uses.
func TestRateLimitsBehindProxy(t *testing.T) {
	e := newEnv(t, envConfig{workers: 0, tlsCert: true,
		server: func(c *server.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} },
		opts:   func(o *Options) { o.RateIP = ratelimit.Limit{Rate: 0.001, Burst: 2} }})
	c := e.client(nil)
	get := func(client string) int {
		req, _ := http.NewRequest("GET", e.url+"cacerts", nil)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 4 {
		for _, client := range []string{fmt.Sprintf("2001:db8:0:%x::1", i), fmt.Sprintf("198.51.100.%d", i+1)} {
			if code := get(client); code != http.StatusOK {
				t.Fatalf("first request of %s: %d", client, code)
			}
		}
	}
	limited := 0
	for i := 1; i <= 6; i++ {
		if get(fmt.Sprintf("2001:db8:ffff:1::%x", i)) == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 4 {
		t.Errorf("%d of 6 requests from one /64 limited, want 4 (a burst of 2)", limited)
	}
}
