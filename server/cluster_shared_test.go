package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// checkSharedFrontendState checks what front-ends with --store jetstream
// share besides the CA's records: an ACME nonce from one is good once, at
// the other; an EST user added through the CLI logs in at both.
func checkSharedFrontendState(t *testing.T, e *env, natsURL, caDir string, logs []string) {
	t.Helper()
	var bases []string
	for _, l := range logs {
		bases = append(bases, "https://"+serveAddr(t, e, l))
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the test checks state, not the CA's trust

	// ACME: a nonce issued by serve1 is accepted by serve2, once.
	resp, err := client.Head(bases[0] + "/acme/new-nonce")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	nonce := resp.Header.Get("Replay-Nonce")
	if nonce == "" {
		t.Fatalf("serve1 new-nonce: %s, no Replay-Nonce", resp.Status)
	}
	for i, base := range []string{bases[1], bases[0]} {
		status, body := newAccount(t, client, base, nonce)
		if i == 0 && (status != http.StatusCreated || strings.Contains(body, "badNonce")) {
			t.Fatalf("serve2 refuses serve1's nonce: %d %s", status, body)
		}
		if i == 1 && !strings.Contains(body, "badNonce") {
			t.Fatalf("the nonce is accepted a second time, at serve1: %d %s", status, body)
		}
	}

	// ACME: one external account key from the CLI, used by a newAccount
	// at each front-end at the same instant, binds exactly one account.
	out := e.run("acme", "eab", "add", "--kid", "team-a", "--json", "--store", "jetstream", "--nats-url", natsURL, "--ca-dir", caDir)
	var k struct{ KID, HMAC string }
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.KID != "team-a" {
		t.Fatalf("acme eab add --store jetstream: %v %s", err, out)
	}
	mac, err := base64.RawURLEncoding.DecodeString(k.HMAC)
	if err != nil {
		t.Fatal(err)
	}
	statuses := make(chan int, 2)
	for _, base := range bases {
		r, err := client.Head(base + "/acme/new-nonce")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		go func(nonce string) {
			s, _ := newAccountEAB(t, client, base, nonce, k.KID, mac)
			statuses <- s
		}(r.Header.Get("Replay-Nonce"))
	}
	if a, b := <-statuses, <-statuses; (a == http.StatusCreated) == (b == http.StatusCreated) {
		t.Fatalf("one key used at both front-ends at once: %d and %d, want exactly one 201", a, b)
	}
	out = e.run("acme", "eab", "list", "--json", "--store", "jetstream", "--nats-url", natsURL, "--ca", filepath.Base(caDir))
	if !strings.Contains(out, `"account":`) {
		t.Fatalf("acme eab list --store jetstream does not show the bound account: %s", out)
	}

	// EST: a user added through the CLI on the cluster, with its names,
	// logs in and enrolls at both (the unlabelled endpoints grant only
	// users' names: --est-config, estConfig).
	add := exec.Command(qpkiBin, "est", "user", "add", "fleet", "--store", "jetstream", "--nats-url", natsURL, "--ca-dir", caDir,
		"--allow-dns", "dev1.example.com")
	add.Stdin = strings.NewReader("s3cret-pw\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("est user add --store jetstream: %v\n%s", err, out)
	}
	out = e.run("est", "user", "list", "--store", "jetstream", "--nats-url", natsURL, "--ca", filepath.Base(caDir))
	if !strings.Contains(out, "fleet") {
		t.Fatalf("est user list --store jetstream: %s", out)
	}
	csr := testCSR(t)
	for i, base := range bases {
		if s := estEnroll(t, client, base, "fleet", "wrong", csr); s != http.StatusUnauthorized {
			t.Fatalf("serve%d: wrong password answered %d", i+1, s)
		}
		if s := estEnroll(t, client, base, "fleet", "s3cret-pw", csr); s != http.StatusOK && s != http.StatusAccepted {
			t.Fatalf("serve%d: the CLI's EST user got %d", i+1, s)
		}
	}
}

// estConfig writes an --est-config whose unlabelled endpoints grant only
// what each user was granted.
func estConfig(t *testing.T, dir string) string {
	path := filepath.Join(dir, "est.yaml")
	if err := os.WriteFile(path, []byte("default:\n  names: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var httpsLine = regexp.MustCompile(`HTTPS +https://([^/\s]+)/`)

// serveAddr waits for the listener address a serve prints to its log.
func serveAddr(t *testing.T, e *env, log string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(filepath.Join(e.dir, log))
		if m := httpsLine.FindSubmatch(data); m != nil {
			return string(m[1])
		}
		time.Sleep(100 * time.Millisecond)
	}
	dumpLogs(t, e)
	t.Fatalf("%s: no HTTPS address", log)
	return ""
}

// newAccountEAB posts a newAccount request for a fresh key bound to
// external account key kid.
func newAccountEAB(t *testing.T, client *http.Client, base, nonce, kid string, mac []byte) (int, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	url := base + "/acme/new-account"
	jwk, err := (&jose.JSONWebKey{Key: &key.PublicKey}).MarshalJSON()
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	inner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: mac},
		(&jose.SignerOptions{}).WithHeader("kid", kid).WithHeader("url", url))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	binding, err := inner.Sign(jwk)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	payload := `{"termsOfServiceAgreed":true,"externalAccountBinding":` + binding.FullSerialize() + `}`
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, &jose.SignerOptions{
		EmbedJWK: true, ExtraHeaders: map[jose.HeaderKey]any{"nonce": nonce, "url": url}})
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	jws, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	resp, err := client.Post(url, "application/jose+json", strings.NewReader(jws.FullSerialize()))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusCreated && !strings.Contains(string(body), "already used") {
		t.Errorf("newAccount with EAB at %s: %d %s", base, resp.StatusCode, body)
	}
	return resp.StatusCode, string(body)
}

// newAccount posts a newAccount request for a fresh key with the given
// nonce and returns the status and body.
func newAccount(t *testing.T, client *http.Client, base, nonce string) (int, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, &jose.SignerOptions{
		EmbedJWK: true, ExtraHeaders: map[jose.HeaderKey]any{"nonce": nonce, "url": base + "/acme/new-account"}})
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte(`{"termsOfServiceAgreed":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(base+"/acme/new-account", "application/jose+json", strings.NewReader(jws.FullSerialize()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(body)
}

func testCSR(t *testing.T) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "dev1.example.com"}, DNSNames: []string{"dev1.example.com"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func estEnroll(t *testing.T, client *http.Client, base, user, pw string, csr []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/.well-known/est/simpleenroll",
		bytes.NewReader([]byte(base64.StdEncoding.EncodeToString(csr))))
	req.Header.Set("Content-Type", "application/pkcs10")
	req.Header.Set("Content-Transfer-Encoding", "base64")
	req.SetBasicAuth(user, pw)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
