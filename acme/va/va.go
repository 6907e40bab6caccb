// Package va validates ACME challenges: http-01 and dns-01 (RFC 8555 §8.3,
// §8.4) and tls-alpn-01 (RFC 8737), for dns and ip identifiers (RFC
// 8738), and checks CAA records (RFC 8659).
//
// Validation never connects to a special-purpose address (package
// egress) unless the operator allows its network: every connection, the
// first and each redirect's, is checked at the socket, after the lookup.
//
// For tests and closed networks, like pebble's VA, it can send every
// connection to one address (ResolveTo, which is then allowed) and to
// other ports than 80 and 443, and ask one DNS server of its choice.
package va

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/egress"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/pkg/store"
)

// Config sets how validations reach the client.
type Config struct {
	// HTTPPort and TLSPort replace 80 and 443 (0 keeps them).
	HTTPPort, TLSPort int
	// ResolveTo, when valid, is the address every validation connects
	// to, whatever the identifier resolves to; it is allowed.
	ResolveTo netip.Addr
	// Allow are the special-purpose networks validation may connect to
	// and ip identifiers may be in (closed networks, tests).
	Allow []netip.Prefix
	// Resolver is the DNS server (host:port) for dns-01, CAA and address
	// lookups; empty uses the system's (/etc/resolv.conf for CAA).
	Resolver string
	// SkipCAA turns CAA checking off (--acme-caa=false, or tests that
	// send every validation to ResolveTo and have no DNS server).
	SkipCAA bool
	// Timeout bounds one validation, lookups and redirects included.
	Timeout time.Duration
	// CAAIdentities are the issuer domain names CAA records may name.
	CAAIdentities []string
	UserAgent     string
}

// VA is a validation authority.
type VA struct {
	cfg    Config
	dns    resolver
	egress *egress.Policy
	// http01 is shared by validations; it keeps no connection open.
	http *http.Client
}

// Maximum sizes read from a client.
const (
	maxHTTPBody    = 8 << 10
	maxRedirects   = 10
	defaultTimeout = 10 * time.Second
)

// ALPNProto is the tls-alpn-01 protocol name (RFC 8737 §6.2).
const ALPNProto = "acme-tls/1"

// OIDACMEIdentifier is id-pe-acmeIdentifier (RFC 8737 §6.1).
var OIDACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// New returns a validation authority.
func New(cfg Config) *VA {
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 80
	}
	if cfg.TLSPort == 0 {
		cfg.TLSPort = 443
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "qpki-acme-va"
	}
	allow := cfg.Allow
	if cfg.ResolveTo.IsValid() {
		a := cfg.ResolveTo.Unmap()
		allow = append(allow[:len(allow):len(allow)], netip.PrefixFrom(a, a.BitLen()))
	}
	v := &VA{cfg: cfg, dns: resolver{addr: cfg.Resolver}, egress: egress.New(allow...)}
	v.http = &http.Client{
		Transport: &http.Transport{
			DialContext:       v.dial,
			DisableKeepAlives: true,
			// A redirect to https is followed without checking the
			// certificate (RFC 8555 §8.3).
			TLSClientConfig:        &tls.Config{InsecureSkipVerify: true},
			MaxResponseHeaderBytes: 16 << 10,
		},
		CheckRedirect: checkRedirect,
	}
	return v
}

// Validate runs one challenge for an identifier; nil means the client
// proved control. keyAuth is the expected key authorization.
func (v *VA) Validate(ctx context.Context, id store.ACMEIdentifier, challenge, token, keyAuth string) *probs.Problem {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	switch challenge {
	case core.ChallengeHTTP01:
		return v.http01(ctx, id, token, keyAuth)
	case core.ChallengeDNS01:
		if id.Type != core.IdentDNS {
			return probs.Malformed("dns-01 cannot validate an %s identifier", id.Type)
		}
		return v.dns01(ctx, id.Value, keyAuth)
	case core.ChallengeTLSALPN01:
		return v.tlsALPN01(ctx, id, keyAuth)
	}
	return probs.Malformed("unknown challenge type %q", challenge)
}

