package profile

import (
	"crypto/x509"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary YAML to Parse, and whatever parses to Lint,
// Resolve and Apply: none may panic.
func FuzzParse(f *testing.F) {
	for _, name := range BuiltinNames() {
		data, err := Builtin(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(varsProfile))
	f.Add([]byte(extensionsProfile))
	f.Add([]byte("variables: {a: {type: dns_names, default: [x.com], min: 1}}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	testKeys(f)
	csr := makeCSR(f, keyP256, "www.example.com", []string{"www.example.com"}, []string{"192.0.2.1"}, []string{"a@example.com"}, []string{"https://x.example.com"})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		Lint(p)
		for _, v := range p.Variables {
			_, _ = p.Resolve(map[string]string{v.Name: "www.example.com,192.0.2.1"})
		}
		vals, err := p.Resolve(nil)
		if err != nil {
			return
		}
		for _, in := range []Input{
			{Values: vals, CSR: csr, Now: time.Unix(0, 0)},
			{Values: vals, PublicKey: keyP256.Public()},
			{Values: vals, PublicKeyAlgorithm: p.Algorithm},
		} {
			if tmpl, err := p.Apply(in); err == nil && tmpl == (*x509.Certificate)(nil) {
				t.Fatal("nil template without error")
			}
		}
	})
}

// FuzzResolve feeds arbitrary values to every variable type.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"www.example.com", "*.example.com", "192.0.2.1,::1", "a@example.com", "https://example.com/x", "365d", "42", "red", "abc1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse([]byte(varsProfile))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range p.Variables {
			vals, err := p.Resolve(map[string]string{v.Name: s})
			if err != nil {
				continue
			}
			// What Resolve accepts, it accepts again unchanged.
			again, err := p.ResolveJSON(valuesAsAny(vals))
			if err != nil {
				t.Fatalf("%s=%q resolved to %q, which does not resolve again: %v", v.Name, s, vals[v.Name], err)
			}
			if len(again[v.Name]) != len(vals[v.Name]) {
				t.Fatalf("%s=%q: %q then %q", v.Name, s, vals[v.Name], again[v.Name])
			}
		}
	})
}
