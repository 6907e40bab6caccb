package queue

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/qpki/qpki/internal/testport"
)

// A user nkey seed used only by this test.
const testUserSeed = "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY"

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate to dir.
func testPKI(t *testing.T, dir string) (caFile, srvCert, srvKey, cliCert, cliKey string, pool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, serial int64, eku x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", kder)
	}
	caFile = write("ca.crt", "CERTIFICATE", caDER)
	srvCert, srvKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return
}

// TestExternalServerWithNkeyAndTLS connects to a separately configured
// server that wants an nkey user and a TLS client certificate.
func TestExternalServerWithNkeyAndTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, srvCert, srvKey, cliCert, cliKey, pool := testPKI(t, dir)
	seedFile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(seedFile, []byte(testUserSeed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The user's public key, as nats.go derives it from the seed.
	nkeyOpt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	var no nats.Options
	if err := nkeyOpt(&no); err != nil || !strings.HasPrefix(no.Nkey, "U") {
		t.Fatalf("nkey public key %q: %v", no.Nkey, err)
	}

	cert, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: filepath.Join(dir, "store"),
		Nkeys: []*server.NkeyUser{{Nkey: no.Nkey}},
		TLS:   true, TLSVerify: true,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := fmt.Sprintf("tls://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
	ctx := testContext(t)

	good := Options{NATSURL: url, NKeySeedFile: seedFile, TLSCAFile: caFile, TLSCertFile: cliCert, TLSKeyFile: cliKey}
	q, err := Start(ctx, good) // Start with a URL connects, never embeds
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Embedded() || q.URL() != url {
		t.Fatalf("embedded = %v, URL = %q", q.Embedded(), q.URL())
	}
	if err := q.PublishJob(ctx, testJob("ext-1", ClassBatch)); err != nil {
		t.Fatal(err)
	}
	if st, err := q.Status(ctx); err != nil || st.Batch.Pending != 1 || st.Replicas != 1 {
		t.Fatalf("status = %+v, %v", st, err)
	}

	noNkey := good
	noNkey.NKeySeedFile = ""
	noCert := good
	noCert.TLSCertFile, noCert.TLSKeyFile = "", ""
	for name, o := range map[string]Options{"without nkey": noNkey, "without client certificate": noCert} {
		if c, err := Connect(ctx, o); err == nil {
			c.Close()
			t.Errorf("%s: connected", name)
		}
	}
	bad := good
	bad.TLSKeyFile = ""
	if _, err := Connect(ctx, bad); err == nil {
		t.Error("a client certificate without its key was accepted")
	}
}

func TestEmbeddedFixedPort(t *testing.T) {
	port := testport.Free(t)
	q, err := Start(testContext(t), Options{DataDir: t.TempDir(), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if want := fmt.Sprintf("nats://127.0.0.1:%d", port); q.URL() != want {
		t.Fatalf("URL = %q, want %q", q.URL(), want)
	}
}

func TestOptionsRejected(t *testing.T) {
	ctx := testContext(t)
	for name, o := range map[string]Options{
		"no data dir":         {},
		"embedded replicas 3": {DataDir: t.TempDir(), Replicas: 3},
		"tiny messages":       {DataDir: t.TempDir(), MaxMsgSize: 10},
		"creds and nkey":      {NATSURL: "nats://127.0.0.1:1", CredsFile: "a", NKeySeedFile: "b"},
		"port":                {DataDir: t.TempDir(), Port: 70000},
	} {
		if q, err := Start(ctx, o); err == nil {
			q.Close()
			t.Errorf("%s: Start accepted %+v", name, o)
		}
	}
	if _, err := Connect(ctx, Options{DataDir: t.TempDir()}); err == nil {
		t.Error("Connect without a URL or data dir succeeded")
	}
	if _, err := Connect(ctx, Options{EmbeddedDataDir: t.TempDir()}); err == nil {
		t.Error("Connect to a data dir without a server succeeded")
	}
}
