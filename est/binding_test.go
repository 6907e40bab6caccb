package est

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
)

// post sends one request on an established TLS connection.
func post(t *testing.T, conn *tls.Conn, url string, body []byte) response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/pkcs10")
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// binding computes what a client puts in challengePassword.
func binding(t *testing.T, conn *tls.Conn) string {
	cs := conn.ConnectionState()
	if cs.Version == tls.VersionTLS13 {
		cb, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(cb)
	}
	return base64.StdEncoding.EncodeToString(cs.TLSUnique)
}

func TestChannelBinding(t *testing.T) {
	e := sharedEnv(t)
	dev := e.deviceCert("router-cb")
	host := strings.TrimPrefix(strings.TrimSuffix(e.url, PathPrefix), "https://")
	dial := func(version uint16) *tls.Conn {
		conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: e.roots, Certificates: []tls.Certificate{dev},
			MinVersion: version, MaxVersion: version})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	url := e.url + "bound/simpleenroll"
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS 1.3 tls-exporter", tls.VersionTLS13}, {"TLS 1.2 tls-unique", tls.VersionTLS12}} {
		conn := dial(v.version)
		before := e.certCount()
		csr, _ := newCSR(t, "cb.example.com")
		if r := post(t, conn, url, b64(csr)); r.code != http.StatusForbidden || !strings.Contains(r.text(), "channel binding is required") {
			t.Errorf("%s: no challengePassword: %d %s", v.name, r.code, r.text())
		}
		other := dial(v.version)
		csr, _ = newCSR(t, "cb.example.com", challengeAttr(binding(t, other)))
		if r := post(t, conn, url, b64(csr)); r.code != http.StatusForbidden || !strings.Contains(r.text(), "does not match") {
			t.Errorf("%s: another connection's binding: %d %s", v.name, r.code, r.text())
		}
		if e.certCount() != before {
			t.Fatalf("%s: refused requests issued certificates", v.name)
		}
		csr, _ = newCSR(t, "cb.example.com", challengeAttr(binding(t, conn)))
		r := post(t, conn, url, b64(csr))
		if r.code != http.StatusOK {
			t.Fatalf("%s: %d %s", v.name, r.code, r.text())
		}
		certsResponse(t, r)
	}
}
