package est

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/qpki/qpki/acme/ratelimit"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
)

// Authentication methods a label accepts for simpleenroll and
// serverkeygen. simplereenroll always takes the certificate being renewed.
const (
	AuthCert  = "cert"  // a TLS client certificate from the label's trust anchors
	AuthBasic = "basic" // HTTP Basic with a user of est-users.json
)

// Defaults for Options.
const (
	DefaultProfile      = "est/device"
	DefaultWait         = 10 * time.Second
	DefaultRetryAfter   = 10 * time.Second
	DefaultAuthCacheTTL = 5 * time.Minute
	DefaultAuthCacheMax = 10000
)

// Options configure the EST front-end.
type Options struct {
	// Profile serves the endpoints without a label (default est/device),
	// unless Default names another.
	Profile string
	// Default is the label of the unlabelled endpoints (the default:
	// entry of --est-config): its name policy, authentication rules and
	// profile. Without one, those endpoints have no name policy and
	// issue nothing.
	Default *Label
	// ClientCAs are the trust anchors for client certificates on
	// simpleenroll and serverkeygen (e.g. a manufacturer's device CA).
	ClientCAs []*x509.Certificate
	// ChannelBinding requires the CSR's challengePassword to carry the TLS
	// channel binding (tls-unique for TLS 1.2, tls-exporter for TLS 1.3).
	ChannelBinding bool
	// Labels add /.well-known/est/<label>/ endpoints.
	Labels map[string]*Label
	// DataDir holds est-users.json (HTTP Basic users).
	DataDir string
	// Users, when set, keeps the HTTP Basic users instead of DataDir's
	// est-users.json (the JetStream bucket several front-ends share).
	Users UserStore
	// AuthCacheTTL is how long a verified Basic credential is remembered,
	// so that a device's requests do not each pay for a password hash;
	// 0 disables the cache. AuthCacheMax bounds its entries.
	AuthCacheTTL time.Duration
	AuthCacheMax int
	// Wait is how long a request waits for its certificate before the
	// answer is 202 with RetryAfter.
	Wait       time.Duration
	RetryAfter time.Duration
	// PendingKeys bounds the server-generated keys waiting for a retry
	// (default 10000); PendingKeyTTL is how long one waits (default 1 h).
	PendingKeys   int
	PendingKeyTTL time.Duration
	// RateIP limits the requests of one client address, RatePrincipal the
	// enrollments (simpleenroll, simplereenroll, serverkeygen) of one
	// authenticated principal; RateExempt lists addresses, networks and
	// principals ("user:NAME") no limit applies to.
	RateIP, RatePrincipal ratelimit.Limit
	RateExempt            []string
	// MaxPasswordChecks bounds the argon2id checks that run at once
	// (default GOMAXPROCS); a request over it is refused at once with
	// 503, not queued.
	MaxPasswordChecks int
}

// Label is what a /.well-known/est/<label>/ path serves.
type Label struct {
	Profile string         `yaml:"profile"`
	Vars    map[string]any `yaml:"vars"`
	// Auth lists the accepted methods, AuthCert and AuthBasic (default both).
	Auth []string `yaml:"auth"`
	// ClientCA is a PEM file of trust anchors replacing --est-client-ca.
	ClientCA string `yaml:"client_ca"`
	// Users restricts HTTP Basic to these users (default: every user).
	Users []string `yaml:"users"`
	// ChannelBinding overrides --est-channel-binding when set.
	ChannelBinding *bool `yaml:"channel_binding"`
	// Names is the label's name policy (see enroll.NamePolicy): the names
	// any caller of the label may have, joined with each HTTP Basic
	// user's own grants. A label without one refuses simpleenroll and
	// serverkeygen; "names: {}" grants only what users were granted.
	Names *enroll.NamePolicy `yaml:"names"`
	// RenewUnrecorded lets simplereenroll renew certificates recorded
	// before qpki kept who obtained each one (no origin in the store).
	RenewUnrecorded bool `yaml:"renew_unrecorded"`

	clientCAs []*x509.Certificate
	where     string // "default" or "labels.NAME"
}

// fileConfig is the --est-config YAML document.
type fileConfig struct {
	Default    *Label            `yaml:"default"`
	Labels     map[string]*Label `yaml:"labels"`
	Wait       string            `yaml:"wait"`
	RetryAfter string            `yaml:"retry_after"`
}

// labelName is what a label may be: one path segment, no dots.
var labelName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// reservedLabels are the operation names, which a label cannot be.
var reservedLabels = []string{"cacerts", "simpleenroll", "simplereenroll", "serverkeygen", "csrattrs", "fullcmc"}

