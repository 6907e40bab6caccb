package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/server"
)

func newCRLCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "crl", Short: "Generate certificate revocation lists"}
	cmd.AddCommand(newCRLGenCmd())
	return cmd
}

func newCRLGenCmd() *cobra.Command {
	var dir, out, version string
	var days, shard int
	var keys caKeyFlags
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Sign a CRL; it is always stored in <ca-dir>/crl/ and also written to --out",
		Example: `  qpki crl gen --ca-dir ./ca --days 7
  qpki crl gen --ca-dir ./ca --out ca.crl
  qpki crl gen --ca-dir ./ca --shard 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 || days > 3650 {
				return fmt.Errorf("--days must be between 1 and 3650")
			}
			var shardp *int
			if cmd.Flags().Changed("shard") {
				shardp = &shard
			}
			p, err := server.OpenPipeline(dir, keys.options(), 1)
			if err != nil {
				return err
			}
			defer p.Close()
			st, err := p.Submit(cmd.Context(), server.SubmitRequest{Kind: jobspec.KindCRL, Key: "crl-" + randomID(),
				CRLVersion: version, CRLDays: days, CRLShard: shardp, Wait: 2 * time.Minute})
			if err != nil {
				return err
			}
			switch st.State {
			case store.JobFailed:
				return errors.New(st.Error)
			case store.JobQueued:
				return fmt.Errorf("CRL job %s is still queued; the server will store the CRL in %s/%s/", st.JobID, dir, ca.CRLDir)
			}
			if out != "" {
				fmt.Fprintf(os.Stderr, "CRL stored in %s/%s/ and written to %s\n", dir, ca.CRLDir, out)
			}
			return writeOut(out, ca.EncodeCRL(st.DER), 0o644)
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().IntVar(&days, "days", 7, "days until nextUpdate")
	cmd.Flags().StringVar(&version, "version", "", "CA version whose key signs (default: the active one)")
	cmd.Flags().IntVar(&shard, "shard", 0, "sign this shard's CRL instead of the full one (see `qpki ca crl-config`)")
	keys.add(cmd)
	addOutFlag(cmd, &out)
	return cmd
}
