package core

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/qpki/qpki/pkg/store"
)

func TestNormalizeIdentifier(t *testing.T) {
	for _, tc := range []struct {
		in       store.ACMEIdentifier
		want     string
		wildcard bool
		problem  string
	}{
		{store.ACMEIdentifier{Type: "dns", Value: "WWW.Example.COM"}, "www.example.com", false, ""},
		{store.ACMEIdentifier{Type: "dns", Value: "*.example.com"}, "example.com", true, ""},
		{store.ACMEIdentifier{Type: "dns", Value: "xn--bcher-kva.example"}, "xn--bcher-kva.example", false, ""},
		{store.ACMEIdentifier{Type: "dns", Value: "*.*.example.com"}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "dns", Value: "a.*.example.com"}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "dns", Value: "under_score.example.com"}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "dns", Value: "example.com."}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "dns", Value: "localhost"}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "dns", Value: "10.0.0.1"}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "dns", Value: "-a.example.com"}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "dns", Value: ""}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "ip", Value: "192.0.2.1"}, "192.0.2.1", false, ""},
		{store.ACMEIdentifier{Type: "ip", Value: "2001:DB8:0:0::1"}, "2001:db8::1", false, ""},
		{store.ACMEIdentifier{Type: "ip", Value: "::ffff:192.0.2.1"}, "192.0.2.1", false, ""},
		{store.ACMEIdentifier{Type: "ip", Value: "fe80::1%eth0"}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "ip", Value: "example.com"}, "", false, "malformed"},
		{store.ACMEIdentifier{Type: "email", Value: "a@example.com"}, "", false, "unsupportedIdentifier"},
	} {
		got, wild, p := NormalizeIdentifier(tc.in)
		switch {
		case tc.problem != "":
			if !p.HasType(tc.problem) {
				t.Errorf("%v: problem %v, want %s", tc.in, p, tc.problem)
			}
		case p != nil:
			t.Errorf("%v: %v", tc.in, p)
		case got.Value != tc.want || wild != tc.wildcard:
			t.Errorf("%v: got %v wildcard %v, want %s %v", tc.in, got, wild, tc.want, tc.wildcard)
		}
	}
}

func TestChallengeTypes(t *testing.T) {
	if got := ChallengeTypes(store.ACMEIdentifier{Type: IdentDNS, Value: "a.example"}, true); len(got) != 1 || got[0] != ChallengeDNS01 {
		t.Errorf("wildcard: %v", got)
	}
	for _, c := range ChallengeTypes(store.ACMEIdentifier{Type: IdentIP, Value: "192.0.2.1"}, false) {
		if c == ChallengeDNS01 {
			t.Error("dns-01 offered for an IP address")
		}
	}
}

func TestReverseName(t *testing.T) {
	if got := ReverseName(netip.MustParseAddr("192.0.2.10")); got != "10.2.0.192.in-addr.arpa" {
		t.Error(got)
	}
	if got := ReverseName(netip.MustParseAddr("2001:db8::567:89ab")); got != "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa" {
		t.Error(got)
	}
}

func TestCertID(t *testing.T) {
	// RFC 9773 §4.1's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
	// serial 00:87:65:43:21.
	aki := []byte{0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4}
	id, err := certID(aki, big.NewInt(0x87654321))
	if err != nil || id != "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE" {
		t.Fatalf("certID = %q, %v", id, err)
	}
	a, s, err := ParseCertID(id)
	if err != nil || string(a) != string(aki) || s.Int64() != 0x87654321 {
		t.Fatalf("ParseCertID: %x %v %v", a, s, err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(255), Subject: pkix.Name{CommonName: "x"}, AuthorityKeyId: aki,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	c, _ := x509.ParseCertificate(der)
	if id, err := CertID(c); err != nil || id != "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AP8" {
		t.Fatalf("CertID = %q, %v", id, err)
	}
	for _, bad := range []string{"", "nodot", "aYhb.", ".AQ", "aYhb.gA", "aYhb.AAE", "!!.AQ"} {
		if _, _, err := ParseCertID(bad); err == nil {
			t.Errorf("ParseCertID(%q) accepted", bad)
		}
	}
}

func FuzzParseCertID(f *testing.F) {
	for _, s := range []string{"aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE", "a.AQ", "", ".", "aYhb.gA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		aki, serial, err := ParseCertID(s)
		if err != nil {
			return
		}
		back, err := certID(aki, serial)
		if err != nil || back != s {
			t.Fatalf("%q parses but prints as %q (%v)", s, back, err)
		}
	})
}

func FuzzNormalizeIdentifier(f *testing.F) {
	for _, s := range []string{"example.com", "*.example.com", "192.0.2.1", "::1", "a..b", "xn--a.b"} {
		f.Add("dns", s)
		f.Add("ip", s)
	}
	f.Fuzz(func(t *testing.T, typ, value string) {
		id, wild, p := NormalizeIdentifier(store.ACMEIdentifier{Type: typ, Value: value})
		if p != nil {
			return
		}
		// Canonical forms are fixed points.
		again, wild2, p2 := NormalizeIdentifier(store.ACMEIdentifier{Type: id.Type, Value: Display(id, wild)})
		if p2 != nil || again != id || wild2 != wild {
			t.Fatalf("%q → %v, then %v %v", value, id, again, p2)
		}
	})
}
