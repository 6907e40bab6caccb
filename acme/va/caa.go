package va

import (
	"context"
	"errors"
	"strings"

	"github.com/miekg/dns"

	"github.com/qpki/qpki/acme/probs"
)

// CAA tags qpki understands (RFC 8659 §4.2-4.4, RFC 9495 issuemail, the
// BIMI issuevmc); a critical property with any other tag forbids issuance.
var knownCAATags = map[string]bool{"issue": true, "issuewild": true, "iodef": true, "issuemail": true, "issuevmc": true}

// CheckCAA looks for the relevant CAA record set of a name (RFC 8659 §3:
// the first non-empty set climbing from the name towards the root) and
// checks that it lets this CA issue, for the account and validation
// method given (RFC 8657 accounturi and validationmethods parameters). It
// does nothing when CAA checking is off (CAAEnabled).
func (v *VA) CheckCAA(ctx context.Context, name string, wildcard bool, accountURI, method string) *probs.Problem {
	if !v.CAAEnabled() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	var set []*dns.CAA
	for n := name; n != ""; {
		rrs, err := v.dns.lookupCAA(ctx, n)
		if err != nil && !errors.Is(err, errNoRecords) {
			return probs.DNS("CAA lookup for %s failed: %v", n, err)
		}
		if len(rrs) > 0 {
			set = rrs
			break
		}
		_, parent, ok := strings.Cut(n, ".")
		if !ok {
			break
		}
		n = parent
	}
	if len(set) == 0 {
		return nil // no CAA record: anyone may issue
	}
	if ok, why := v.caaPermits(set, wildcard, accountURI, method); !ok {
		return probs.CAA("CAA records for %s forbid this CA to issue: %s", name, why)
	}
	return nil
}

// CAAEnabled reports whether CheckCAA checks anything.
func (v *VA) CAAEnabled() bool { return !v.cfg.SkipCAA }

func (v *VA) caaPermits(set []*dns.CAA, wildcard bool, accountURI, method string) (bool, string) {
	var issue, issuewild []*dns.CAA
	for _, rr := range set {
		tag := strings.ToLower(rr.Tag)
		if rr.Flag&128 != 0 && !knownCAATags[tag] {
			return false, "a critical property with unknown tag " + rr.Tag
		}
		switch tag {
		case "issue":
			issue = append(issue, rr)
		case "issuewild":
			issuewild = append(issuewild, rr)
		}
	}
	props := issue
	if wildcard && len(issuewild) > 0 {
		props = issuewild
	}
	if len(props) == 0 {
		return true, ""
	}
	why := "no issue property names " + strings.Join(v.cfg.CAAIdentities, " or ")
	for _, rr := range props {
		issuer, params := parseCAAValue(rr.Value)
		if issuer == "" || !containsFold(v.cfg.CAAIdentities, issuer) {
			continue
		}
		if uri, ok := params["accounturi"]; ok && uri != accountURI {
			why = "the accounturi parameter names another account"
			continue
		}
		if methods, ok := params["validationmethods"]; ok && !containsFold(strings.Split(methods, ","), method) {
			why = "the validationmethods parameter does not allow " + method
			continue
		}
		return true, ""
	}
	return false, why
}

// parseCAAValue splits an issue value into the issuer domain and its
// parameters (RFC 8659 §4.2).
func parseCAAValue(v string) (string, map[string]string) {
	parts := strings.Split(v, ";")
	issuer := strings.TrimSpace(parts[0])
	params := map[string]string{}
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok {
			params[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
		}
	}
	return issuer, params
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(strings.TrimSpace(x), s) {
			return true
		}
	}
	return false
}
