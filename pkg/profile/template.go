package profile

import (
	"fmt"
	"regexp"
	"strings"
)

// A Template is a profile string that may refer to variables as
// {{ name }}. Only plain references exist: no functions, no logic, so a
// profile cannot do anything its reader would not see at a glance.
type Template struct {
	Text  string
	parts []part
}

type part struct {
	lit string
	ref string // variable name; lit is empty when set
}

var varNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func parseTemplate(s string) (Template, error) {
	t := Template{Text: s}
	rest := s
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			return Template{}, fmt.Errorf("%q: unclosed {{", s)
		}
		name := strings.TrimSpace(rest[i+2 : i+2+j])
		if !varNameRE.MatchString(name) {
			return Template{}, fmt.Errorf("%q: {{ %s }} is not a variable name", s, name)
		}
		t.parts = append(t.parts, part{ref: name})
		rest = rest[i+2+j+2:]
	}
	return t, nil
}

func (t Template) String() string { return t.Text }

// Refs returns the variables t refers to, in order.
func (t Template) Refs() []string {
	var refs []string
	for _, p := range t.parts {
		if p.ref != "" {
			refs = append(refs, p.ref)
		}
	}
	return refs
}

// soleRef returns the variable name when t is exactly one reference.
func (t Template) soleRef() string {
	if len(t.parts) == 1 {
		return t.parts[0].ref
	}
	return ""
}

// render fills in scalar references. ok is false when a referenced
// variable has no value: the caller then leaves the field out.
func (t Template) render(v Values) (s string, ok bool) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.ref == "" {
			b.WriteString(p.lit)
			continue
		}
		val := v[p.ref]
		if len(val) == 0 {
			return "", false
		}
		b.WriteString(val[0])
	}
	return b.String(), true
}

// renderList expands a template that is a sole reference to a list
// variable into its items; any other template yields at most one item.
func (t Template) renderList(v Values) []string {
	if ref := t.soleRef(); ref != "" {
		return v[ref]
	}
	if s, ok := t.render(v); ok && s != "" {
		return []string{s}
	}
	return nil
}

func renderAll(ts []Template, v Values) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range ts {
		for _, s := range t.renderList(v) {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}