// LoadConfig reads an --est-config file into o: its labels, wait and
// retry_after. Relative client_ca paths are relative to the file.
func LoadConfig(path string, o *Options) error {
	data, err := readFileLimited(path, 1<<20)
	if err != nil {
		return err
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %v", path, err)
	}
	for name, l := range fc.Labels {
		if l == nil {
			return fmt.Errorf("%s: label %q is empty", path, name)
		}
		if l.ClientCA != "" && !filepath.IsAbs(l.ClientCA) {
			l.ClientCA = filepath.Join(filepath.Dir(path), l.ClientCA)
		}
	}
	if l := fc.Default; l != nil && l.ClientCA != "" && !filepath.IsAbs(l.ClientCA) {
		l.ClientCA = filepath.Join(filepath.Dir(path), l.ClientCA)
	}
	if fc.Wait != "" {
		if o.Wait, err = time.ParseDuration(fc.Wait); err != nil || o.Wait < 0 {
			return fmt.Errorf("%s: wait %q: want a duration like 10s", path, fc.Wait)
		}
	}
	if fc.RetryAfter != "" {
		if o.RetryAfter, err = time.ParseDuration(fc.RetryAfter); err != nil || o.RetryAfter < time.Second {
			return fmt.Errorf("%s: retry_after %q: want a duration of at least 1s", path, fc.RetryAfter)
		}
	}
	o.Labels, o.Default = fc.Labels, fc.Default
	return nil
}

// check validates the options and loads the labels' trust anchors.
func (o *Options) check() error {
	if o.Profile == "" {
		o.Profile = DefaultProfile
	}
	if o.Wait == 0 {
		o.Wait = DefaultWait
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.AuthCacheMax == 0 {
		o.AuthCacheMax = DefaultAuthCacheMax
	}
	if o.PendingKeys == 0 {
		o.PendingKeys = 10000
	}
	if o.PendingKeyTTL == 0 {
		o.PendingKeyTTL = time.Hour
	}
	if o.MaxPasswordChecks == 0 {
		o.MaxPasswordChecks = runtime.GOMAXPROCS(0)
	}
	if o.AuthCacheTTL < 0 || o.AuthCacheMax < 0 || o.Wait < 0 || o.RetryAfter < 0 || o.MaxPasswordChecks < 0 {
		return errors.New("est: negative durations or sizes")
	}
	if o.Default == nil {
		o.Default = &Label{}
	}
	if o.Default.Profile == "" {
		o.Default.Profile = o.Profile
	}
	if err := o.Default.check("default"); err != nil {
		return err
	}
	for name, l := range o.Labels {
		if !labelName.MatchString(name) || slices.Contains(reservedLabels, name) {
			return fmt.Errorf("est: label %q: want 1 to 64 characters from [A-Za-z0-9_-], not an operation name", name)
		}
		if l.Profile == "" {
			return fmt.Errorf("est: label %q has no profile", name)
		}
		if err := l.check("labels." + name); err != nil {
			return err
		}
	}
	return nil
}

// check fills a label's defaults and loads its trust anchors; where is
// its place in --est-config, for messages.
func (l *Label) check(where string) error {
	if len(l.Auth) == 0 {
		l.Auth = []string{AuthCert, AuthBasic}
	}
	for _, a := range l.Auth {
		if a != AuthCert && a != AuthBasic {
			return fmt.Errorf("est: %s: unknown auth %q (want %s or %s)", where, a, AuthCert, AuthBasic)
		}
	}
	if err := l.Names.Validate(); err != nil {
		return fmt.Errorf("est: %s.names: %v", where, err)
	}
	if l.ClientCA != "" {
		certs, err := LoadCertificates(l.ClientCA)
		if err != nil {
			return fmt.Errorf("est: %s: %v", where, err)
		}
		l.clientCAs = certs
	}
	l.where = where
	return nil
}

// noNames is the refusal of a label without a name policy, naming the
// setting that grants names.
func (l *Label) noNames() string {
	return fmt.Sprintf("this EST endpoint issues no names: %s.names is not set in --est-config (the names it may issue: dns, ip, email, uri, subject, or client_cert: idevid)", l.where)
}

// LoadCertificates reads a PEM (or DER) file of certificates.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := readFileLimited(path, 4<<20)
	if err != nil {
		return nil, err
	}
	certs, err := ca.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificates", path)
	}
	return certs, nil
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}
