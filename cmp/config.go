package cmp

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
)

// Defaults for Options.
const (
	DefaultProfile        = "any/tls-client"
	DefaultWait           = 5 * time.Second
	DefaultConfirmTimeout = 5 * time.Minute
	DefaultSkew           = 5 * time.Minute
	DefaultCheckAfter     = 5 * time.Second
)

// Options configure the CMP front-end.
type Options struct {
	// Default is the label of /.well-known/cmp; Labels add
	// /.well-known/cmp/p/<label>.
	Default *Label
	Labels  map[string]*Label
	// DataDir holds cmp.db (shared secrets and transactions), unless
	// Secrets and Transactions are given (the JetStream buckets).
	DataDir      string
	Secrets      Records
	Transactions Records
	// OpenRecords, when set, gives both at Mount (serve's JetStream
	// buckets, reached through the connected queue).
	OpenRecords func(svc *enroll.Service) (secrets, transactions Records, err error)
	// Wait is how long a request waits for its certificate before the
	// answer is "waiting" and the client polls.
	Wait time.Duration
	// ConfirmTimeout is how long an issued certificate waits for its
	// certConf before it is revoked.
	ConfirmTimeout time.Duration
	// Skew is how far a request's messageTime may be from ours.
	Skew time.Duration
	// CheckAfter is the pollRep's advice.
	CheckAfter time.Duration
	// CAName is the name of the CA this serve hosts, which a label's ca:
	// may name (several CAs: see the several-CAs issue).
	CAName string
}

// Label is what one CMP path serves.
type Label struct {
	// CA names the issuing CA (empty: the CA of this serve).
	CA      string         `yaml:"ca"`
	Profile string         `yaml:"profile"`
	Vars    map[string]any `yaml:"vars"`
	// Names is the label's name policy, joined with each secret's grants.
	Names *enroll.NamePolicy `yaml:"names"`
	// ClientCA is a PEM file of trust anchors for signature-protected
	// requests (a vendor's device CA).
	ClientCA string `yaml:"client_ca"`
	// ImplicitConfirm grants a client's request for implicitConfirm.
	ImplicitConfirm bool `yaml:"implicit_confirm"`
	// CentralKeygen lets clients ask for a key made by the CA's worker.
	CentralKeygen bool `yaml:"central_keygen"`

	clientCAs []*x509.Certificate
	name      string
	where     string
}

// fileConfig is the --cmp-config YAML document.
type fileConfig struct {
	Default        *Label            `yaml:"default"`
	Labels         map[string]*Label `yaml:"labels"`
	ConfirmTimeout string            `yaml:"confirm_timeout"`
	MessageSkew    string            `yaml:"message_time_skew"`
}

var labelName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// LoadConfig reads a --cmp-config file into o. Relative client_ca paths
// are relative to the file.
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
	fix := func(l *Label) {
		if l != nil && l.ClientCA != "" && !filepath.IsAbs(l.ClientCA) {
			l.ClientCA = filepath.Join(filepath.Dir(path), l.ClientCA)
		}
	}
	fix(fc.Default)
	for name, l := range fc.Labels {
		if l == nil {
			return fmt.Errorf("%s: label %q is empty", path, name)
		}
		fix(l)
	}
	for _, d := range []struct {
		s   string
		dst *time.Duration
		key string
	}{{fc.ConfirmTimeout, &o.ConfirmTimeout, "confirm_timeout"}, {fc.MessageSkew, &o.Skew, "message_time_skew"}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil || v <= 0 {
			return fmt.Errorf("%s: %s %q: want a duration like 5m", path, d.key, d.s)
		}
		*d.dst = v
	}
	o.Default, o.Labels = fc.Default, fc.Labels
	return nil
}

// check fills the defaults and loads the labels' trust anchors.
func (o *Options) check() error {
	if o.Wait == 0 {
		o.Wait = DefaultWait
	}
	if o.ConfirmTimeout == 0 {
		o.ConfirmTimeout = DefaultConfirmTimeout
	}
	if o.Skew == 0 {
		o.Skew = DefaultSkew
	}
	if o.CheckAfter == 0 {
		o.CheckAfter = DefaultCheckAfter
	}
	if o.Wait < 0 {
		return errors.New("cmp: negative wait")
	}
	if o.Default == nil {
		o.Default = &Label{}
	}
	if err := o.Default.check("", "default", o.CAName); err != nil {
		return err
	}
	for name, l := range o.Labels {
		if !labelName.MatchString(name) {
			return fmt.Errorf("cmp: label %q: want 1 to 64 characters from [A-Za-z0-9_-]", name)
		}
		if err := l.check(name, "labels."+name, o.CAName); err != nil {
			return err
		}
	}
	return nil
}

func (l *Label) check(name, where, caName string) error {
	if l.Profile == "" {
		l.Profile = DefaultProfile
	}
	// One CA per serve today: a label may name it, or none.
	if l.CA != "" && caName != "" && l.CA != caName {
		return fmt.Errorf("cmp: %s.ca: %q is not a CA this serve hosts (%s)", where, l.CA, caName)
	}
	if err := l.Names.Validate(); err != nil {
		return fmt.Errorf("cmp: %s.names: %v", where, err)
	}
	if l.ClientCA != "" {
		data, err := readFileLimited(l.ClientCA, 4<<20)
		if err != nil {
			return fmt.Errorf("cmp: %s: %v", where, err)
		}
		certs, err := ca.ParseCertificates(data)
		if err != nil || len(certs) == 0 {
			return fmt.Errorf("cmp: %s: %s: no certificates (%v)", where, l.ClientCA, err)
		}
		l.clientCAs = certs
	}
	l.name, l.where = name, where
	return nil
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
