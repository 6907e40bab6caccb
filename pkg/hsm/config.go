package hsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxConfigSize bounds an --hsm-config file; a real one is a few hundred bytes.
const MaxConfigSize = 64 << 10

// Config is a parsed --hsm-config file:
//
//	type: pkcs11
//	pkcs11:
//	  lib: /usr/lib/softhsm/libsofthsm2.so
//	  token: "CA-Token"          # by label
//	  token_serial: "ABC123"     # by serial number
//	  slot: 0                    # by slot id
//	  pin_env: HSM_PIN
//	  logout_after_use: false
//	  mechanisms: pkcs11-3.2
//	  sign_nice: -10
type Config struct {
	Type   string       `yaml:"type"`
	PKCS11 PKCS11Config `yaml:"pkcs11"`

	path string
	raw  []byte
}

// PKCS11Config is the pkcs11 section of a Config.
type PKCS11Config struct {
	// Lib is the PKCS#11 module. A bare file name is searched for by the
	// dynamic loader; prefer an absolute path.
	Lib string `yaml:"lib"`
	// Token, TokenSerial and Slot select the token; every one given must
	// match, and at least one must be given.
	Token       string `yaml:"token"`
	TokenSerial string `yaml:"token_serial"`
	Slot        *uint  `yaml:"slot"`
	// PINEnv names the environment variable that holds the user PIN.
	PINEnv string `yaml:"pin_env"`
	// LogoutAfterUse logs out whenever no operation is in progress.
	LogoutAfterUse bool `yaml:"logout_after_use"`
	// Mechanisms names the post-quantum mechanism table (DefaultMechanisms
	// when empty).
	Mechanisms string `yaml:"mechanisms"`
	// SignNice is added to a thread's nice value while it is inside the
	// module signing (DefaultSignNice when absent, 0 to leave it alone;
	// -20 to 0). A module that signs in software, in this process
	// (SoftHSM2), shares the CPU with the pipeline, and the session is
	// what sets the pace: it should not wait for the CPU. With a network
	// HSM the thread mostly waits, and a higher priority only wakes it
	// sooner. Linux only; it needs CAP_SYS_NICE or RLIMIT_NICE, and
	// without them signing runs at the normal priority (`qpki hsm test`
	// says which).
	SignNice *int `yaml:"sign_nice"`
}

// DefaultSignNice is the sign_nice of a configuration that does not set it.
const DefaultSignNice = -10

func (p *PKCS11Config) signNice() int {
	if p.SignNice == nil {
		return DefaultSignNice
	}
	return *p.SignNice
}

// Path returns the file the configuration was read from ("" when parsed
// from memory). The CA layer copies this file into the CA directory.
func (c *Config) Path() string { return c.path }

// Bytes returns the configuration exactly as read, for copying.
func (c *Config) Bytes() []byte { return bytes.Clone(c.raw) }

// MechanismTable returns the table the configuration selects.
func (c *Config) MechanismTable() (*MechanismTable, error) {
	return LookupMechanismTable(c.PKCS11.Mechanisms)
}

// TokenDescription names the token the way the configuration selects it,
// for messages.
func (c *Config) TokenDescription() string {
	var parts []string
	if c.PKCS11.Token != "" {
		parts = append(parts, fmt.Sprintf("label %q", c.PKCS11.Token))
	}
	if c.PKCS11.TokenSerial != "" {
		parts = append(parts, fmt.Sprintf("serial %q", c.PKCS11.TokenSerial))
	}
	if c.PKCS11.Slot != nil {
		parts = append(parts, fmt.Sprintf("slot %d", *c.PKCS11.Slot))
	}
	return strings.Join(parts, ", ")
}

// LoadConfig reads and checks an --hsm-config file.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hsm config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("hsm config %s: %w", path, err)
	}
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("hsm config %s: larger than %d bytes", path, MaxConfigSize)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("hsm config %s: %w", path, err)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	c.path = path
	return c, nil
}

// pinKeys are keys that would put a secret in the file.
var pinKeys = map[string]bool{"pin": true, "user_pin": true, "so_pin": true, "password": true, "passphrase": true}

// errPINInFile is returned for a PIN written in the configuration.
var errPINInFile = errors.New("a PIN in the configuration file is refused: the PIN comes only from the environment variable that pin_env names, or from an interactive prompt; remove the key and set pin_env")

// ParseConfig parses a configuration held in memory. Unknown keys are
// errors, and so is any key that would hold a PIN.
func ParseConfig(data []byte) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxConfigSize)
	}
	// Look for a PIN first, so that the message says why rather than
	// "unknown field".
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("malformed YAML: %v", err)
	}
	if hasPINKey(&doc, 0) {
		return nil, errPINInFile
	}

	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if err == io.EOF {
			return nil, errors.New("empty configuration")
		}
		return nil, fmt.Errorf("invalid configuration: %v", err)
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, errors.New("more than one YAML document")
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.raw = bytes.Clone(data)
	return &c, nil
}

func hasPINKey(n *yaml.Node, depth int) bool {
	if n == nil || depth > 16 {
		return false
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if pinKeys[strings.ToLower(n.Content[i].Value)] {
				return true
			}
		}
	}
	for _, c := range n.Content {
		if hasPINKey(c, depth+1) {
			return true
		}
	}
	return false
}

func (c *Config) validate() error {
	if c.Type != "pkcs11" {
		if c.Type == "" {
			return errors.New(`missing "type: pkcs11"`)
		}
		return fmt.Errorf("unsupported type %q (only pkcs11)", c.Type)
	}
	p := &c.PKCS11
	if p.Lib == "" {
		return errors.New("pkcs11.lib (the PKCS#11 module path) is required")
	}
	if p.Token == "" && p.TokenSerial == "" && p.Slot == nil {
		return errors.New("the token must be selected by pkcs11.token (label), pkcs11.token_serial or pkcs11.slot")
	}
	if len(p.Token) > 32 {
		return errors.New("pkcs11.token: a token label has at most 32 bytes")
	}
	if len(p.TokenSerial) > 16 {
		return errors.New("pkcs11.token_serial: a token serial number has at most 16 bytes")
	}
	if p.PINEnv != "" && !validEnvName(p.PINEnv) {
		// Do not echo the value: it may be a PIN written in the wrong place.
		return errors.New("pkcs11.pin_env must be the name of an environment variable (letters, digits and underscores, not starting with a digit), not a PIN")
	}
	if _, err := LookupMechanismTable(p.Mechanisms); err != nil {
		return fmt.Errorf("pkcs11.mechanisms: %v", err)
	}
	if n := p.signNice(); n < -20 || n > 0 {
		return fmt.Errorf("pkcs11.sign_nice: %d is not between -20 (the most CPU) and 0 (unchanged)", n)
	}
	return nil
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
