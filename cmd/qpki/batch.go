package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/qpki/qpki/batch"
	"github.com/qpki/qpki/server"
)

func newBatchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "batch", Short: "Issue certificates for a file of requests"}
	var dir, out string
	var workers, concurrency int
	var asJSON bool
	var keys caKeyFlags
	submit := &cobra.Command{
		Use:   "submit FILE",
		Short: "Submit a JSONL file of requests; certificates go to --out DIR as <id>.crt",
		Long: `Each line is {"id":"line-1","profile":"ec/tls-server","csr":"-----BEGIN ...","vars":{...}}
(or "pubkey" in place of "csr"). The id is the idempotency key: submitting the
same file again issues only what is missing, and an id reused with another
request is reported, never issued twice. Through the running qpki serve when
one holds the CA dir, else in process.`,
		Example: `  qpki batch submit requests.jsonl --ca-dir ./ca --out ./certs`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := server.OpenPipeline(dir, keys.options(), workers)
			if err != nil {
				return err
			}
			defer p.Close()
			if concurrency == 0 {
				concurrency = 256
				if !server.Remote(p) {
					concurrency = workers
				}
			}
			sum, err := batch.Run(cmd.Context(), p, args[0], batch.Options{OutDir: out, Concurrency: concurrency,
				Progress: os.Stderr, Terminal: term.IsTerminal(int(os.Stderr.Fd()))})
			if err != nil {
				return err
			}
			if asJSON {
				printJSON(os.Stdout, sum)
			} else {
				batch.WriteSummary(os.Stdout, sum)
			}
			if sum.Failed > 0 || sum.Pending > 0 {
				return fmt.Errorf("%d of %d requests did not get a certificate", sum.Failed+sum.Pending, sum.Total)
			}
			return nil
		},
	}
	addCADirFlag(submit, &dir)
	submit.Flags().StringVarP(&out, "out", "o", "", "directory for the certificates")
	submit.MarkFlagRequired("out")
	submit.Flags().IntVar(&workers, "workers", 2, "signer sessions when running in process")
	submit.Flags().IntVar(&concurrency, "concurrency", 0, "requests in flight (default 256 through a server, --workers in process)")
	submit.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	keys.add(submit)

	var sdir, sout string
	status := &cobra.Command{
		Use:     "status FILE",
		Short:   "Show which requests of a batch file have their certificate in --out",
		Example: `  qpki batch status requests.jsonl --out ./certs`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := batch.Status(args[0], sout)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(os.Stdout, st)
			}
			fmt.Printf("%d requests: %d with a certificate, %d missing, %d invalid lines\n", st.Total, st.Done, st.Missing, st.Invalid)
			return nil
		},
	}
	addCADirFlag(status, &sdir)
	status.Flags().StringVarP(&sout, "out", "o", "", "directory of the certificates")
	status.MarkFlagRequired("out")
	status.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.AddCommand(submit, status)
	return cmd
}
