package cose

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ClaimFlags holds the claim options of `qpki cose sign` as typed:
// --iss --sub --aud --exp --nbf --claim.
type ClaimFlags struct {
	Issuer   string
	Subject  string
	Audience []string
	// Expiry and NotBefore take a duration from now ("24h", "90m", "30d"),
	// an RFC 3339 time or Unix seconds.
	Expiry    string
	NotBefore string
	// Claims are "key=text" (a text value) or "key:=json" (any JSON value,
	// e.g. n:=42 or roles:=["a","b"]). A decimal key is an integer claim
	// key.
	Claims []string
}

// Build turns the flags into Claims. iat and cti are left for Sign to set.
func (f ClaimFlags) Build(now time.Time) (*Claims, error) {
	c := &Claims{Issuer: f.Issuer, Subject: f.Subject}
	for _, a := range f.Audience {
		if a == "" {
			return nil, fmt.Errorf("%w: empty --aud", ErrInvalidRequest)
		}
		c.Audience = append(c.Audience, a)
	}
	var err error
	if f.Expiry != "" {
		if c.Expiry, err = ParseTime(f.Expiry, now); err != nil {
			return nil, fmt.Errorf("%w: --exp: %v", ErrInvalidRequest, err)
		}
		if !c.Expiry.After(now) {
			return nil, fmt.Errorf("%w: --exp %s is not in the future", ErrInvalidRequest, f.Expiry)
		}
	}
	if f.NotBefore != "" {
		if c.NotBefore, err = ParseTime(f.NotBefore, now); err != nil {
			return nil, fmt.Errorf("%w: --nbf: %v", ErrInvalidRequest, err)
		}
	}
	if !c.Expiry.IsZero() && !c.NotBefore.IsZero() && !c.NotBefore.Before(c.Expiry) {
		return nil, fmt.Errorf("%w: --nbf is not before --exp", ErrInvalidRequest)
	}
	for _, kv := range f.Claims {
		k, v, err := ParseClaim(kv)
		if err != nil {
			return nil, err
		}
		if c.Extra == nil {
			c.Extra = map[string]any{}
		}
		if _, dup := c.Extra[k]; dup {
			return nil, fmt.Errorf("%w: claim %q given twice", ErrInvalidRequest, k)
		}
		c.Extra[k] = v
	}
	return c, nil
}

// ParseTime reads a duration from now ("24h", "30d"), an RFC 3339 time or
// Unix seconds, and truncates it to whole seconds as NumericDate does.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 100*366 {
			return now.Add(time.Duration(n) * 24 * time.Hour).Truncate(time.Second), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d).Truncate(time.Second), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.Truncate(time.Second), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a duration (24h, 30d), an RFC 3339 time or Unix seconds", s)
}

// ParseClaim reads one --claim value: "key=text" or "key:=json".
func ParseClaim(kv string) (string, any, error) {
	i := strings.IndexByte(kv, '=')
	if i <= 0 {
		return "", nil, fmt.Errorf("%w: claim %q is not key=value", ErrInvalidRequest, kv)
	}
	key, val := kv[:i], kv[i+1:]
	var v any = val
	if k, ok := strings.CutSuffix(key, ":"); ok {
		key = k
		if err := json.Unmarshal([]byte(val), &v); err != nil {
			return "", nil, fmt.Errorf("%w: claim %q: value is not JSON: %v", ErrInvalidRequest, key, err)
		}
	}
	if _, err := claimKey(key); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	return key, v, nil
}
