package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/hsm"
)

func newHSMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Inspect and test PKCS#11 modules and tokens",
		Long: `hsm looks at a PKCS#11 module and the token an --hsm-config selects.
The PIN, when one is needed (hsm test), comes from the environment variable
the config's pin_env names, or from a prompt on a terminal.`,
	}
	cmd.AddCommand(newHSMListCmd(), newHSMTestCmd(), newHSMMechanismsCmd(), newHSMInfoCmd())
	return cmd
}

// loadHSMConfig reads the required --hsm-config.
func loadHSMConfig(path string) (*hsm.Config, error) {
	if path == "" {
		return nil, errors.New("give --hsm-config FILE")
	}
	return hsm.LoadConfig(path)
}

func newHSMListCmd() *cobra.Command {
	var cfgPath, lib string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List a module's slots and tokens (labels, serials, flags)",
		Example: `  qpki hsm list --lib /usr/lib/softhsm/libsofthsm2.so
  qpki hsm list --hsm-config hsm.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (lib == "") == (cfgPath == "") {
				return errors.New("give --lib MODULE or --hsm-config FILE")
			}
			if cfgPath != "" {
				cfg, err := hsm.LoadConfig(cfgPath)
				if err != nil {
					return err
				}
				lib = cfg.PKCS11.Lib
			}
			if !asJSON {
				return hsm.ListSlots(os.Stdout, lib)
			}
			r, err := hsm.Slots(lib)
			if err != nil {
				return err
			}
			return printJSON(os.Stdout, r)
		},
	}
	cmd.Flags().StringVar(&lib, "lib", "", "PKCS#11 module (shared library)")
	cmd.Flags().StringVar(&cfgPath, "hsm-config", "", "take the module from this HSM config")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func newHSMTestCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Check that the token can sign: load, find, open, log in, sign and verify, log out",
		Long: `test walks through what signing needs, printing each step: load the
module, find the token, open a session, log in, generate a session-only key
(CKA_TOKEN false, gone when the session closes), sign and verify, log out.
It stops at the first step that fails and says which. Run it on its own,
not beside a server using the same token: the final logout ends the
process's login.`,
		Example: `  HSM_PIN=... qpki hsm test --hsm-config examples/hsm/softhsm2.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadHSMConfig(cfgPath)
			if err != nil {
				return err
			}
			if err := hsm.SelfTest(os.Stdout, cfg); err != nil {
				return err
			}
			fmt.Println("The token is ready to sign.")
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "hsm-config", "", "HSM config (module, token, pin_env)")
	return cmd
}

func newHSMMechanismsCmd() *cobra.Command {
	var cfgPath, filter string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "mechanisms",
		Short: "List the token's mechanisms",
		Example: `  qpki hsm mechanisms --hsm-config hsm.yaml --filter ML
  qpki hsm mechanisms --hsm-config hsm.yaml --filter ECDSA --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadHSMConfig(cfgPath)
			if err != nil {
				return err
			}
			if !asJSON {
				return hsm.Mechanisms(os.Stdout, cfg, filter)
			}
			ms, err := hsm.MechanismList(cfg, filter)
			if err != nil {
				return err
			}
			return printJSON(os.Stdout, ms)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "hsm-config", "", "HSM config (module and token)")
	cmd.Flags().StringVar(&filter, "filter", "", "only mechanisms whose name contains this (case-insensitive)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func newHSMInfoCmd() *cobra.Command {
	var cfgPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "info",
		Short:   "Show the module, the token and which algorithms it can serve",
		Example: `  qpki hsm info --hsm-config hsm.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadHSMConfig(cfgPath)
			if err != nil {
				return err
			}
			if !asJSON {
				return hsm.Info(os.Stdout, cfg)
			}
			r, err := hsm.TokenInfo(cfg)
			if err != nil {
				return err
			}
			return printJSON(os.Stdout, r)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "hsm-config", "", "HSM config (module and token)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

// rotateKeySpec is where `ca rotate` puts the new key: the CA's HSM and
// label unless --key-label names another label (pkg/ca keeps an HSM CA's
// key in its HSM), or a new key file.
func (f *newKeyFlags) rotateKeySpec() (ca.KeySpec, error) {
	s := ca.KeySpec{Label: f.label}
	if f.passEnv != "" {
		pw, err := passphrase(f.passEnv, true)()
		if err != nil {
			return s, err
		}
		s.Passphrase = pw
	}
	return s, nil
}

// hsmKeyFlags name a key to generate in an HSM (qpki key gen).
type hsmKeyFlags struct {
	config, label, keyID string
}

func (f *hsmKeyFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "hsm-config", "", "generate the key in the HSM this config names")
	cmd.Flags().StringVar(&f.label, "key-label", "", "HSM key label")
	cmd.Flags().StringVar(&f.keyID, "key-id", "", "HSM key id (CKA_ID, hex; derived from the public key when empty)")
}

// generate makes a key in the token: sensitive, not extractable, signing
// only. A label and id that the token already has are refused.
func (f *hsmKeyFlags) generate(a algo.Algorithm) error {
	if f.config == "" || f.label == "" {
		return errors.New("an HSM key needs --hsm-config and --key-label")
	}
	id, err := hsm.ParseKeyID(f.keyID)
	if err != nil {
		return fmt.Errorf("--key-id: %v", err)
	}
	tok, err := hsm.OpenFile(f.config)
	if err != nil {
		return err
	}
	defer tok.Close()
	k, err := tok.GenerateKey(a, f.label, id)
	if err != nil {
		return err
	}
	fmt.Printf("Generated %s key in token %q: label %q, key id %s.\n", a, tok.Label(), k.Label, k.IDHex())
	return nil
}

// listHSMKeys prints the private keys of the token a config selects.
func listHSMKeys(cfgPath string, asJSON bool) error {
	tok, err := hsm.OpenFile(cfgPath)
	if err != nil {
		return err
	}
	defer tok.Close()
	keys, err := tok.ListKeys()
	if err != nil {
		return err
	}
	if asJSON {
		if keys == nil {
			keys = []hsm.KeyInfo{}
		}
		return printJSON(os.Stdout, keys)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tKEY ID\tTYPE\tALGORITHM")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Label, k.KeyID, k.KeyType, orDash(k.Algorithm))
	}
	return tw.Flush()
}
