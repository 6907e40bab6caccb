package cose

import (
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/qpki/qpki/pkg/x509x"
)

// Info writes a human description of a message — type, headers, claims,
// signers — without verifying it.
func Info(w io.Writer, data []byte) error {
	m, err := parse(data, DefaultMaxSize, false)
	if err != nil {
		return err
	}
	p := &printer{w: w}
	desc := map[Type]string{TypeSign1: "COSE_Sign1", TypeSign: "COSE_Sign"}[m.Structure]
	if !m.Tagged {
		desc += ", untagged"
	}
	if m.Type == TypeCWT {
		desc = "CWT (" + desc + " in tag 61)"
	}
	p.line(0, "Type:", "%s, %d bytes", desc, len(data))
	if m.Structure == TypeSign {
		p.header(0, "Protected:", &m.Protected)
		p.header(0, "Unprotected:", &m.Unprotected)
	}
	switch {
	case m.Detached:
		p.line(0, "Payload:", "detached")
	case m.Type == TypeCWT:
		p.line(0, "Payload:", "%d bytes of claims", len(m.Payload))
	default:
		p.line(0, "Payload:", "%d bytes %s", len(m.Payload), preview(m.Payload))
	}
	if m.Type == TypeCWT {
		if m.claimsErr != nil {
			p.line(0, "Claims:", "unreadable: %v", m.claimsErr)
		} else {
			p.claims(m.Claims)
		}
	}
	p.line(0, "Signatures:", "%d (not verified; use cose verify)", len(m.Signatures))
	for i := range m.Signatures {
		s := &m.Signatures[i]
		alg := fmt.Sprintf("%s (%d)", s.Alg(), int64(s.Alg()))
		if s.Alg() == 0 {
			alg = "none in the protected header"
		}
		p.line(1, fmt.Sprintf("[%d]", i+1), "%s, %d-byte signature", alg, len(s.Value))
		if kid := s.KID(); kid != nil {
			p.line(2, "kid:", "%s", bytesString(kid))
		}
		p.header(2, "Protected:", &s.Protected)
		p.header(2, "Unprotected:", &s.Unprotected)
		chain := s.X5Chain()
		for j, c := range chain {
			label := "Certificate:"
			if j > 0 {
				label = fmt.Sprintf("Chain [%d]:", j+1)
			}
			keyAlg := "unknown key"
			if a, err := x509x.KeyAlgorithm(c); err == nil {
				keyAlg = string(a)
			}
			p.line(2, label, "%s", c.Subject)
			p.line(3, "issuer:", "%s", c.Issuer)
			p.line(3, "valid:", "%s to %s", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
			p.line(3, "key:", "%s", keyAlg)
		}
	}
	return p.err
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) line(indent int, label, format string, args ...any) {
	if p.err != nil {
		return
	}
	pad := strings.Repeat("  ", indent)
	text := fmt.Sprintf("%s%-*s %s", pad, 14-2*indent, label, fmt.Sprintf(format, args...))
	_, p.err = fmt.Fprintln(p.w, strings.TrimRight(text, " "))
}

func (p *printer) header(indent int, title string, h *Header) {
	if h.Empty() {
		return
	}
	var parts []string
	if h.Alg != 0 {
		parts = append(parts, fmt.Sprintf("alg=%s", h.Alg))
	}
	if h.Crit != nil {
		parts = append(parts, fmt.Sprintf("crit=%v", h.Crit))
	}
	if h.ContentType != nil {
		parts = append(parts, fmt.Sprintf("content-type=%v", h.ContentType))
	}
	if h.KID != nil {
		parts = append(parts, "kid="+bytesString(h.KID))
	}
	if h.X5Chain != nil {
		parts = append(parts, fmt.Sprintf("x5chain=%d cert(s)", len(h.X5Chain)))
	}
	var other []string
	for l, v := range h.Other {
		other = append(other, fmt.Sprintf("%v=%s", l, valueString(v)))
	}
	sort.Strings(other)
	p.line(indent, title, "%s", strings.Join(append(parts, other...), " "))
}

func (p *printer) claims(c *Claims) {
	p.line(0, "Claims:", "")
	if c.Issuer != "" {
		p.line(1, "iss", "%q", c.Issuer)
	}
	if c.Subject != "" {
		p.line(1, "sub", "%q", c.Subject)
	}
	if len(c.Audience) > 0 {
		p.line(1, "aud", "%q", c.Audience)
	}
	now := time.Now()
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"exp", c.Expiry}, {"nbf", c.NotBefore}, {"iat", c.IssuedAt}} {
		if t.at.IsZero() {
			continue
		}
		rel := "in " + t.at.Sub(now).Round(time.Second).String()
		if t.at.Before(now) {
			rel = now.Sub(t.at).Round(time.Second).String() + " ago"
		}
		p.line(1, t.name, "%s (%s)", t.at.UTC().Format(time.RFC3339), rel)
	}
	if c.CTI != nil {
		p.line(1, "cti", "%s", hex.EncodeToString(c.CTI))
	}
	keys := make([]string, 0, len(c.Extra))
	for k := range c.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.line(1, k, "%s", valueString(c.Extra[k]))
	}
}

func bytesString(b []byte) string {
	s := hex.EncodeToString(b)
	if utf8.Valid(b) && printable(string(b)) {
		s += fmt.Sprintf(" (%q)", b)
	}
	return s
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return s != ""
}

func valueString(v any) string {
	switch v := v.(type) {
	case []byte:
		return "h'" + hex.EncodeToString(v) + "'"
	case string:
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprint(v)
}

func preview(b []byte) string {
	const max = 64
	if len(b) == 0 {
		return ""
	}
	cut := b
	if len(cut) > max {
		cut = cut[:max]
	}
	more := ""
	if len(b) > max {
		more = "..."
	}
	if utf8.Valid(cut) && printable(strings.NewReplacer("\n", " ", "\t", " ", "\r", " ").Replace(string(cut))) {
		return fmt.Sprintf("%q%s", cut, more)
	}
	return "h'" + hex.EncodeToString(cut) + "'" + more
}
