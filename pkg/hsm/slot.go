package hsm

import (
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// presentToken is a token found in a slot.
type presentToken struct {
	slot uint
	info pkcs11.TokenInfo
}

func trimField(s string) string { return strings.TrimRight(s, " \x00") }

func (p presentToken) label() string  { return trimField(p.info.Label) }
func (p presentToken) serial() string { return trimField(p.info.SerialNumber) }
func (p presentToken) initialised() bool {
	return p.info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0
}

func (p presentToken) String() string {
	return fmt.Sprintf("%q (serial %s, slot %d)", p.label(), p.serial(), p.slot)
}

func presentTokens(ctx *pkcs11.Ctx) ([]presentToken, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("C_GetSlotList: %v", err)
	}
	out := make([]presentToken, 0, len(slots))
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue // a token removed meanwhile, or a slot in error
		}
		out = append(out, presentToken{slot: s, info: ti})
	}
	return out, nil
}

// selectToken returns the one token that matches every selector the
// configuration gives. It never falls back to another token.
func selectToken(m *module, cfg *Config) (presentToken, error) {
	p := &cfg.PKCS11
	all, err := presentTokens(m.ctx)
	if err != nil {
		return presentToken{}, fmt.Errorf("PKCS#11 module %s: %v", m.path, err)
	}
	var usable []presentToken
	for _, t := range all {
		if t.initialised() {
			usable = append(usable, t)
		}
	}
	var match []presentToken
	for _, t := range all {
		if p.Slot != nil && t.slot != *p.Slot {
			continue
		}
		if p.Token != "" && t.label() != p.Token {
			continue
		}
		if p.TokenSerial != "" && t.serial() != p.TokenSerial {
			continue
		}
		if p.Slot == nil && !t.initialised() {
			continue
		}
		match = append(match, t)
	}
	switch len(match) {
	case 1:
		if !match[0].initialised() {
			return presentToken{}, fmt.Errorf("the token in slot %d is not initialised", match[0].slot)
		}
		return match[0], nil
	case 0:
		return presentToken{}, fmt.Errorf("no token with %s in PKCS#11 module %s (tokens present: %s)",
			cfg.TokenDescription(), m.path, describeTokens(usable))
	default:
		return presentToken{}, fmt.Errorf("%d tokens match %s: %s; select one with token_serial or slot",
			len(match), cfg.TokenDescription(), describeTokens(match))
	}
}

func describeTokens(ts []presentToken) string {
	if len(ts) == 0 {
		return "none"
	}
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, ", ")
}
