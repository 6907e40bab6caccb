package profile

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// checkDNSName accepts a lower-case DNS name in preferred name syntax
// (RFC 1034 §3.5 as relaxed by RFC 1123), with an optional leading "*."
// when wildcard is true. IDNs must be in A-label (xn--) form.
func checkDNSName(s string, wildcard bool) error {
	if s == "" || len(s) > maxDNSLength {
		return fmt.Errorf("not a valid DNS name: length must be 1 to %d", maxDNSLength)
	}
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if i == 0 && l == "*" {
			if !wildcard {
				return fmt.Errorf("wildcard names are not allowed")
			}
			if len(labels) < 3 {
				return fmt.Errorf("a wildcard needs at least two labels after it")
			}
			continue
		}
		if l == "" {
			return fmt.Errorf("not a valid DNS name: empty label")
		}
		if len(l) > 63 {
			return fmt.Errorf("not a valid DNS name: label longer than 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("not a valid DNS name: label starts or ends with '-'")
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("not a valid DNS name: character %q", c)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("not a valid DNS name: the last label is numeric (an IP address belongs in ip_addresses)")
	}
	return nil
}

// underSuffix reports whether name is allowed by suffixes: "example.com"
// allows example.com and names under it, ".example.com" only names under
// it. No suffixes allow every name.
func underSuffix(name string, suffixes []string) bool {
	if len(suffixes) == 0 {
		return true
	}
	for _, s := range suffixes {
		if strings.HasPrefix(s, ".") {
			if strings.HasSuffix(name, s) {
				return true
			}
		} else if name == s || strings.HasSuffix(name, "."+s) {
			return true
		}
	}
	return false
}

// checkSuffix validates an allowedSuffixes entry.
func checkSuffix(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if err := checkDNSName(strings.TrimPrefix(s, "."), false); err != nil {
		return "", fmt.Errorf("suffix %q: %v", s, err)
	}
	return s, nil
}

func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("not a valid IP address")
	}
	return a.Unmap(), nil
}

func inNetworks(a netip.Addr, nets []netip.Prefix) bool {
	if len(nets) == 0 {
		return true
	}
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// checkEmail accepts a plain addr-spec (local@domain) in ASCII, as an
// rfc822Name must be, and returns it with the domain in lower case.
func checkEmail(s string) (canon, domain string, err error) {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || strings.Contains(domain, "@") {
		return "", "", fmt.Errorf("not a valid e-mail address (want local@domain)")
	}
	if len(local) > 64 {
		return "", "", fmt.Errorf("not a valid e-mail address: local part longer than 64 characters")
	}
	for _, c := range []byte(local) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),:;<>[\]`, c) >= 0 {
			return "", "", fmt.Errorf("not a valid e-mail address: character %q", c)
		}
	}
	domain = strings.ToLower(domain)
	if err := checkDNSName(domain, false); err != nil {
		return "", "", fmt.Errorf("not a valid e-mail address: domain %v", err)
	}
	return local + "@" + domain, domain, nil
}

// checkURI accepts an absolute ASCII URI and returns its host ("" for a
// URI without authority, such as a URN).
func checkURI(s string) (string, error) {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("not a valid URI: character %q (percent-encode it)", c)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("not a valid URI")
	}
	if u.Scheme == "" || (u.Host == "" && u.Opaque == "" && u.Path == "") {
		return "", fmt.Errorf("not an absolute URI (want scheme:...)")
	}
	if n := len(u.Scheme); u.Opaque == "" && strings.HasPrefix(s[n+1:], "//") {
		host := u.Hostname()
		if host == "" {
			return "", fmt.Errorf("not a valid URI: empty host")
		}
		if _, err := netip.ParseAddr(host); err != nil {
			if err := checkDNSName(strings.ToLower(host), false); err != nil {
				return "", fmt.Errorf("not a valid URI: host %v", err)
			}
		}
		return host, nil
	}
	return "", nil
}

// checkURL accepts the location of a CRL or issuer certificate or an OCSP
// responder: an http, https or ldap URL with a host.
func checkURL(s string) error {
	host, err := checkURI(s)
	if err != nil {
		return err
	}
	u, _ := url.Parse(s)
	switch u.Scheme {
	case "http", "https", "ldap":
	default:
		return fmt.Errorf("URL %q: scheme must be http, https or ldap", s)
	}
	if host == "" {
		return fmt.Errorf("URL %q has no host", s)
	}
	return nil
}
