package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/inspect"
)

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Create and manage certificate authorities"}
	cmd.AddCommand(newCAInitCmd(), newCAInfoCmd(), newCACRLConfigCmd(), newCAVersionsCmd(), newCARotateCmd(),
		newCAActivateCmd(), newCAExportCmd(), newCAImportCertCmd())
	return cmd
}

// newKeyFlags are the flags that say where a new CA key goes.
type newKeyFlags struct {
	passEnv     string
	hsmConfig   string
	label       string
	keyID       string
	useExisting bool
}

func (f *newKeyFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.passEnv, "passphrase-env", "", "encrypt the new key file with the passphrase in this environment variable")
	fl.StringVar(&f.hsmConfig, "hsm-config", "", "generate the key in the HSM this config names")
	fl.StringVar(&f.label, "key-label", "", "HSM key label")
	fl.StringVar(&f.keyID, "key-id", "", "HSM key id (hex; chosen when empty)")
	fl.BoolVar(&f.useExisting, "use-existing-key", false, "use a key already in the HSM (found by label and/or id)")
}

func (f *newKeyFlags) spec() (ca.KeySpec, error) {
	s := ca.KeySpec{HSMConfig: f.hsmConfig, Label: f.label, UseExisting: f.useExisting}
	if f.keyID != "" {
		id, err := hex.DecodeString(strings.ReplaceAll(f.keyID, ":", ""))
		if err != nil {
			return s, fmt.Errorf("--key-id %q is not hex", f.keyID)
		}
		s.ID = id
	}
	if f.hsmConfig == "" && (f.label != "" || f.keyID != "" || f.useExisting) {
		return s, fmt.Errorf("--key-label, --key-id and --use-existing-key need --hsm-config")
	}
	if f.hsmConfig != "" && f.label == "" {
		return s, fmt.Errorf("--hsm-config needs --key-label")
	}
	if f.passEnv != "" {
		if f.hsmConfig != "" {
			return s, fmt.Errorf("--passphrase-env applies to key files, not HSM keys")
		}
		pw, err := passphrase(f.passEnv, true)()
		if err != nil {
			return s, err
		}
		s.Passphrase = pw
	}
	return s, nil
}

