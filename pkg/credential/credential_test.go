package credential_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/credential"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/hsm/hsmtest"
	"github.com/qpki/qpki/pkg/store"
)

func TestMain(m *testing.M) { os.Exit(hsmtest.Run(m, "cred-hsm")) }

// testCA is a file-key CA that certifies and revokes for the credentials.
type testCA struct {
	*ca.CA
	root *x509.Certificate
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	c, err := ca.Init(ca.InitOptions{Dir: filepath.Join(t.TempDir(), "ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "Credential Test Root"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	root, err := c.Certificate("")
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{CA: c, root: root}
}

func (c *testCA) Issue(ctx context.Context, profile string, vars map[string]any, pubDER []byte) ([]byte, error) {
	pub, err := algo.ParsePKIX(pubDER)
	if err != nil {
		return nil, err
	}
	rec, err := c.CA.Issue(ctx, ca.IssueRequest{Profile: profile, Vars: vars, PublicKey: pub}, ca.KeyOptions{})
	if err != nil {
		return nil, err
	}
	return rec.DER, nil
}

func (c *testCA) Revoke(ctx context.Context, serial string, reason int) error {
	_, err := c.CA.Revoke(serial, reason, time.Time{})
	if errors.Is(err, store.ErrRevoked) {
		return nil
	}
	return err
}

func (c *testCA) status(t *testing.T, serial string) string {
	t.Helper()
	st, err := c.Store()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := store.ParseSerial(serial)
	rec, err := st.Cert(n)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Status(time.Now())
}

func uniqueLabel(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func tokenKeys(t *testing.T, cfg, label string) map[string]bool {
	t.Helper()
	tok, err := hsm.OpenFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	ks, err := tok.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, k := range ks {
		if k.Label == label {
			ids[k.KeyID] = true
		}
	}
	return ids
}

// destroyAfter removes the test's keys from the token at the end, for an
// operator's HSM (make test-hsm).
func destroyAfter(t *testing.T, cfg, label string) {
	t.Cleanup(func() {
		tok, err := hsm.OpenFile(cfg)
		if err != nil {
			return
		}
		defer tok.Close()
		for id := range tokenKeys(t, cfg, label) {
			b, _ := hex.DecodeString(id)
			if k, err := tok.FindKey(label, b); err == nil {
				tok.DestroyKey(k)
			}
		}
	})
}

// signAndVerify signs a message with the credential's key and checks the
// signature against the public key of cert.
func signAndVerify(t *testing.T, dir, id string, o credential.OpenOptions) *x509.Certificate {
	t.Helper()
	s, cert, err := credential.Signer(dir, id, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := []byte("signed with credential " + id)
	sig, err := algo.SignDigest(s, rand.Reader, msg, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := algo.VerifyDigest(cert.PublicKey, s.Algorithm(), msg, sig, false); err != nil {
		t.Fatalf("the credential's signature does not verify with its certificate: %v", err)
	}
	return cert
}

func noKeyFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			if strings.Contains(string(data), "PRIVATE KEY") {
				t.Errorf("private key material in the credential dir: %s", path)
			}
		}
		return nil
	})
}

// Enroll a credential whose key is generated in the HSM, check
// credential.meta.json, sign with the credential and verify the signature
// with its certificate; rotate it (a new key in the HSM) and revoke it.
func TestHSMCredentialLifecycle(t *testing.T) {
	tgt := hsmtest.Use(t, "cred-hsm")
	c := newCA(t)
	label := uniqueLabel("server-key")
	destroyAfter(t, tgt.Config, label)
	dir := filepath.Join(c.Dir, "credentials")
	cred, err := credential.Enroll(context.Background(), c, credential.EnrollOptions{
		Dir: dir, CADir: c.Dir, Profiles: []string{"ec/tls-server"},
		Vars: map[string]any{"cn": "server.example.com", "dns_names": "server.example.com,www.example.com"},
		Key:  credential.KeySpec{HSMConfig: tgt.Config, Label: label},
	})
	if err != nil {
		t.Fatal(err)
	}
	credDir := filepath.Join(dir, cred.ID)

	// credential.meta.json, field by field.
	var meta map[string]any
	data, err := os.ReadFile(filepath.Join(credDir, credential.MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "subject", "profiles", "status", "created", "not_before", "not_after", "certificates"} {
		if _, ok := meta[k]; !ok {
			t.Errorf("%s has no %q", credential.MetaFile, k)
		}
	}
	if meta["id"] != cred.ID || meta["status"] != "valid" || !strings.Contains(meta["subject"].(string), "server.example.com") {
		t.Errorf("meta: %v", meta)
	}
	certs := meta["certificates"].([]any)
	if len(certs) != 1 {
		t.Fatalf("certificates: %v", certs)
	}
	first := certs[0].(map[string]any)
	for _, k := range []string{"serial", "role", "profile", "algorithm", "fingerprint", "storage"} {
		if _, ok := first[k]; !ok {
			t.Errorf("certificate entry has no %q", k)
		}
	}
	if first["role"] != "signature" || first["profile"] != "ec/tls-server" || first["algorithm"] != "ecdsa-p256" {
		t.Errorf("certificate entry: %v", first)
	}
	storage, ok := first["storage"].([]any)
	if !ok || len(storage) != 1 {
		t.Fatalf("storage is not a list of one: %v", first["storage"])
	}
	st := storage[0].(map[string]any)
	if st["type"] != "pkcs11" || st["config"] != "./hsm.yaml" || st["label"] != label || st["key_id"] == "" || len(st) != 4 {
		t.Errorf("storage entry: %v", st)
	}
	if strings.Contains(string(data), tgt.PIN) {
		t.Error("the metadata holds the PIN")
	}
	if ids := tokenKeys(t, tgt.Config, label); len(ids) != 1 || !ids[st["key_id"].(string)] {
		t.Errorf("token keys labelled %s: %v", label, ids)
	}
	noKeyFiles(t, credDir)

	// The stored reference is enough to sign later.
	cert := signAndVerify(t, dir, cred.ID, credential.OpenOptions{})
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(c.root), DNSName: "www.example.com"}); err != nil {
		t.Fatal(err)
	}

	// Rotation: a new key in the same HSM and label, a new certificate; the
	// old one archived.
	rot, err := credential.Rotate(context.Background(), c, dir, cred.ID, credential.RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rot.Certificates) != 2 || rot.Certificates[0].Status != credential.CertArchived || rot.Certificates[1].Status != credential.CertActive {
		t.Fatalf("after rotation: %+v", rot.Certificates)
	}
	oldSt, newSt := rot.Certificates[0].Storage[0], rot.Certificates[1].Storage[0]
	if newSt.Type != "pkcs11" || newSt.Label != label || newSt.KeyID == oldSt.KeyID || newSt.Config != oldSt.Config {
		t.Errorf("rotated storage %+v, old %+v", newSt, oldSt)
	}
	if ids := tokenKeys(t, tgt.Config, label); len(ids) != 2 || !ids[newSt.KeyID] || !ids[oldSt.KeyID] {
		t.Errorf("token keys after rotation: %v", ids)
	}
	newCert := signAndVerify(t, dir, cred.ID, credential.OpenOptions{})
	if newCert.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("the signer still uses the old certificate")
	}
	noKeyFiles(t, credDir)

	// Revocation revokes both certificates at the CA.
	rev, err := credential.Revoke(context.Background(), c, dir, cred.ID, 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if rev.Status != credential.StatusRevoked {
		t.Errorf("status %s", rev.Status)
	}
	for _, cc := range rev.Certificates {
		if s := c.status(t, cc.Serial); s != "revoked" {
			t.Errorf("certificate %s is %s at the CA", cc.Serial, s)
		}
	}
	if _, _, err := credential.Signer(dir, cred.ID, credential.OpenOptions{}); err == nil {
		t.Error("a revoked credential still signs")
	}
	if _, err := credential.Rotate(context.Background(), c, dir, cred.ID, credential.RotateOptions{}); err == nil {
		t.Error("a revoked credential was rotated")
	}
	list, err := credential.List(dir)
	if err != nil || len(list) != 1 || list[0].ID != cred.ID {
		t.Errorf("list: %v %v", list, err)
	}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// A failed issuance leaves no credential and no key in the HSM.
func TestHSMCredentialEnrollFailureLeavesNothing(t *testing.T) {
	tgt := hsmtest.Use(t, "cred-hsm")
	c := newCA(t)
	label := uniqueLabel("refused")
	destroyAfter(t, tgt.Config, label)
	dir := filepath.Join(t.TempDir(), "credentials")
	refuse := credential.IssuerFunc(func(ctx context.Context, profile string, vars map[string]any, pub []byte) ([]byte, error) {
		return nil, errors.New("policy says no")
	})
	_, err := credential.Enroll(context.Background(), refuse, credential.EnrollOptions{
		Dir: dir, CADir: c.Dir, Profiles: []string{"ec/tls-server"}, Vars: map[string]any{"cn": "x.example.com"},
		Key: credential.KeySpec{HSMConfig: tgt.Config, Label: label},
	})
	if err == nil || !strings.Contains(err.Error(), "policy says no") {
		t.Fatalf("enroll: %v", err)
	}
	if ids := tokenKeys(t, tgt.Config, label); len(ids) != 0 {
		t.Errorf("keys left in the token: %v", ids)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left in the credentials dir: %v", entries)
	}
	// An unknown profile and a profile that forbids the key's algorithm
	// fail before any key is made.
	_, err = credential.Enroll(context.Background(), c, credential.EnrollOptions{Dir: dir, Profiles: []string{"ec/no-such"},
		Key: credential.KeySpec{HSMConfig: tgt.Config, Label: label}})
	if err == nil {
		t.Error("unknown profile accepted")
	}
	_, err = credential.Enroll(context.Background(), c, credential.EnrollOptions{Dir: dir, Profiles: []string{"ec/tls-server"},
		Key: credential.KeySpec{HSMConfig: tgt.Config, Label: label, Algorithm: algo.RSA2048}})
	if err == nil || !strings.Contains(err.Error(), "rsa-2048") {
		t.Errorf("disallowed algorithm: %v", err)
	}
	if ids := tokenKeys(t, tgt.Config, label); len(ids) != 0 {
		t.Errorf("keys left in the token: %v", ids)
	}
}

// Credentials with key files: two profiles, encrypted keys, rotation,
// listing and bad ids.
func TestCredentialFileKeys(t *testing.T) {
	c := newCA(t)
	dir := filepath.Join(t.TempDir(), "credentials")
	pass := []byte("file key passphrase")
	cred, err := credential.Enroll(context.Background(), c, credential.EnrollOptions{
		Dir: dir, CADir: c.Dir, Profiles: []string{"ec/tls-client", "ec/signing"},
		Vars: map[string]any{"cn": "Alice"}, Key: credential.KeySpec{Passphrase: pass}, ID: "alice",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cred.ID != "alice" || len(cred.Certificates) != 2 || len(cred.Profiles) != 2 {
		t.Fatalf("credential: %+v", cred)
	}
	for _, cc := range cred.Certificates {
		st := cc.Storage[0]
		if st.Type != "software" || st.Path == "" || st.Label != "" {
			t.Errorf("storage: %+v", st)
		}
		data, err := os.ReadFile(filepath.Join(dir, "alice", st.Path))
		if err != nil || !strings.Contains(string(data), "ENCRYPTED PRIVATE KEY") {
			t.Errorf("key file %s is not encrypted: %v", st.Path, err)
		}
	}
	opts := credential.OpenOptions{Passphrase: func() ([]byte, error) { return pass, nil }}
	signAndVerify(t, dir, "alice", opts)
	if _, _, err := credential.Signer(dir, "alice", credential.OpenOptions{Passphrase: func() ([]byte, error) { return []byte("wrong"), nil }}); err == nil {
		t.Error("a wrong passphrase opened the key")
	}
	if _, err := credential.Enroll(context.Background(), c, credential.EnrollOptions{Dir: dir, CADir: c.Dir, Profiles: []string{"ec/tls-client"},
		Vars: map[string]any{"cn": "Alice"}, ID: "alice"}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("a second credential alice: %v", err)
	}
	rot, err := credential.Rotate(context.Background(), c, dir, "alice", credential.RotateOptions{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	if len(rot.Active()) != 2 || len(rot.Certificates) != 4 {
		t.Errorf("after rotation: %+v", rot.Certificates)
	}
	signAndVerify(t, dir, "alice", opts)

	bob, err := credential.Enroll(context.Background(), c, credential.EnrollOptions{Dir: dir, CADir: c.Dir, Profiles: []string{"ec/tls-client"},
		Vars: map[string]any{"cn": "Bob Example"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(bob.ID, "bob-example-") {
		t.Errorf("derived id %q", bob.ID)
	}
	list, err := credential.List(dir)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	for _, id := range []string{"../ca", "a/b", "", ".hidden"} {
		if _, err := credential.Show(dir, id); err == nil {
			t.Errorf("Show(%q) succeeded", id)
		}
	}
	if _, err := credential.Show(dir, "nobody"); err == nil || !strings.Contains(err.Error(), "no credential") {
		t.Errorf("Show(nobody): %v", err)
	}
	// A corrupt metadata file is an error that names it.
	os.WriteFile(filepath.Join(dir, "alice", credential.MetaFile), []byte("{"), 0o644)
	if _, err := credential.Show(dir, "alice"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt meta: %v", err)
	}
}

// A credential whose ML-DSA key is generated in the HSM, and a signature
// with it (HSM_PQC_ENABLED=1 with a token that offers ML-DSA).
func TestHSMPostQuantumCredential(t *testing.T) {
	if !hsmtest.PQCEnabled() {
		t.Skip("set HSM_PQC_ENABLED=1 with HSM_CONFIG naming a token that offers ML-DSA (PKCS#11 3.2 or a vendor table)")
	}
	tgt := hsmtest.Use(t, "cred-hsm")
	c := newCA(t)
	label := uniqueLabel("pqc-signer")
	destroyAfter(t, tgt.Config, label)
	dir := filepath.Join(t.TempDir(), "credentials")
	cred, err := credential.Enroll(context.Background(), c, credential.EnrollOptions{
		Dir: dir, CADir: c.Dir, Profiles: []string{"ml/signing"}, Vars: map[string]any{"cn": "PQC signer"},
		Key: credential.KeySpec{HSMConfig: tgt.Config, Label: label},
	})
	if err != nil {
		t.Fatal(err)
	}
	if a := cred.Certificates[0].Algorithm; !strings.HasPrefix(a, "ml-dsa-") {
		t.Errorf("algorithm %s", a)
	}
	signAndVerify(t, dir, cred.ID, credential.OpenOptions{})
}