// addresses returns where to connect for a host.
func (v *VA) addresses(ctx context.Context, host string) ([]netip.Addr, *probs.Problem) {
	if v.cfg.ResolveTo.IsValid() {
		return []netip.Addr{v.cfg.ResolveTo}, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	addrs, err := v.dns.lookupIP(ctx, host)
	if errors.Is(err, errNoRecords) {
		return nil, probs.DNS("no valid A or AAAA records for %s", host)
	}
	if err != nil {
		return nil, probs.DNS("%v", err)
	}
	return addrs, nil
}

// dial connects to host:port, with 80 and 443 mapped to the configured
// ports, trying each address of host in turn.
func (v *VA) dial(ctx context.Context, network, hostport string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	switch port {
	case "80":
		port = strconv.Itoa(v.cfg.HTTPPort)
	case "443":
		port = strconv.Itoa(v.cfg.TLSPort)
	default:
		return nil, fmt.Errorf("port %s is not a validation port", port)
	}
	addrs, prob := v.addresses(ctx, host)
	if prob != nil {
		return nil, prob
	}
	// The policy is checked on the socket (Control) as well as here: the
	// socket's check is the one that counts, this one only saves a
	// connection attempt.
	d := net.Dialer{Control: v.egress.Control}
	var last, refused error
	for _, a := range addrs {
		if err := v.egress.Check(a); err != nil {
			refused = cmp.Or(refused, err)
			continue
		}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		var re *egress.RefusedError
		if errors.As(err, &re) {
			refused = cmp.Or(refused, err)
			continue
		}
		last = err
	}
	if last == nil || refused != nil {
		// A refused address is the reason worth telling, even when
		// another address of the name did not answer either.
		return nil, cmp.Or(refused, last)
	}
	return nil, last
}

// CheckAddress refuses an ip identifier in a special-purpose network
// that is not allowed (newOrder's rejectedIdentifier).
func (v *VA) CheckAddress(a netip.Addr) error { return v.egress.Check(a) }

func (v *VA) http01(ctx context.Context, id store.ACMEIdentifier, token, keyAuth string) *probs.Problem {
	host := id.Value
	if id.Type == core.IdentIP && strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	target := "http://" + host + "/.well-known/acme-challenge/" + token
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return probs.Malformed("cannot build the validation request: %v", err)
	}
	req.Header.Set("User-Agent", v.cfg.UserAgent)
	req.Header.Set("Accept", "*/*")
	resp, err := v.http.Do(req)
	if err != nil {
		return connectionProblem(target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return probs.Connection("reading the response from %s: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return probs.Unauthorized("invalid response from %s: HTTP %d", resp.Request.URL, resp.StatusCode)
	}
	if len(body) > maxHTTPBody {
		return probs.Unauthorized("the response from %s is larger than %d bytes", resp.Request.URL, maxHTTPBody)
	}
	got := strings.TrimRight(string(body), " \t\r\n")
	if subtle.ConstantTimeCompare([]byte(got), []byte(keyAuth)) != 1 {
		// The answer is not echoed: a problem document never carries what
		// a validation target sent (it could come from a host the client
		// cannot reach itself).
		return probs.IncorrectResponse("the answer from %s (%d bytes) is not the key authorization %q", resp.Request.URL, len(got), keyAuth)
	}
	return nil
}

// checkRedirect follows at most ten redirects (301, 302, 307 and 308),
// to http or https on the default ports and to names only, never to an
// IP address (RFC 8555 §8.3 and §10.2; Boulder's rules). Where a name
// leads is checked when its connection is dialled.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("more than %d redirects", maxRedirects)
	}
	if r := req.Response; r != nil {
		switch r.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return fmt.Errorf("redirect with status %d: only 301, 302, 307 and 308 are followed", r.StatusCode)
		}
	}
	u := req.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("redirect to %q: only http and https are followed", clip(u.Scheme))
	}
	if p := u.Port(); p != "" && p != "80" && p != "443" {
		return fmt.Errorf("redirect to port %s: only 80 and 443 are followed", clip(p))
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("redirect without a host")
	}
	if _, err := netip.ParseAddr(host); err == nil || strings.HasPrefix(u.Host, "[") {
		return fmt.Errorf("redirect to the IP address %s: only names are followed", clip(host))
	}
	return nil
}

