package jobspec

import (
	"bytes"
	"testing"
)

func TestIsKeygen(t *testing.T) {
	kg, _ := Encode(Keygen{Profile: "p", Recipient: []byte{1, 2}, Serial: "1"})
	is, _ := Encode(Issue{Profile: "p", CSR: []byte{0x30}, Serial: "1"})
	for _, c := range []struct {
		payload []byte
		want    bool
	}{
		{kg, true},
		{is, false},
		{[]byte(`{"keygen_recipient":""}`), false},
		{[]byte(`{"keygen_recipient":`), false},
		{[]byte(`{"profile":"keygen_recipient"}`), false},
		// The JSON form an earlier version queued or stored.
		{[]byte(`{"profile":"p","keygen_recipient":"AQI=","serial":"1"}`), true},
	} {
		if got := IsKeygen(c.payload); got != c.want {
			t.Errorf("IsKeygen(%s) = %v", c.payload, got)
		}
	}
	// An issue worker that does not know keygen payloads finds no key.
	var probe Issue
	if err := Decode(kg, &probe); err != nil || len(probe.CSR) != 0 || len(probe.PublicKey) != 0 {
		t.Fatalf("a keygen payload reads as an issue request: %+v %v", probe, err)
	}
}

func TestSealOpenKey(t *testing.T) {
	priv, err := NewKeygenRecipient()
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("pkcs8 bytes")
	sealed, err := SealKey(priv.PublicKey().Bytes(), "j1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed key contains the clear key")
	}
	got, err := OpenKey(priv, "j1", sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %v %q", err, got)
	}
	if _, err := OpenKey(priv, "j2", sealed); err == nil {
		t.Fatal("a key sealed for one job opened for another")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := OpenKey(priv, "j1", sealed); err == nil {
		t.Fatal("a tampered sealed key opened")
	}
	if _, err := SealKey([]byte("short"), "j1", secret); err == nil {
		t.Fatal("a malformed recipient key was accepted")
	}
}
