package server_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/server"
)

// The local API answers an issued job with the certificate once: in der,
// with its record (subject, serial, ...) beside it without a second copy.
func TestLocalAnswerCarriesCertificateOnce(t *testing.T) {
	e := newEnv(t)
	e.startServe(1)
	defer e.stopAll(t)
	cl, err := server.Dial(e.caDir)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := cl.Submit(context.Background(), server.SubmitRequest{Profile: "ec/tls-server",
		CSR: benchCSR(t, "once.example.com"), Key: "once", Wait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(st.DER)
	if err != nil {
		t.Fatalf("der: %v", err)
	}
	if st.Cert == nil || st.Cert.Subject == "" || st.Serial != st.Cert.Serial || len(st.Cert.DER) != 0 {
		t.Fatalf("record %+v, serial %q", st.Cert, st.Serial)
	}
	if cert.DNSNames[0] != "once.example.com" {
		t.Errorf("issued for %v", cert.DNSNames)
	}
}

// TestLocalSocketOwnerOnly: the local API socket lives in the CA dir,
// which qpki ca init made 0700, and is itself 0600; it is bound elsewhere
// and renamed into place (nothing of that is left behind), and a CA dir
// open to others is warned about.
func TestLocalSocketOwnerOnly(t *testing.T) {
	o := startObserved(t)
	dir := o.s.Core.CA.Dir
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("CA dir: %v %v, want 0700", fi.Mode(), err)
	}
	sock := server.SocketPath(dir)
	if filepath.Dir(sock) != dir {
		t.Errorf("socket %s is not in the CA dir", sock)
	}
	fi, err = os.Stat(sock)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want a 0600 socket", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".s") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	cl, err := server.Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if strings.Contains(o.log.String(), "open to other users") {
		t.Error("warned about a 0700 CA dir")
	}
	o.s.Shutdown()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after shutdown: %v", err)
	}

	// An older CA dir, 0755: serve warns, and the socket is still 0600.
	loose := startObservedWith(t, func(c *server.Config) { os.Chmod(c.CADir, 0o755) })
	if fi, err := os.Stat(server.SocketPath(loose.s.Core.CA.Dir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket in a 0755 CA dir: %v %v", fi, err)
	}
	if !strings.Contains(loose.log.String(), "open to other users") {
		t.Error("no warning about a 0755 CA dir")
	}
}