func newCAInitCmd() *cobra.Command {
	var dir, prof, parentDir string
	var external bool
	var vars varFlags
	var key newKeyFlags
	var parentKeys caKeyFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a root or subordinate CA",
		Example: `  qpki ca init --profile ec/root-ca --var cn="My Root CA" --ca-dir ./ca
  qpki ca init --profile ec/issuing-ca --parent ./ca --var cn="Issuing CA" --ca-dir ./sub
  qpki ca init --profile ec/issuing-ca --external-parent --var cn="Issuing CA" --ca-dir ./sub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := vars.values()
			if err != nil {
				return err
			}
			spec, err := key.spec()
			if err != nil {
				return err
			}
			o := ca.InitOptions{Dir: dir, Profile: prof, Vars: v, ExternalParent: external, Key: spec, ParentKeys: parentKeys.options()}
			if parentDir != "" {
				p, err := ca.Open(parentDir)
				if err != nil {
					return fmt.Errorf("parent: %w", err)
				}
				defer p.Close()
				o.Parent = p
			}
			c, err := ca.Init(o)
			if err != nil {
				return err
			}
			name, ver, _ := c.Version("v1")
			if ver.Status == ca.StatusPending {
				fmt.Printf("Created CA %s in %s (version %s pending).\nSend %s/%s to the parent CA, then run:\n  qpki ca import-cert --ca-dir %s --cert signed.crt --chain parent-chain.pem\n",
					c.Meta.Subject.CommonName, c.Dir, name, c.Dir, ver.CSR, dir)
				return nil
			}
			fmt.Printf("Created CA %q in %s (version %s, %s, valid until %s).\n",
				c.Meta.Subject.CommonName, c.Dir, name, strings.Join(ver.Algos, "+"), ver.NotAfter.Format(time.DateOnly))
			return nil
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().StringVar(&prof, "profile", "", "CA profile, e.g. ec/root-ca")
	cmd.MarkFlagRequired("profile")
	cmd.Flags().StringVar(&parentDir, "parent", "", "parent CA directory (makes a subordinate CA)")
	cmd.Flags().BoolVar(&external, "external-parent", false, "write a CSR for an external parent and leave the version pending")
	vars.add(cmd)
	key.add(cmd)
	cmd.Flags().StringVar(&parentKeys.passEnv, "parent-passphrase-env", "QPKI_CA_PASSPHRASE", "environment variable with the parent CA key's passphrase")
	return cmd
}

// caInfo is the JSON form of `ca info`.
type caInfo struct {
	Dir         string        `json:"dir"`
	Subject     ca.Subject    `json:"subject"`
	Active      string        `json:"active"`
	Parent      *ca.Parent    `json:"parent,omitempty"`
	Version     *ca.Version   `json:"version,omitempty"`
	Certificate *inspect.Cert `json:"certificate,omitempty"`
	CRL         *ca.CRLConfig `json:"crl,omitempty"`
}

func newCAInfoCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "info",
		Short:   "Show a CA's subject, active version, keys and certificate",
		Example: `  qpki ca info --ca-dir ./ca`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			info := caInfo{Dir: c.Dir, Subject: c.Meta.Subject, Active: c.Meta.Active, Parent: c.Meta.Parent, CRL: c.Meta.CRL}
			if c.Meta.Active != "" {
				_, info.Version, _ = c.Version("")
				cert, err := c.Certificate("")
				if err != nil {
					return err
				}
				d := inspect.DescribeCert(cert)
				info.Certificate = &d
			}
			if asJSON {
				return printJSON(os.Stdout, info)
			}
			fmt.Printf("CA directory:  %s\nSubject:       %s\nActive:        %s\n", info.Dir, c.Meta.Subject.CommonName, orDash(info.Active))
			if p := c.Meta.Parent; p != nil {
				if p.External {
					fmt.Println("Parent:        external")
				} else {
					fmt.Printf("Parent:        %s\n", p.CADir)
				}
			}
			if cfg := c.Meta.CRL; cfg != nil {
				fmt.Printf("CRL shards:    %d, at %s (published: %d)\n", cfg.Shards, cfg.ShardURL(0)[:len(cfg.ShardURL(0))-len("0.crl")]+"<shard>.crl", cfg.Published)
			}
			if v := info.Version; v != nil {
				fmt.Printf("Profiles:      %s\nAlgorithms:    %s\n", strings.Join(v.Profiles, ", "), strings.Join(v.Algos, ", "))
				for _, k := range v.Keys {
					fmt.Printf("Key %-10s %s\n", k.ID+":", storageString(k.Storage))
				}
				fmt.Println()
				cert, _ := c.Certificate("")
				return inspect.WriteCert(os.Stdout, cert)
			}
			return nil
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func storageString(s ca.Storage) string {
	if s.Type == "software" {
		return "file " + s.Path
	}
	return fmt.Sprintf("pkcs11 label=%s id=%s (%s)", s.Label, s.KeyID, s.Config)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newCAVersionsCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "versions",
		Short:   "List a CA's versions with their status",
		Example: `  qpki ca versions --ca-dir ./ca`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(os.Stdout, c.Meta.Versions)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tSTATUS\tALGORITHMS\tPROFILE\tCREATED\tNOT AFTER\tSERIAL")
			for _, n := range c.Meta.VersionNames() {
				v := c.Meta.Versions[n]
				na := "-"
				if v.NotAfter != nil {
					na = v.NotAfter.Format(time.DateOnly)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, v.Status, strings.Join(v.Algos, "+"),
					strings.Join(v.Profiles, ","), v.Created.Format(time.DateOnly), na, orDash(v.Serial))
			}
			return tw.Flush()
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func newCARotateCmd() *cobra.Command {
	var dir, prof string
	var pending, cross bool
	var vars varFlags
	var keys caKeyFlags
	var key newKeyFlags
	var parentPassEnv string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Create a new CA version with a new key and certificate",
		Long: `rotate makes a new key and certificate as a new version, active at once
unless --pending; the old version is archived. A subordinate's new version
is signed by its parent. --cross-sign also writes link certificates (old key
over new and new over old) so clients holding either root build a path.`,
		Example: `  qpki ca rotate --ca-dir ./ca --cross-sign
  qpki ca rotate --ca-dir ./ca --profile ec/root-ca --pending`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := vars.values()
			if err != nil {
				return err
			}
			spec, err := key.rotateKeySpec()
			if err != nil {
				return err
			}
			name, err := c.Rotate(ca.RotateOptions{Profile: prof, Vars: v, Pending: pending, CrossSign: cross,
				Keys: keys.options(), ParentKeys: ca.KeyOptions{Passphrase: passphrase(parentPassEnv, false)}, Key: spec})
			if err != nil {
				return err
			}
			ver := c.Meta.Versions[name]
			fmt.Printf("Created version %s (%s, %s).\n", name, strings.Join(ver.Algos, "+"), ver.Status)
			for _, l := range ver.Links {
				fmt.Printf("Link certificate: %s\n", l)
			}
			if ver.CSR != "" {
				fmt.Printf("Send %s to the parent CA, then run `qpki ca import-cert`.\n", ver.CSR)
			}
			return nil
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().StringVar(&prof, "profile", "", "profile of the new version (default: the active version's)")
	cmd.Flags().BoolVar(&pending, "pending", false, "leave the new version pending until qpki ca activate")
	cmd.Flags().BoolVar(&cross, "cross-sign", false, "write link certificates between the old and new keys")
	vars.add(cmd)
	keys.add(cmd)
	cmd.Flags().StringVar(&key.passEnv, "new-passphrase-env", "", "encrypt the new key file with the passphrase in this environment variable")
	cmd.Flags().StringVar(&key.label, "key-label", "", "HSM key label for the new key (default: the current one)")
	cmd.Flags().StringVar(&parentPassEnv, "parent-passphrase-env", "QPKI_CA_PASSPHRASE", "environment variable with the parent CA key's passphrase")
	return cmd
}

func newCAActivateCmd() *cobra.Command {
	var dir, version string
	cmd := &cobra.Command{
		Use:     "activate",
		Short:   "Make a pending version the active one",
		Example: `  qpki ca activate --ca-dir ./ca --version v2`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			if err := c.Activate(version); err != nil {
				return err
			}
			fmt.Printf("Version %s is active.\n", version)
			return nil
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().StringVar(&version, "version", "", "version to activate, e.g. v2")
	cmd.MarkFlagRequired("version")
	return cmd
}

func newCAExportCmd() *cobra.Command {
	var dir, bundle, version, out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export the CA certificate, its chain or its root (PEM)",
		Example: `  qpki ca export --ca-dir ./sub --bundle chain --out chain.pem
  qpki ca export --ca-dir ./ca --bundle root --version v1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			certs, err := c.Bundle(bundle, version)
			if err != nil {
				return err
			}
			return writeOut(out, ca.EncodeCerts(certs...), 0o644)
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().StringVar(&bundle, "bundle", "ca", "ca, chain or root")
	cmd.Flags().StringVar(&version, "version", "", "version (default: the active one)")
	addOutFlag(cmd, &out)
	return cmd
}

