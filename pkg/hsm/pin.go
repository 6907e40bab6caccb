package hsm

import (
	"errors"
	"fmt"
	"os"

	"github.com/miekg/pkcs11"

	"golang.org/x/term"
)

// maxPINLen bounds a PIN read from a prompt or the environment; PKCS#11
// tokens report far smaller limits (SoftHSM2: 255).
const maxPINLen = 1024

// readPIN returns the user PIN from the environment variable the
// configuration names or, when that is unset and a terminal is attached,
// from a prompt. The PIN itself never appears in an error.
func (c *Config) readPIN(tokenLabel string) (string, error) {
	name := c.PKCS11.PINEnv
	if name != "" {
		if v, ok := os.LookupEnv(name); ok {
			if v == "" {
				return "", fmt.Errorf("environment variable %s (pin_env) is set but empty", name)
			}
			if len(v) > maxPINLen {
				return "", fmt.Errorf("environment variable %s (pin_env) is longer than %d bytes", name, maxPINLen)
			}
			return v, nil
		}
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		if name == "" {
			return "", errors.New("no PIN: the configuration has no pin_env and no terminal is attached to prompt for one")
		}
		return "", fmt.Errorf("no PIN: environment variable %s (pin_env) is not set and no terminal is attached to prompt for one", name)
	}
	fmt.Fprintf(os.Stderr, "PIN for token %q: ", tokenLabel)
	pin, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", fmt.Errorf("reading the PIN from the terminal: %v", err)
	}
	if len(pin) == 0 {
		return "", errors.New("no PIN entered")
	}
	if len(pin) > maxPINLen {
		return "", fmt.Errorf("PIN longer than %d bytes", maxPINLen)
	}
	return string(pin), nil
}

// pinFor returns the PIN for token pt and where it came from. A token with
// a protected authentication path (a PIN pad) takes an empty PIN when the
// environment gives none.
func (c *Config) pinFor(pt presentToken) (pin, source string, err error) {
	if pt.info.Flags&pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH != 0 {
		if _, ok := os.LookupEnv(c.PKCS11.PINEnv); c.PKCS11.PINEnv == "" || !ok {
			return "", "the token's PIN pad", nil
		}
	}
	pin, err = c.readPIN(pt.label())
	if err != nil {
		return "", "", err
	}
	return pin, c.pinSource(), nil
}

// pinSource describes where the PIN came from, for messages.
func (c *Config) pinSource() string {
	if c.PKCS11.PINEnv != "" {
		if _, ok := os.LookupEnv(c.PKCS11.PINEnv); ok {
			return "$" + c.PKCS11.PINEnv
		}
	}
	return "the terminal prompt"
}
