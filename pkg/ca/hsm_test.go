package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/hsm/hsmtest"
)

// uniqueLabel makes key labels that no earlier run left on a token.
func uniqueLabel(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// hsmKeys lists the keys with the given label on the token cfg names.
func hsmKeys(t testing.TB, cfg, label string) []hsm.KeyInfo {
	t.Helper()
	tok, err := hsm.OpenFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	all, err := tok.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	var out []hsm.KeyInfo
	for _, k := range all {
		if k.Label == label {
			out = append(out, k)
		}
	}
	return out
}

// destroyKeysAfter removes the test's keys from the token when the test
// ends, so that an operator's HSM (make test-hsm) keeps nothing.
func destroyKeysAfter(t testing.TB, cfg string, labels ...string) {
	t.Cleanup(func() {
		tok, err := hsm.OpenFile(cfg)
		if err != nil {
			return
		}
		defer tok.Close()
		for _, l := range labels {
			for _, k := range hsmKeys(t, cfg, l) {
				id, _ := hsm.ParseKeyID(k.KeyID)
				if key, err := tok.FindKey(l, id); err == nil {
					tok.DestroyKey(key)
				}
			}
		}
	})
}

func metaStorage(t testing.TB, dir, version string) Storage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Versions map[string]struct {
			Keys []struct {
				Storage map[string]any `json:"storage"`
			} `json:"keys"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	keys := m.Versions[version].Keys
	if len(keys) != 1 {
		t.Fatalf("version %s has %d keys", version, len(keys))
	}
	// Exactly the fields of a PKCS#11 key reference, and no path.
	var s Storage
	for k, v := range keys[0].Storage {
		str, _ := v.(string)
		switch k {
		case "type":
			s.Type = str
		case "config":
			s.Config = str
		case "label":
			s.Label = str
		case "key_id":
			s.KeyID = str
		default:
			t.Errorf("%s: unexpected storage field %q", MetaFile, k)
		}
	}
	return s
}

// noKeyFiles checks that a CA directory holds no private key file.
func noKeyFiles(t testing.TB, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			if strings.HasSuffix(path, ".key") || strings.Contains(string(data), "PRIVATE KEY") {
				t.Errorf("private key material in the CA dir: %s", path)
			}
		}
		return nil
	})
}

func hsmInit(t testing.TB, dir, profile, cn string, spec KeySpec, parent *CA) *CA {
	t.Helper()
	c, err := Init(InitOptions{Dir: dir, Profile: profile, Vars: map[string]any{"cn": cn}, Key: spec, Parent: parent})
	if err != nil {
		t.Fatalf("init %s in the HSM: %v", profile, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// An HSM root signs an HSM issuing CA, which issues a leaf and a CRL;
// openssl verifies the chain and the CRL signature.
func TestHSMChainAndCRL(t *testing.T) {
	tgt := hsmtest.Use(t, "ca-hsm")
	rootLabel, subLabel := uniqueLabel("root"), uniqueLabel("sub")
	destroyKeysAfter(t, tgt.Config, rootLabel, subLabel)
	dir := t.TempDir()

	root := hsmInit(t, filepath.Join(dir, "root"), "ec/root-ca", "HSM Root", KeySpec{HSMConfig: tgt.Config, Label: rootLabel, ID: []byte{0x00, 0x01}}, nil)
	sub := hsmInit(t, filepath.Join(dir, "sub"), "ec/issuing-ca", "HSM Issuing", KeySpec{HSMConfig: tgt.Config, Label: subLabel}, root)

	// ca.meta.json names the key in the token and the config copied into
	// the CA dir; no key file exists.
	st := metaStorage(t, root.Dir, "v1")
	if st != (Storage{Type: "pkcs11", Config: "./" + HSMConfigFile, Label: rootLabel, KeyID: "0001"}) {
		t.Errorf("root storage = %+v", st)
	}
	orig, _ := os.ReadFile(tgt.Config)
	copied, err := os.ReadFile(filepath.Join(root.Dir, HSMConfigFile))
	if err != nil || string(copied) != string(orig) {
		t.Errorf("the HSM config was not copied into the CA dir: %v", err)
	}
	subSt := metaStorage(t, sub.Dir, "v1")
	if subSt.Type != "pkcs11" || subSt.Label != subLabel || subSt.KeyID == "" {
		t.Errorf("sub storage = %+v", subSt)
	}
	for _, d := range []string{root.Dir, sub.Dir} {
		noKeyFiles(t, d)
	}
	if ks := hsmKeys(t, tgt.Config, subLabel); len(ks) != 1 || ks[0].KeyID != subSt.KeyID || ks[0].Algorithm != "ecdsa-p384" {
		t.Errorf("token keys labelled %s: %+v", subLabel, ks)
	}

	// A fresh Open loads the signer from the metadata alone.
	sub2, err := Open(sub.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	leaf, err := sub2.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "www.example.com", "www.example.com")}, KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := root.Certificate("")
	subCert, _ := sub2.Certificate("")
	rootPEM := writeCertsFile(t, filepath.Join(dir, "root.pem"), rootCert)
	subPEM := writeCertsFile(t, filepath.Join(dir, "sub.pem"), subCert)
	leafPEM := writePEM(t, filepath.Join(dir, "leaf.pem"), leaf.DER, "CERTIFICATE")
	if out := openssl(t, "verify", "-CAfile", rootPEM, "-untrusted", subPEM, leafPEM); !strings.Contains(out, "leaf.pem: OK") {
		t.Errorf("openssl verify: %s", out)
	}

	if _, err := sub2.Revoke(leaf.Serial, 1, nowUTC()); err != nil {
		t.Fatal(err)
	}
	crlDER, err := sub2.GenerateCRL(CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crlPEM := writePEM(t, filepath.Join(dir, "sub.crl"), crlDER, "X509 CRL")
	if out := openssl(t, "crl", "-in", crlPEM, "-CAfile", subPEM, "-noout", "-verify"); !strings.Contains(out, "verify OK") {
		t.Errorf("openssl crl -verify: %s", out)
	}
	if out := opensslFails(t, "verify", "-crl_check", "-CRLfile", crlPEM, "-CAfile", rootPEM, "-untrusted", subPEM, leafPEM); !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check: %s", out)
	}
}

// Rotating an HSM CA makes the new key in the same token under a new
// key id; a token that cannot be reached fails the rotation, never falling
// back to a key file.
func TestHSMRotationKeepsKeysInHSM(t *testing.T) {
	tgt := hsmtest.Use(t, "ca-hsm")
	label := uniqueLabel("rot")
	destroyKeysAfter(t, tgt.Config, label)
	dir := t.TempDir()
	c := hsmInit(t, filepath.Join(dir, "ca"), "ec/root-ca", "Rotating HSM Root", KeySpec{HSMConfig: tgt.Config, Label: label}, nil)
	v1 := metaStorage(t, c.Dir, "v1")

	name, err := c.Rotate(RotateOptions{CrossSign: true})
	if err != nil {
		t.Fatal(err)
	}
	v2 := metaStorage(t, c.Dir, name)
	if v2.Type != "pkcs11" || v2.Label != label || v2.Config != v1.Config || v2.KeyID == "" || v2.KeyID == v1.KeyID {
		t.Errorf("rotated storage = %+v, first = %+v", v2, v1)
	}
	ids := map[string]bool{}
	for _, k := range hsmKeys(t, tgt.Config, label) {
		ids[k.KeyID] = true
	}
	if len(ids) != 2 || !ids[v1.KeyID] || !ids[v2.KeyID] {
		t.Errorf("token keys labelled %s: %v, want %s and %s", label, ids, v1.KeyID, v2.KeyID)
	}
	noKeyFiles(t, c.Dir)

	// The new version signs, and the link certificates verify.
	c.Close() // the rotation held the store
	re, err := Open(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	v2Cert, _ := re.Certificate(name)
	v1Cert, _ := re.Certificate("v1")
	for _, l := range re.Meta.Versions[name].Links {
		certs, err := readCerts(filepath.Join(c.Dir, l))
		if err != nil {
			t.Fatal(err)
		}
		if err := certs[0].CheckSignatureFrom(v1Cert); err != nil && !strings.Contains(l, name+"-signs-") {
			t.Errorf("%s: %v", l, err)
		}
		if err := certs[0].CheckSignatureFrom(v2Cert); err != nil && strings.Contains(l, name+"-signs-") {
			t.Errorf("%s: %v", l, err)
		}
	}
	if _, err := re.Issue(context.Background(), IssueRequest{Profile: "ec/tls-server", CSR: newCSR(t, algo.ECDSAP256, "rot.example.com")}, KeyOptions{}); err != nil {
		t.Fatal(err)
	}

	// A rotation that cannot reach the token fails and changes nothing.
	bad := hsmtest.WriteFile(t, "bad.yaml", "type: pkcs11\npkcs11:\n  lib: /nonexistent/libpkcs11.so\n  token: x\n  pin_env: X\n")
	before := snapshot(t, c.Dir)
	if _, err := re.Rotate(RotateOptions{Keys: KeyOptions{HSMConfig: bad}}); err == nil || !strings.Contains(err.Error(), "/nonexistent/libpkcs11.so") {
		t.Fatalf("rotation with an unreachable HSM: %v", err)
	}
	if after := snapshot(t, c.Dir); after != before {
		t.Errorf("a failed rotation changed the CA dir:\n%s\nvs\n%s", before, after)
	}
	if len(hsmKeys(t, tgt.Config, label)) != 2 {
		t.Error("a failed rotation changed the token")
	}
}

// --use-existing-key finds a key by label and/or id; none or several
// matches are errors that say so, and a failed init leaves nothing.
func TestHSMUseExistingKey(t *testing.T) {
	tgt := hsmtest.Use(t, "ca-hsm")
	label, twin := uniqueLabel("existing"), uniqueLabel("twin")
	destroyKeysAfter(t, tgt.Config, label, twin)
	tok, err := hsm.OpenFile(tgt.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.GenerateKey(algo.ECDSAP384, label, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range [][]byte{{0xa1}, {0xa2}} {
		if _, err := tok.GenerateKey(algo.ECDSAP384, twin, id); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()

	c := hsmInit(t, filepath.Join(dir, "ca"), "ec/root-ca", "Existing Key Root", KeySpec{HSMConfig: tgt.Config, Label: label, UseExisting: true}, nil)
	if st := metaStorage(t, c.Dir, "v1"); st.KeyID != key.IDHex() {
		t.Errorf("storage %+v, want key id %s", st, key.IDHex())
	}
	cert, _ := c.Certificate("")
	if !samePublicKey(key.Public(), cert) {
		t.Error("the CA certificate does not certify the existing key")
	}

	// By label and id among two keys labelled alike.
	c2 := hsmInit(t, filepath.Join(dir, "ca2"), "ec/root-ca", "Twin Root", KeySpec{HSMConfig: tgt.Config, Label: twin, ID: []byte{0xa2}, UseExisting: true}, nil)
	if st := metaStorage(t, c2.Dir, "v1"); st.KeyID != "a2" {
		t.Errorf("storage %+v, want key id a2", st)
	}

	for _, tc := range []struct {
		name string
		spec KeySpec
		want []string
	}{
		{"ambiguous", KeySpec{Label: twin}, []string{"2 private keys", "a1", "a2"}},
		{"unknown", KeySpec{Label: uniqueLabel("missing")}, []string{"no private key", "label"}},
		{"wrong type", KeySpec{Label: twin, ID: []byte{0xa1}, UseExisting: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.HSMConfig, spec.UseExisting = tgt.Config, true
			target := filepath.Join(dir, "fail-"+strings.ReplaceAll(tc.name, " ", "-"))
			profile := "ec/root-ca"
			if tc.want == nil {
				profile = "rsa/root-ca" // an RSA CA cannot use an EC key
				tc.want = []string{"rsa"}
			}
			_, err := Init(InitOptions{Dir: target, Profile: profile, Vars: map[string]any{"cn": "x"}, Key: spec})
			if err == nil {
				t.Fatal("init succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), tgt.PIN) {
				t.Error("the error shows the PIN")
			}
			if _, serr := os.Stat(target); serr == nil {
				t.Error("a failed init left the CA dir behind")
			}
		})
	}
	if n := len(hsmKeys(t, tgt.Config, twin)); n != 2 {
		t.Errorf("%d keys labelled %s, want the 2 made by the test", n, twin)
	}
}

// A key generated for an init that then fails is destroyed again.
func TestHSMFailedInitLeavesNoKey(t *testing.T) {
	tgt := hsmtest.Use(t, "ca-hsm")
	label := uniqueLabel("orphan")
	destroyKeysAfter(t, tgt.Config, label)
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := Init(InitOptions{Dir: dir, Profile: "ec/root-ca", Vars: map[string]any{"cn": "x", "no_such_var": "1"},
		Key: KeySpec{HSMConfig: tgt.Config, Label: label}})
	if err == nil {
		t.Fatal("init with an unknown variable succeeded")
	}
	if ks := hsmKeys(t, tgt.Config, label); len(ks) != 0 {
		t.Errorf("the failed init left keys in the token: %+v", ks)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("the failed init left the CA dir")
	}
}

// --hsm-config on later commands overrides the config in the CA dir (a
// worker on another machine); without it, a broken copy is a clear error.
func TestHSMConfigOverride(t *testing.T) {
	tgt := hsmtest.Use(t, "ca-hsm")
	label := uniqueLabel("override")
	destroyKeysAfter(t, tgt.Config, label)
	c := hsmInit(t, filepath.Join(t.TempDir(), "ca"), "ec/root-ca", "Override Root", KeySpec{HSMConfig: tgt.Config, Label: label}, nil)
	broken := strings.Replace(readFile(t, filepath.Join(c.Dir, HSMConfigFile)), "lib: ", "lib: /moved", 1)
	if err := os.WriteFile(filepath.Join(c.Dir, HSMConfigFile), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Issuer("", KeyOptions{}); err == nil || !strings.Contains(err.Error(), "/moved") {
		t.Fatalf("issuer with a broken config: %v", err)
	}
	iss, closer, err := c.Issuer("", KeyOptions{HSMConfig: tgt.Config})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if iss.Signer.Algorithm() != algo.ECDSAP384 {
		t.Errorf("algorithm %s", iss.Signer.Algorithm())
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// token_serial and slot select one of two tokens with the same label; the
// key goes to that token only.
func TestHSMTokenSelection(t *testing.T) {
	hsmtest.SoftHSMOnly(t)
	env := hsmtest.Get(t)
	var twins []hsmtest.Token
	for _, tok := range env.Tokens {
		if tok.Label == "ca-twin" {
			twins = append(twins, tok)
		}
	}
	if len(twins) != 2 {
		t.Fatalf("want two ca-twin tokens, have %+v", twins)
	}
	bySerial := func(tok hsmtest.Token) string {
		return hsmtest.WriteFile(t, "serial.yaml", strings.Replace(env.ConfigYAML("ca-twin"), "  token: \"ca-twin\"\n", "  token_serial: \""+tok.Serial+"\"\n", 1))
	}
	bySlot := hsmtest.WriteFile(t, "slot.yaml", strings.Replace(env.ConfigYAML("ca-twin"), "  token: \"ca-twin\"\n", "  slot: "+strconv.FormatUint(uint64(twins[0].Slot), 10)+"\n", 1))
	byLabel := env.Config(t, "ca-twin")

	if _, err := Init(InitOptions{Dir: filepath.Join(t.TempDir(), "ca"), Profile: "ec/root-ca", Vars: map[string]any{"cn": "x"},
		Key: KeySpec{HSMConfig: byLabel, Label: "k"}}); err == nil || !strings.Contains(err.Error(), "2 tokens match") {
		t.Fatalf("a label that two tokens share: %v", err)
	}
	for i, cfg := range []string{bySlot, bySerial(twins[1])} {
		label := uniqueLabel("sel")
		c := hsmInit(t, filepath.Join(t.TempDir(), "ca"), "ec/root-ca", "Selected", KeySpec{HSMConfig: cfg, Label: label}, nil)
		if _, _, err := c.Issuer("", KeyOptions{}); err != nil {
			t.Fatal(err)
		}
		for j, tok := range twins {
			n := len(hsmKeys(t, bySerial(tok), label))
			if want := map[bool]int{true: 1, false: 0}[i == j]; n != want {
				t.Errorf("config %d: token %d (serial %s) holds %d keys labelled %s, want %d", i, j, tok.Serial, n, label, want)
			}
		}
	}
}

// The post-quantum cases run against a token that offers ML-DSA
// (HSM_PQC_ENABLED=1, see make test-hsm); SoftHSM2 2.6 offers none.
func TestHSMPostQuantumCA(t *testing.T) {
	if !hsmtest.PQCEnabled() {
		t.Skip("set HSM_PQC_ENABLED=1 with HSM_CONFIG naming a token that offers ML-DSA (PKCS#11 3.2 or a vendor table)")
	}
	tgt := hsmtest.Use(t, "ca-hsm")
	label := uniqueLabel("pqc")
	destroyKeysAfter(t, tgt.Config, label)
	c := hsmInit(t, filepath.Join(t.TempDir(), "ca"), "ml/root-ca", "PQC HSM Root", KeySpec{HSMConfig: tgt.Config, Label: label}, nil)
	cert, _ := c.Certificate("")
	leaf, err := c.Issue(context.Background(), IssueRequest{Profile: "ml/signing", PublicKey: newKeyPub(t, algo.MLDSA65), Vars: map[string]any{"cn": "pqc signer"}}, KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := x509.ParseCertificate(leaf.DER)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyChain(lc, VerifyOptions{Roots: []*x509.Certificate{cert}}); err != nil {
		t.Fatal(err)
	}
}

func newKeyPub(t testing.TB, a algo.Algorithm) any {
	t.Helper()
	priv, err := algo.GenerateKey(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := algo.PublicKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
