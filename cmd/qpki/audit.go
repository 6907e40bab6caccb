package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/server"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check and export a CA's hash-chained audit log"}
	var dir, out string
	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain and that every issued certificate is in it",
		Long: `verify recomputes every entry's hash and its link to the entry before,
so an edit, a deletion or a reordering is found, and checks that every
certificate in the store has its issuance entry (a cut-off tail).`,
		Example: `  qpki audit verify --ca-dir ./ca`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			p, err := server.OpenPipeline(dir, ca.KeyOptions{}, 1)
			if err != nil {
				return err
			}
			defer p.Close()
			certs, err := p.Certs(cmd.Context(), "")
			if err != nil {
				return err
			}
			rep, err := c.VerifyAudit(certs)
			if err != nil {
				return fmt.Errorf("audit log of %s: %v", dir, err)
			}
			if asJSON {
				return printJSON(os.Stdout, rep)
			}
			fmt.Printf("audit log OK: %d entries, chain intact, all %d certificates accounted for\n", rep.Entries, len(certs))
			for ev, n := range rep.Events {
				fmt.Printf("  %-14s %d\n", ev, n)
			}
			return nil
		},
	}
	addCADirFlag(verify, &dir)
	verify.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	export := &cobra.Command{
		Use:     "export",
		Short:   "Write the audit log out as JSONL",
		Example: `  qpki audit export --ca-dir ./ca --out audit-2026-11.jsonl`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := os.ReadFile(filepath.Join(dir, audit.FileName))
			if err != nil {
				return err
			}
			return writeOut(out, data, 0o640)
		},
	}
	addCADirFlag(export, &dir)
	addOutFlag(export, &out)
	cmd.AddCommand(verify, export)
	return cmd
}
