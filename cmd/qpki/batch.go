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
	var dir, out, outJSONL string
	var workers, concurrency, chunk int
	var asJSON bool
	var keys caKeyFlags
	submit := &cobra.Command{
		Use:   "submit FILE",
		Short: "Submit a JSONL file of requests; certificates go to --out DIR as <id>.crt and/or --out-jsonl FILE",
		Long: `Each line is {"id":"line-1","profile":"ec/tls-server","csr":"-----BEGIN ...","vars":{...}}
(or "pubkey" in place of "csr"). The id is the idempotency key: submitting the
same file again issues only what is missing, and an id reused with another
request is reported, never issued twice. Through the running qpki serve when
one holds the CA dir, else in process.

--out-jsonl FILE appends one line per request, {"id","serial","pem"} or
{"id","error"} for a request the CA refused, written and synced --chunk lines
at a time. Run again after a crash, it drops a torn last line, skips the ids
that have a line and fetches the rest; an id never gets a second line.`,
		Example: `  qpki batch submit requests.jsonl --ca-dir ./ca --out ./certs`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" && outJSONL == "" {
				return fmt.Errorf("give --out DIR or --out-jsonl FILE (or both)")
			}
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
			sum, err := batch.Run(cmd.Context(), p, args[0], batch.Options{OutDir: out, OutJSONL: outJSONL, Chunk: chunk, Concurrency: concurrency,
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
	submit.Flags().StringVar(&outJSONL, "out-jsonl", "", "file to append one outcome line per request to")
	submit.Flags().IntVar(&chunk, "chunk", batch.DefaultChunk, "outcome lines per write and sync of --out-jsonl")
	submit.Flags().IntVar(&workers, "workers", 2, "signer sessions when running in process")
	submit.Flags().IntVar(&concurrency, "concurrency", 0, "requests in flight (default 256 through a server, --workers in process)")
	submit.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	keys.add(submit)

	var sdir, sout, soutJSONL string
	status := &cobra.Command{
		Use:     "status FILE",
		Short:   "Show which requests of a batch file have their certificate in --out or --out-jsonl",
		Example: `  qpki batch status requests.jsonl --out ./certs`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (sout == "") == (soutJSONL == "") {
				return fmt.Errorf("give one of --out DIR or --out-jsonl FILE")
			}
			st, err := batch.Status(args[0], sout, soutJSONL)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(os.Stdout, st)
			}
			fmt.Printf("%d requests: %d with a certificate, %d missing, %d invalid lines", st.Total, st.Done, st.Missing, st.Invalid)
			if st.Refused > 0 {
				fmt.Printf(", %d refused", st.Refused)
			}
			fmt.Println()
			return nil
		},
	}
	addCADirFlag(status, &sdir)
	status.Flags().StringVarP(&sout, "out", "o", "", "directory of the certificates")
	status.Flags().StringVar(&soutJSONL, "out-jsonl", "", "outcome file of the batch")
	status.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.AddCommand(submit, status)
	return cmd
}
