package scep

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/profile"
)

// Defaults for Options.
const (
	DefaultProfile = "scep/device"
	DefaultWait    = 5 * time.Second
	DefaultTTL     = 24 * time.Hour
	// MaxBody bounds a PKIOperation message (POST body, or GET message=
	// once decoded).
	MaxBody = 256 << 10
)

// Options configure the SCEP front-end.
type Options struct {
	// Default is the label of /scep; Labels add /scep/<label>.
	Default *Label
	Labels  map[string]*Label
	// DataDir holds scep-challenges.db (one-time challenges) unless
	// Challenges or OpenChallenges is set.
	DataDir string
	// Challenges keeps the one-time challenges; OpenChallenges, when set,
	// opens them at Mount (the JetStream bucket reached through serve's
	// queue).
	Challenges     ChallengeStore
	OpenChallenges func(svc *enroll.Service) (ChallengeStore, error)
	// Wait is how long a PKIOperation waits for its certificate before
	// the answer is PENDING (--scep-wait).
	Wait time.Duration
	// IssueRAAtStart issues a missing RA certificate at Mount; otherwise
	// the first SCEP request does (and waits for it).
	IssueRAAtStart bool
	Log            *slog.Logger
}

// Label is what /scep or /scep/<label> serves.
type Label struct {
	// CA names the CA (its directory's base name); empty for the one serve
	// hosts.
	CA      string         `yaml:"ca"`
	Profile string         `yaml:"profile"`
	Vars    map[string]any `yaml:"vars"`
	// Challenge is one-time (the default), static or a webhook.
	Challenge ChallengeConfig `yaml:"challenge"`
	// LegacyDES accepts DES and 3DES message encryption and SHA-1
	// signatures, for clients that know nothing else.
	LegacyDES bool `yaml:"legacy_des"`
	// Names is the label's name policy (enroll.NamePolicy), joined with
	// what the challenge grants.
	Names *enroll.NamePolicy `yaml:"names"`

	static []byte
	hook   *webhook
}

// ChallengeConfig is a label's challenge: "one-time", "static" (with
// password_env) or {webhook: URL, ca_file: F}.
type ChallengeConfig struct {
	Kind        ChallengeKind
	PasswordEnv string
	Webhook     string
	CAFile      string
}

// UnmarshalYAML takes the scalar or the mapping form.
func (c *ChallengeConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		c.Kind = ChallengeKind(n.Value)
		return nil
	}
	var m struct {
		Type        ChallengeKind `yaml:"type"`
		PasswordEnv string        `yaml:"password_env"`
		Webhook     string        `yaml:"webhook"`
		CAFile      string        `yaml:"ca_file"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	*c = ChallengeConfig{Kind: m.Type, PasswordEnv: m.PasswordEnv, Webhook: m.Webhook, CAFile: m.CAFile}
	if c.Kind == "" && c.Webhook != "" {
		c.Kind = ChallengeWebhook
	}
	if c.Kind == "" && c.PasswordEnv != "" {
		c.Kind = ChallengeStatic
	}
	return nil
}

// fileConfig is the --scep-config document.
type fileConfig struct {
	Default *Label            `yaml:"default"`
	Labels  map[string]*Label `yaml:"labels"`
}

var labelName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// LoadConfig reads a --scep-config file into o. Relative ca_file paths are
// relative to the file.
func LoadConfig(path string, o *Options) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return err
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %v", path, err)
	}
	rel := func(l *Label) {
		if l != nil && l.Challenge.CAFile != "" && !filepath.IsAbs(l.Challenge.CAFile) {
			l.Challenge.CAFile = filepath.Join(filepath.Dir(path), l.Challenge.CAFile)
		}
	}
	rel(fc.Default)
	for name, l := range fc.Labels {
		if l == nil {
			return fmt.Errorf("%s: label %q is empty", path, name)
		}
		rel(l)
	}
	if fc.Default != nil {
		o.Default = fc.Default
	}
	o.Labels = fc.Labels
	return nil
}

// check fills in defaults and checks every label: its name, profile name,
// challenge and name policy.
func (o *Options) check() error {
	if o.Wait <= 0 {
		o.Wait = DefaultWait
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Default == nil {
		o.Default = &Label{}
	}
	if err := o.Default.check("default"); err != nil {
		return err
	}
	for name, l := range o.Labels {
		if !labelName.MatchString(name) || name == "pkiclient.exe" {
			return fmt.Errorf("scep: label %q: want 1 to 64 of A-Z a-z 0-9 _ -", name)
		}
		if err := l.check("labels." + name); err != nil {
			return err
		}
	}
	return nil
}

func (l *Label) check(where string) error {
	if l.Profile == "" {
		l.Profile = DefaultProfile
	}
	if l.Challenge.Kind == "" {
		l.Challenge.Kind = ChallengeOneTime
	}
	if l.Names != nil {
		if err := l.Names.Validate(); err != nil {
			return fmt.Errorf("scep: %s.names: %v", where, err)
		}
	}
	switch l.Challenge.Kind {
	case ChallengeOneTime:
	case ChallengeStatic:
		if l.Challenge.PasswordEnv == "" {
			return fmt.Errorf("scep: %s.challenge: static needs password_env (the environment variable holding the password)", where)
		}
		pw := os.Getenv(l.Challenge.PasswordEnv)
		if len(pw) < 8 {
			return fmt.Errorf("scep: %s.challenge: the environment variable %s must hold a password of at least 8 characters", where, l.Challenge.PasswordEnv)
		}
		l.static = []byte(pw)
	case ChallengeWebhook:
		h, err := newWebhook(l.Challenge.Webhook, l.Challenge.CAFile)
		if err != nil {
			return fmt.Errorf("scep: %s.challenge: %v", where, err)
		}
		l.hook = h
	default:
		return fmt.Errorf("scep: %s.challenge: %q: want one-time, static or webhook", where, l.Challenge.Kind)
	}
	return nil
}

// loadProfile resolves a label's profile: a built-in or CA profile name,
// or a YAML file.
func loadProfile(name, caDir string) (*profile.Profile, error) {
	if ext := filepath.Ext(name); ext == ".yaml" || ext == ".yml" {
		return profile.LoadFile(name)
	}
	return profile.Load(name, caDir)
}
