package codec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type record struct {
	Name  string         `json:"name"`
	DER   []byte         `json:"der,omitempty"`
	At    time.Time      `json:"at"`
	Vars  map[string]any `json:"vars,omitempty"`
	Count int            `json:"count"`
}

func TestRoundTripAndJSON(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 123456789, time.UTC)
	in := record{Name: "a", DER: []byte{0x30, 0x03, 0x02, 0x01, 0x7b}, At: at, Count: 3,
		Vars: map[string]any{"cn": "a.example.com", "dns": []any{"a", "b"}, "n": map[string]any{"k": "v"}}}
	data, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if IsJSON(data) || !Wellformed(data) {
		t.Fatalf("CBOR form taken for JSON or not well formed: % x", data[:8])
	}
	js, _ := json.Marshal(in)
	if !IsJSON(js) || !Wellformed(js) {
		t.Fatal("JSON form not recognised")
	}
	for name, form := range map[string][]byte{"cbor": data, "json": js} {
		var out record
		if err := Unmarshal(form, &out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out.Name != "a" || string(out.DER) != string(in.DER) || !out.At.Equal(at) || out.Count != 3 {
			t.Errorf("%s: read back %+v", name, out)
		}
		// Maps inside an any decode as encoding/json's do, so that code
		// reading variables sees the same types whichever form it got.
		if _, ok := out.Vars["n"].(map[string]any); !ok {
			t.Errorf("%s: nested map decoded as %T", name, out.Vars["n"])
		}
		if l, ok := out.Vars["dns"].([]any); !ok || len(l) != 2 || l[0] != "a" {
			t.Errorf("%s: list decoded as %#v", name, out.Vars["dns"])
		}
	}
	// Wire names are the JSON names.
	var names map[string]any
	if err := Unmarshal(data, &names); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "der", "at", "vars", "count"} {
		if _, ok := names[k]; !ok {
			t.Errorf("no %q in the CBOR map", k)
		}
	}
}

func TestBadInput(t *testing.T) {
	data, _ := Marshal(record{Name: "a"})
	for name, bad := range map[string][]byte{
		"empty":          {},
		"truncated":      data[:len(data)-1],
		"trailing bytes": append(append([]byte{}, data...), 0x00),
		"bad json":       []byte(`{"name":`),
		"not a map":      {0x82, 0x01, 0x02},
		"deep nesting":   []byte(strings.Repeat("\x81", 100) + "\x00"),
	} {
		var out record
		if Unmarshal(bad, &out) == nil {
			t.Errorf("%s: decoded", name)
		}
		if Wellformed(bad) {
			t.Errorf("%s: reported well formed", name)
		}
	}
	// A JSON value that is not an object is well formed: queue payloads
	// are opaque to the queue.
	if !Wellformed([]byte(`"omitted: 3 bytes"`)) || Wellformed([]byte{0x82, 0x01}) {
		t.Error("Wellformed of a JSON string or a truncated CBOR array")
	}
}
