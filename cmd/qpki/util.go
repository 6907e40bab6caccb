package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
)

// defaultCADir is ./ca unless QPKI_CA_DIR says otherwise.
func defaultCADir() string {
	if d := os.Getenv("QPKI_CA_DIR"); d != "" {
		return d
	}
	return "./ca"
}

func addCADirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "ca-dir", defaultCADir(), "CA directory (default ./ca or $QPKI_CA_DIR)")
}

func addOutFlag(cmd *cobra.Command, out *string) {
	cmd.Flags().StringVarP(out, "out", "o", "", "write to FILE instead of standard output")
}

// writeOut writes data to path atomically, or to standard output.
func writeOut(path string, data []byte, perm os.FileMode) error {
	if path == "" || path == "-" {
		_, err := os.Stdout.Write(data)
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return atomicfile.Write(path, data, perm)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// passphrase returns a function that reads a key passphrase from the
// environment variable env, or prompts for it on a terminal. Passphrases
// are never taken from a flag value.
func passphrase(env string, confirm bool) func() ([]byte, error) {
	return func() ([]byte, error) {
		if env != "" {
			if v, ok := os.LookupEnv(env); ok {
				if v == "" {
					return nil, fmt.Errorf("environment variable %s is empty", env)
				}
				return []byte(v), nil
			}
		}
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			if env != "" {
				return nil, fmt.Errorf("passphrase needed: set %s or run on a terminal", env)
			}
			return nil, errors.New("passphrase needed: set --passphrase-env VAR or run on a terminal")
		}
		fmt.Fprint(os.Stderr, "Passphrase: ")
		pw, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		if confirm {
			fmt.Fprint(os.Stderr, "Repeat passphrase: ")
			again, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(os.Stderr)
			if err != nil {
				return nil, err
			}
			if string(again) != string(pw) {
				return nil, errors.New("passphrases do not match")
			}
		}
		if len(pw) == 0 {
			return nil, errors.New("empty passphrase")
		}
		return pw, nil
	}
}

// caKeyFlags are the flags that unlock a CA's keys.
type caKeyFlags struct {
	passEnv   string
	hsmConfig string
}

func (f *caKeyFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.passEnv, "passphrase-env", "QPKI_CA_PASSPHRASE", "environment variable holding the CA key passphrase (prompted on a terminal when unset)")
	cmd.Flags().StringVar(&f.hsmConfig, "hsm-config", "", "HSM config overriding the one recorded in the CA dir")
}

func (f *caKeyFlags) options() ca.KeyOptions {
	return ca.KeyOptions{Passphrase: passphrase(f.passEnv, false), HSMConfig: f.hsmConfig}
}

// varFlags are --var k=v and --var-file.
type varFlags struct {
	vars    []string
	varFile string
}

func (f *varFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.vars, "var", nil, "profile variable k=v (repeatable; lists as a,b)")
	cmd.Flags().StringVar(&f.varFile, "var-file", "", "YAML or JSON file of profile variables")
}

func (f *varFlags) values() (map[string]any, error) {
	var fromFile map[string]any
	if f.varFile != "" {
		var err error
		if fromFile, err = profile.ReadVarFile(f.varFile); err != nil {
			return nil, err
		}
	}
	fromFlags, err := profile.ParseVarFlags(f.vars)
	if err != nil {
		return nil, err
	}
	return profile.MergeVars(fromFile, fromFlags), nil
}

// randomID names a one-off CLI request (its idempotency key).
func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var storeFilterAll = store.Filter{}