func connectionProblem(target string, err error) *probs.Problem {
	var p *probs.Problem
	if errors.As(err, &p) {
		return p
	}
	var refused *egress.RefusedError
	if errors.As(err, &refused) {
		return probs.Connection("fetching %s: %v", target, refused)
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return probs.Connection("fetching %s: timeout", target)
	}
	var re tls.RecordHeaderError
	if errors.As(err, &re) {
		return probs.TLS("fetching %s: %v", target, err)
	}
	return probs.Connection("fetching %s: %v", target, err)
}

func (v *VA) dns01(ctx context.Context, name, keyAuth string) *probs.Problem {
	q := "_acme-challenge." + name
	txts, err := v.dns.lookupTXT(ctx, q)
	if errors.Is(err, errNoRecords) {
		return probs.Unauthorized("no TXT record found at %s", q)
	}
	if err != nil {
		return probs.DNS("%v", err)
	}
	want := core.DNS01Value(keyAuth)
	for _, t := range txts {
		if subtle.ConstantTimeCompare([]byte(t), []byte(want)) == 1 {
			return nil
		}
	}
	return probs.Unauthorized("incorrect TXT record %q found at %s", clip(txts[0]), q)
}

func (v *VA) tlsALPN01(ctx context.Context, id store.ACMEIdentifier, keyAuth string) *probs.Problem {
	sni := id.Value
	host := id.Value
	if id.Type == core.IdentIP {
		a, err := netip.ParseAddr(id.Value)
		if err != nil {
			return probs.Malformed("invalid IP address %q", id.Value)
		}
		sni = core.ReverseName(a)
	}
	conn, err := v.dial(ctx, "tcp", net.JoinHostPort(host, "443"))
	if err != nil {
		return connectionProblem(host, err)
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{
		ServerName:         sni,
		NextProtos:         []string{ALPNProto},
		InsecureSkipVerify: true, // the certificate is checked below
		MinVersion:         tls.VersionTLS12,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return probs.TLS("TLS handshake with %s (tls-alpn-01): %v", host, err)
	}
	st := tc.ConnectionState()
	if st.NegotiatedProtocol != ALPNProto {
		return probs.Unauthorized("%s did not negotiate the %s protocol", host, ALPNProto)
	}
	if len(st.PeerCertificates) == 0 {
		return probs.Unauthorized("%s sent no certificate", host)
	}
	return checkALPNCert(st.PeerCertificates[0], id, keyAuth)
}

// checkALPNCert checks the tls-alpn-01 certificate (RFC 8737 §3): one
// subjectAltName for the identifier, and a critical acmeIdentifier
// extension with the SHA-256 of the key authorization.
func checkALPNCert(c *x509.Certificate, id store.ACMEIdentifier, keyAuth string) *probs.Problem {
	names := len(c.DNSNames) + len(c.IPAddresses) + len(c.EmailAddresses) + len(c.URIs)
	ok := names == 1
	if id.Type == core.IdentIP {
		want, _ := netip.ParseAddr(id.Value)
		ok = ok && len(c.IPAddresses) == 1 && ipEqual(c.IPAddresses[0], want)
	} else {
		ok = ok && len(c.DNSNames) == 1 && strings.EqualFold(c.DNSNames[0], id.Value)
	}
	if !ok {
		return probs.Unauthorized("the tls-alpn-01 certificate must name %s, and only it, in subjectAltName", id.Value)
	}
	want := sha256.Sum256([]byte(keyAuth))
	for _, e := range c.Extensions {
		if !e.Id.Equal(OIDACMEIdentifier) {
			continue
		}
		if !e.Critical {
			return probs.Unauthorized("the acmeIdentifier extension of the tls-alpn-01 certificate is not critical")
		}
		var got []byte
		rest, err := asn1.Unmarshal(e.Value, &got)
		if err != nil || len(rest) > 0 || len(got) != sha256.Size {
			return probs.Unauthorized("malformed acmeIdentifier extension in the tls-alpn-01 certificate")
		}
		if subtle.ConstantTimeCompare(got, want[:]) != 1 {
			return probs.IncorrectResponse("the acmeIdentifier extension of the tls-alpn-01 certificate holds the wrong key authorization digest")
		}
		return nil
	}
	return probs.Unauthorized("the tls-alpn-01 certificate has no acmeIdentifier extension")
}

func ipEqual(ip net.IP, want netip.Addr) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && a.Unmap() == want.Unmap()
}

func clip(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}
