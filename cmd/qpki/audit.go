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
	var dir, out, in, caName string
	var asJSON bool
	var natsCfg server.Config
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain and that every issued certificate is in it",
		Long: `verify recomputes every entry's hash and its link to the entry before,
so an edit, a deletion or a reordering is found, and checks that every
certificate in the store has its issuance entry (a cut-off tail).
With --nats-url it checks the audit stream and the shared store of a
clustered CA (serve --store jetstream); with --in, an exported file
(the chain only).`,
		Example: `  qpki audit verify --ca-dir ./ca
  qpki audit verify --nats-url nats://10.0.0.5:4222 --ca issuing
  qpki audit verify --in audit-2026-11.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in != "" || natsCfg.NATSURL != "" {
				return verifyElsewhere(cmd, in, natsCfg, caName, dir, asJSON)
			}
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
	verify.Flags().StringVar(&in, "in", "", "verify this exported JSONL file instead (its chain only)")
	addAuditNATSFlags(verify, &natsCfg, &caName)
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the audit log out as JSONL",
		Long: `export writes the CA's audit log, <ca-dir>/audit.jsonl, or with --nats-url
the audit stream of a clustered CA (serve --store jetstream), as the JSONL
that ` + "`qpki audit verify --in`" + ` checks.`,
		Example: `  qpki audit export --ca-dir ./ca --out audit-2026-11.jsonl
  qpki audit export --nats-url nats://10.0.0.5:4222 --ca issuing --out audit.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if natsCfg.NATSURL != "" {
				name, err := auditCAName(caName, dir)
				if err != nil {
					return err
				}
				data, err := exportAuditStream(cmd.Context(), natsCfg, name)
				if err != nil {
					return err
				}
				return writeOut(out, data, 0o640)
			}
			data, err := os.ReadFile(filepath.Join(dir, audit.FileName))
			if err != nil {
				return err
			}
			return writeOut(out, data, 0o640)
		},
	}
	addCADirFlag(export, &dir)
	addOutFlag(export, &out)
	addAuditNATSFlags(export, &natsCfg, &caName)
	cmd.AddCommand(verify, export)
	return cmd
}

func addAuditNATSFlags(cmd *cobra.Command, cfg *server.Config, caName *string) {
	addNATSFlags(cmd, cfg)
	cmd.Flags().Lookup("nats-url").Usage = "NATS server or cluster holding the audit stream of a clustered CA (serve --store jetstream)"
	cmd.Flags().StringVar(caName, "ca", "", "the CA's name in the stream (default: from --ca-dir, as serve names it)")
}

// verifyElsewhere checks an exported file, or the audit stream of a
// clustered CA against its shared store.
func verifyElsewhere(cmd *cobra.Command, in string, cfg server.Config, caName, dir string, asJSON bool) error {
	var rep *audit.Report
	certs := -1
	if in != "" {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		if rep, err = audit.Verify(f); err != nil {
			return fmt.Errorf("audit log %s: %v", in, err)
		}
	} else {
		name, err := auditCAName(caName, dir)
		if err != nil {
			return err
		}
		if rep, certs, err = verifyAuditStream(cmd.Context(), cfg, name); err != nil {
			return fmt.Errorf("audit stream of %s: %v", name, err)
		}
	}
	if asJSON {
		return printJSON(os.Stdout, rep)
	}
	if certs >= 0 {
		fmt.Printf("audit log OK: %d entries, chain intact, all %d certificates accounted for\n", rep.Entries, certs)
	} else {
		fmt.Printf("audit log OK: %d entries, chain intact\n", rep.Entries)
	}
	for ev, n := range rep.Events {
		fmt.Printf("  %-14s %d\n", ev, n)
	}
	return nil
}
