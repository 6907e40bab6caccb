package acme_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/acme"
)

// TestNoncesSavedAfterLastHandler: a request still being served when the
// front-end closes (its listener's grace period over) redeems its nonce
// before the nonces are saved, so that nonce is not live again after the
// restart (it used to be saved first, redeemed unrecorded, and restored:
// a replay); the nonce its answer carries is good after the restart.
func TestNoncesSavedAfterLastHandler(t *testing.T) {
	e := newEnv(t, nil)
	c := e.raw(t)
	c.register()
	used := c.nonce()
	body := c.jws(c.kid, used, []byte{})

	// The request's headers go out, its body waits: the handler runs,
	// and asks for the body (100 Continue).
	conn, err := tls.Dial("tcp", e.srv.Addr, &tls.Config{RootCAs: e.roots})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	path := c.kid[strings.Index(c.kid, "/acme/"):]
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/jose+json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
		path, e.srv.Addr, len(body))
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue: %v %v", resp, err)
	}

	// The front-end closes while that handler runs.
	closed := make(chan error, 1)
	go func() { closed <- e.front.Close() }()
	// Wait until it refuses new requests (it drains) or, as it used to,
	// has closed already.
	hc := e.httpClient()
	for draining := false; !draining; {
		select {
		case err := <-closed:
			closed <- err
			draining = true
		default:
			resp, err := hc.Get(e.dirURL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			draining = resp.StatusCode == http.StatusServiceUnavailable
			if !draining {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the request in flight at shutdown: HTTP %d %s", resp.StatusCode, answer)
	}
	issued := resp.Header.Get("Replay-Nonce")
	if err := <-closed; err != nil {
		t.Fatal(err)
	}

	// Restart on the same data directory.
	e.stop()
	e.start(acme.Config{DataDir: e.dataDir, Profiles: []string{"ec/tls-server"}, HTTPPort: e.httpPort, ResolveTo: "127.0.0.1"})
	c.dir = e.raw(t).dir
	c.kid = "https://" + e.srv.Addr + path
	replay := c.postBody(c.kid, c.jws(c.kid, used, []byte{}), "application/jose+json")
	if replay.status != http.StatusBadRequest || !bytes.Contains(replay.body, []byte("badNonce")) {
		t.Fatalf("the nonce redeemed during shutdown is live again after the restart: HTTP %d %s", replay.status, replay.body)
	}
	if r := c.postBody(c.kid, c.jws(c.kid, issued, []byte{}), "application/jose+json"); r.status != http.StatusOK {
		t.Fatalf("the nonce answered during shutdown after the restart: HTTP %d %s", r.status, r.body)
	}
}
