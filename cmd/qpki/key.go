package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/keyfile"
)

func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Generate and inspect private keys"}
	cmd.AddCommand(newKeyGenCmd(), newKeyPubCmd(), newKeyListCmd(), newKeyDecapCmd())
	return cmd
}

func newKeyGenCmd() *cobra.Command {
	var alg, out, passEnv string
	var inHSM hsmKeyFlags
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Generate a private key (PKCS#8 PEM, mode 0600, or in an HSM)",
		Example: `  qpki key gen --algorithm ecdsa-p256 --out server.key
  KEY_PASS=secret qpki key gen --algorithm rsa-3072 --out rsa.key --passphrase-env KEY_PASS
  HSM_PIN=... qpki key gen --algorithm ecdsa-p384 --hsm-config hsm.yaml --key-label root-ca-key --key-id 0001`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := algo.Parse(alg)
			if err != nil {
				return err
			}
			if inHSM.config != "" || inHSM.label != "" || inHSM.keyID != "" {
				if out != "" || passEnv != "" {
					return fmt.Errorf("--out and --passphrase-env apply to key files, not HSM keys")
				}
				return inHSM.generate(a)
			}
			var pw []byte
			if passEnv != "" {
				if pw, err = passphrase(passEnv, true)(); err != nil {
					return err
				}
			}
			priv, err := algo.GenerateKey(a, rand.Reader)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				data, err := keyfile.Encode(priv, pw)
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(data)
				return err
			}
			if err := keyfile.Write(out, priv, pw); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "wrote %s key to %s\n", a, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&alg, "algorithm", "ecdsa-p256", "key algorithm")
	addOutFlag(cmd, &out)
	cmd.Flags().StringVar(&passEnv, "passphrase-env", "", "encrypt the key with the passphrase in this environment variable (prompted when unset on a terminal)")
	inHSM.add(cmd)
	return cmd
}

func newKeyPubCmd() *cobra.Command {
	var in, out, passEnv string
	cmd := &cobra.Command{
		Use:     "pub",
		Short:   "Print the public key of a private key file",
		Example: `  qpki key pub --key server.key --out server.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, err := keyfile.Read(in, passphrase(passEnv, false))
			if err != nil {
				return err
			}
			pub, err := algo.PublicKey(priv)
			if err != nil {
				return err
			}
			der, err := algo.MarshalPKIX(pub)
			if err != nil {
				return err
			}
			return writeOut(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
		},
	}
	cmd.Flags().StringVar(&in, "key", "", "private key file")
	cmd.MarkFlagRequired("key")
	addOutFlag(cmd, &out)
	cmd.Flags().StringVar(&passEnv, "passphrase-env", "", "environment variable holding the key passphrase")
	return cmd
}

func newKeyDecapCmd() *cobra.Command {
	var key, in, passEnv string
	var inHSM kemKeyFlags
	cmd := &cobra.Command{
		Use:   "decap",
		Short: "Decapsulate a ciphertext with an ML-KEM or composite ML-KEM key; print the shared secret in hex",
		Example: `  qpki key decap --key kem.key --in ciphertext.bin
  HSM_PIN=... qpki key decap --hsm-config hsm.yaml --key-label kem --in ciphertext.bin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, closeKey, err := inHSM.open(key, passEnv)
			if err != nil {
				return err
			}
			defer closeKey()
			ct, err := readLimited(in, algo.MaxCiphertext)
			if err != nil {
				return err
			}
			ss, err := algo.Decapsulate(priv, ct)
			if err != nil {
				return err
			}
			fmt.Println(hex.EncodeToString(ss))
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "ML-KEM or composite ML-KEM private key file (PEM or DER)")
	cmd.Flags().StringVar(&in, "in", "", "ciphertext file (raw bytes)")
	cmd.MarkFlagRequired("in")
	inHSM.add(cmd)
	cmd.Flags().StringVar(&passEnv, "passphrase-env", "", "environment variable holding the key passphrase")
	return cmd
}

func newKeyListCmd() *cobra.Command {
	var dir, hsmConfig string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the private key files in a directory, or the keys in an HSM",
		Example: `  qpki key list --dir ./keys
  HSM_PIN=... qpki key list --hsm-config hsm.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hsmConfig != "" {
				return listHSMKeys(hsmConfig, asJSON)
			}
			keys, err := keyfile.List(dir)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(os.Stdout, keys)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "FILE\tALGORITHM\tENCRYPTED")
			for _, k := range keys {
				a := k.Algorithm
				if k.Error != "" {
					a = "error: " + k.Error
				} else if a == "" {
					a = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\n", k.File, a, k.Encrypted)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to scan")
	cmd.Flags().StringVar(&hsmConfig, "hsm-config", "", "list the private keys of the token this HSM config selects")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}