func newCAImportCertCmd() *cobra.Command {
	var dir, certFile, chainFile string
	cmd := &cobra.Command{
		Use:     "import-cert",
		Short:   "Install the certificate an external parent signed and activate it",
		Example: `  qpki ca import-cert --ca-dir ./sub --cert signed.crt --chain parent-chain.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			certPEM, err := readLimited(certFile, 1<<20)
			if err != nil {
				return err
			}
			var chainPEM []byte
			if chainFile != "" {
				if chainPEM, err = readLimited(chainFile, 4<<20); err != nil {
					return err
				}
			}
			name, err := c.ImportCert(certPEM, chainPEM)
			if err != nil {
				return err
			}
			fmt.Printf("Imported the certificate for version %s, now active.\n", name)
			return nil
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().StringVar(&certFile, "cert", "", "certificate signed by the external parent")
	cmd.Flags().StringVar(&chainFile, "chain", "", "the parent's chain (parent certificate up to the root)")
	cmd.MarkFlagRequired("cert")
	return cmd
}

func newCACRLConfigCmd() *cobra.Command {
	var dir, baseURL string
	var shards int
	cmd := &cobra.Command{
		Use:   "crl-config",
		Short: "Partition the CA's CRLs: new certificates name one of N shard CRLs under --base-url",
		Long: `From now on every new certificate gets a shard (from its serial) and its
crlDistributionPoints names <base-url>/<ca>/<shard>.crl, <ca> being the CA's
name (its directory's base name). Certificates issued before keep their URL;
changing --shards later affects new certificates only. --shards 0 stops
assigning shards.`,
		Example: `  qpki ca crl-config --ca-dir ./ca --shards 16 --base-url http://pki.example.com/crl`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.SetCRLConfig(shards, baseURL, enroll.QueueName(c)); err != nil {
				return err
			}
			cfg := c.Meta.CRL
			fmt.Printf("%d CRL shards: new certificates name %s ... %s\n", cfg.Shards, cfg.ShardURL(0), cfg.ShardURL(max(cfg.Shards-1, 0)))
			return nil
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().IntVar(&shards, "shards", 0, "number of shards for new certificates (0: none)")
	cmd.Flags().StringVar(&baseURL, "base-url", "", "where clients reach serve's /crl, e.g. http://pki.example.com/crl")
	cmd.MarkFlagRequired("shards")
	return cmd
}
