package cose

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Claims is a CWT claims set (RFC 8392 §3). Zero values are left out of the
// token. It is JSON-serialisable so that a queued job can carry it.
type Claims struct {
	Issuer   string   `json:"iss,omitempty"`
	Subject  string   `json:"sub,omitempty"`
	Audience []string `json:"aud,omitempty"`
	// Expiry, NotBefore and IssuedAt are NumericDates: whole seconds.
	Expiry    time.Time `json:"exp,omitzero"`
	NotBefore time.Time `json:"nbf,omitzero"`
	// IssuedAt and CTI are set by Sign when zero. A job that may be
	// redelivered fixes them up front, so that a re-sign yields the same
	// token identity.
	IssuedAt time.Time `json:"iat,omitzero"`
	CTI      []byte    `json:"cti,omitempty"`
	// Extra holds any other claims. A key that is a decimal integer is
	// written as an integer claim key, any other key as text.
	Extra map[string]any `json:"extra,omitempty"`
}

var registeredNames = map[string]int64{"iss": ClaimIss, "sub": ClaimSub, "aud": ClaimAud, "exp": ClaimExp, "nbf": ClaimNbf, "iat": ClaimIat, "cti": ClaimCti}

// claimKey turns an Extra key into its CBOR form.
func claimKey(k string) (any, error) {
	if k == "" {
		return nil, fmt.Errorf("empty claim name")
	}
	if n, err := strconv.ParseInt(k, 10, 64); err == nil && strconv.FormatInt(n, 10) == k {
		if n >= ClaimIss && n <= ClaimCti {
			return nil, fmt.Errorf("claim %d is a registered claim; set it through its own field", n)
		}
		return n, nil
	}
	if _, ok := registeredNames[k]; ok {
		return nil, fmt.Errorf("claim %q would shadow the registered claim; set it through its own field (--%s)", k, k)
	}
	return k, nil
}

func (c *Claims) encode() ([]byte, error) {
	m := map[any]any{}
	if c.Issuer != "" {
		m[ClaimIss] = c.Issuer
	}
	if c.Subject != "" {
		m[ClaimSub] = c.Subject
	}
	switch len(c.Audience) {
	case 0:
	case 1:
		m[ClaimAud] = c.Audience[0]
	default:
		m[ClaimAud] = c.Audience
	}
	for key, t := range map[int64]time.Time{ClaimExp: c.Expiry, ClaimNbf: c.NotBefore, ClaimIat: c.IssuedAt} {
		if !t.IsZero() {
			m[key] = t.Unix()
		}
	}
	if len(c.CTI) > 0 {
		m[ClaimCti] = c.CTI
	}
	for k, v := range c.Extra {
		key, err := claimKey(k)
		if err != nil {
			return nil, err
		}
		m[key] = cborValue(v)
	}
	return encMode.Marshal(m)
}

// cborValue undoes what a JSON round trip does to integers, so that a claim
// queued as 42 is written as the integer 42 and not as a float.
func cborValue(v any) any {
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v)
		}
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cborValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = cborValue(e)
		}
		return out
	}
	return v
}

func decodeClaims(payload []byte) (*Claims, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: CWT claims: "+format, append([]any{ErrMalformed}, args...)...)
	}
	if majorType(payload) != cborMap {
		return nil, bad("payload is a CBOR %s, not a claims map", typeName(payload))
	}
	if err := decMode.Wellformed(payload); err != nil {
		return nil, bad("%v", err)
	}
	var m map[any]cbor.RawMessage
	if err := decMode.Unmarshal(payload, &m); err != nil {
		return nil, bad("%v", err)
	}
	c := &Claims{}
	for key, raw := range m {
		var err error
		switch key {
		case ClaimIss:
			err = decodeText(raw, &c.Issuer)
		case ClaimSub:
			err = decodeText(raw, &c.Subject)
		case ClaimAud:
			c.Audience, err = decodeAudience(raw)
		case ClaimExp:
			c.Expiry, err = decodeNumericDate(raw)
		case ClaimNbf:
			c.NotBefore, err = decodeNumericDate(raw)
		case ClaimIat:
			c.IssuedAt, err = decodeNumericDate(raw)
		case ClaimCti:
			err = decodeBytes(raw, &c.CTI)
		default:
			var name string
			switch k := key.(type) {
			case int64:
				name = strconv.FormatInt(k, 10)
			case string:
				name = k
			default:
				return nil, bad("claim key %v is not an integer or text", key)
			}
			var v any
			if err := decMode.Unmarshal(raw, &v); err != nil {
				return nil, bad("claim %s: %v", name, err)
			}
			if c.Extra == nil {
				c.Extra = map[string]any{}
			}
			c.Extra[name] = jsonValue(v)
			continue
		}
		if err != nil {
			return nil, bad("claim %s: %v", claimName(key), err)
		}
	}
	return c, nil
}

func claimName(key any) string {
	for name, k := range registeredNames {
		if k == key {
			return name
		}
	}
	return fmt.Sprint(key)
}

func decodeText(raw []byte, out *string) error {
	if majorType(raw) != cborText {
		return fmt.Errorf("want a text string, got a CBOR %s", typeName(raw))
	}
	return decMode.Unmarshal(raw, out)
}

func decodeAudience(raw []byte) ([]string, error) {
	if majorType(raw) == cborText {
		var s string
		err := decodeText(raw, &s)
		return []string{s}, err
	}
	if majorType(raw) != cborArray {
		return nil, fmt.Errorf("want text or an array of text, got a CBOR %s", typeName(raw))
	}
	var items []cbor.RawMessage
	if err := decMode.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	out := make([]string, len(items))
	for i, it := range items {
		if err := decodeText(it, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// decodeNumericDate reads an integer or floating-point NumericDate
// (RFC 8392 §2), optionally wrapped in tag 1.
func decodeNumericDate(raw []byte) (time.Time, error) {
	if majorType(raw) == cborTag {
		var tag cbor.RawTag
		if err := decMode.Unmarshal(raw, &tag); err != nil {
			return time.Time{}, err
		}
		if tag.Number != 1 {
			return time.Time{}, fmt.Errorf("NumericDate has tag %d", tag.Number)
		}
		raw = tag.Content
	}
	switch majorType(raw) {
	case cborUint, cborNint:
		var n int64
		if err := decodeInt(raw, &n); err != nil {
			return time.Time{}, err
		}
		return time.Unix(n, 0).UTC(), nil
	case cborSimple:
		if raw[0] < 0xf9 || raw[0] > 0xfb {
			return time.Time{}, fmt.Errorf("want a NumericDate, got a CBOR simple value")
		}
		var f float64
		if err := decMode.Unmarshal(raw, &f); err != nil {
			return time.Time{}, fmt.Errorf("want a NumericDate: %v", err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<62 {
			return time.Time{}, fmt.Errorf("NumericDate %v out of range", f)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("want a NumericDate, got a CBOR %s", typeName(raw))
}

// jsonValue converts decoded CBOR into values encoding/json can write.
func jsonValue(v any) any {
	switch v := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[fmt.Sprint(k)] = jsonValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonValue(e)
		}
		return out
	case cbor.Tag:
		return jsonValue(v.Content)
	}
	return v
}
