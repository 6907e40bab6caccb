package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/ca"
)

func newCRLCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "crl", Short: "Generate certificate revocation lists"}
	cmd.AddCommand(newCRLGenCmd())
	return cmd
}

func newCRLGenCmd() *cobra.Command {
	var dir, out, version string
	var days int
	var keys caKeyFlags
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Sign a CRL; it is always stored in <ca-dir>/crl/ and also written to --out",
		Example: `  qpki crl gen --ca-dir ./ca --days 7
  qpki crl gen --ca-dir ./ca --out ca.crl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 || days > 3650 {
				return fmt.Errorf("--days must be between 1 and 3650")
			}
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			der, err := c.GenerateCRL(ca.CRLOptions{Version: version, Validity: time.Duration(days) * 24 * time.Hour, Keys: keys.options()})
			if err != nil {
				return err
			}
			if out != "" {
				fmt.Fprintf(os.Stderr, "CRL stored in %s/%s/ and written to %s\n", c.Dir, ca.CRLDir, out)
			}
			return writeOut(out, ca.EncodeCRL(der), 0o644)
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().IntVar(&days, "days", 7, "days until nextUpdate")
	cmd.Flags().StringVar(&version, "version", "", "CA version whose key signs (default: the active one)")
	keys.add(cmd)
	addOutFlag(cmd, &out)
	return cmd
}
