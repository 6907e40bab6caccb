package jobspec

import (
	"testing"
	"time"
)

// TestDecodeBothForms checks that a payload reads the same from what
// Encode writes (CBOR) and from the JSON an earlier version queued or
// kept in the store.
func TestDecodeBothForms(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 5, time.UTC)
	crl := CRL{Version: "v2", Validity: 7 * 24 * time.Hour, Number: "2a", ThisUpdate: at,
		Entries: []CRLEntry{{Serial: "01", Time: at, Reason: 1}, {Serial: "02", Time: at}}}
	data, err := Encode(crl)
	if err != nil {
		t.Fatal(err)
	}
	if data[0] == '{' {
		t.Fatal("Encode wrote JSON")
	}
	legacy := []byte(`{"version":"v2","validity":604800000000000,"number":"2a","entries":[{"serial":"01","time":"2026-11-27T12:00:00.000000005Z","reason":1},{"serial":"02","time":"2026-11-27T12:00:00.000000005Z","reason":0}],"this_update":"2026-11-27T12:00:00.000000005Z"}`)
	for name, form := range map[string][]byte{"cbor": data, "json": legacy} {
		var got CRL
		if err := Decode(form, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Version != "v2" || got.Validity != crl.Validity || got.Number != "2a" || !got.ThisUpdate.Equal(at) ||
			len(got.Entries) != 2 || got.Entries[0].Reason != 1 || !got.Entries[1].Time.Equal(at) {
			t.Errorf("%s: decoded %+v", name, got)
		}
	}
	var is Issue
	for _, bad := range [][]byte{nil, {0xa1}, []byte(`{"profile":`), data[:len(data)-2]} {
		if err := Decode(bad, &is); err == nil {
			t.Errorf("Decode(% x) succeeded", bad)
		}
	}
}
