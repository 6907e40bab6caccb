package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// A CWT signed with a credential's key verifies against the CA.
func TestCOSESignWithCredential(t *testing.T) {
	d := t.TempDir()
	ok(t, d, "ca", "init", "--profile", "ec/root-ca", "--var", "cn=Cred Root", "--ca-dir", "ca")
	ok(t, d, "credential", "enroll", "--ca-dir", "ca", "--profile", "ec/signing", "--var", "cn=token-signer")
	var creds []struct{ ID string }
	if err := json.Unmarshal([]byte(ok(t, d, "credential", "list", "--ca-dir", "ca", "--json")), &creds); err != nil || len(creds) != 1 {
		t.Fatalf("credential list: %v %v", creds, err)
	}
	ok(t, d, "cose", "sign", "--credential", creds[0].ID, "--cred-dir", "ca/credentials", "--iss", "qpki", "--sub", "device-1", "--exp", "1h", "-o", "t.cbor")
	out := ok(t, d, "cose", "verify", "t.cbor", "--ca", "ca/ca.crt")
	if !strings.Contains(out, "CN=token-signer") || !strings.Contains(out, "sub: device-1") {
		t.Fatalf("verify: %s", out)
	}
	ok(t, d, "credential", "revoke", creds[0].ID, "--ca-dir", "ca")
	fails(t, d, "revoked", "cose", "sign", "--credential", creds[0].ID, "--cred-dir", "ca/credentials", "--iss", "qpki", "-o", "u.cbor")
}
