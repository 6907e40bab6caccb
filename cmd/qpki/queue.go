package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
)

func newQueueCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "queue", Short: "Inspect the signing queue"}
	var dir string
	var asJSON bool
	var over time.Duration
	status := &cobra.Command{
		Use:   "status",
		Short: "Pending and in-flight jobs, signing rate, dead letters (through the running server)",
		Example: `  qpki queue status --ca-dir ./data/issuing
  qpki queue status --ca-dir ./data/issuing --json --over 5s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if over <= 0 {
				return fmt.Errorf("--over must be positive")
			}
			cl, err := dialServe(dir)
			if err != nil {
				return err
			}
			defer cl.Close()
			read := func() (queue.Status, error) {
				var st queue.Status
				raw, err := cl.QueueStatus(cmd.Context())
				if err == nil {
					err = json.Unmarshal(raw, &st)
				}
				return st, err
			}
			// The rate is the results stored between two readings.
			first, err := read()
			if err != nil {
				return err
			}
			select {
			case <-time.After(over):
			case <-cmd.Context().Done():
				return cmd.Context().Err()
			}
			st, err := read()
			if err != nil {
				return err
			}
			rep := queueReport{Status: st, SigningRate: st.ResultRate(first), Over: over.String()}
			if asJSON {
				return printJSON(os.Stdout, rep)
			}
			return rep.print(os.Stdout)
		},
	}
	addCADirFlag(status, &dir)
	status.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	status.Flags().DurationVar(&over, "over", time.Second, "measure the signing rate over this long")
	cmd.AddCommand(status, newQueueDeadCmd())
	return cmd
}

// dialServe reaches the server holding dir: the queue lives only there.
func dialServe(dir string) (*server.Client, error) {
	cl, err := server.Dial(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: start `qpki serve --ca-dir %s` first", err, dir)
	}
	return cl, nil
}

func newQueueDeadCmd() *cobra.Command {
	var dir string
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "The newest dead letters: jobs given up on, with their last error (through the running server)",
		Long: `dead lists the jobs the workers gave up on, newest first: each one's job id,
kind, class, deliveries and last error. A job goes to the dead letters
after its deliveries ran out on a signer that kept failing; the same
request sent again under the same key starts a new attempt.`,
		Example: `  qpki queue dead --ca-dir ./data/issuing
  qpki queue dead --ca-dir ./data/issuing --limit 100 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 10000 {
				return fmt.Errorf("--limit must be 1 to 10000")
			}
			cl, err := dialServe(dir)
			if err != nil {
				return err
			}
			defer cl.Close()
			dls, err := cl.DeadLetters(cmd.Context(), limit)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(os.Stdout, dls)
			}
			return printDeadLetters(os.Stdout, dls)
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.Flags().IntVar(&limit, "limit", 20, "list at most this many")
	return cmd
}

func printDeadLetters(w io.Writer, dls []queue.DeadLetter) error {
	if len(dls) == 0 {
		_, err := fmt.Fprintln(w, "No dead letters.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tJOB\tKIND\tCLASS\tDELIVERIES\tERROR")
	for _, d := range dls {
		job, kind, class := "(not a valid job: "+d.Subject+")", "-", "-"
		if d.Job != nil {
			job, kind, class = d.Job.ID, d.Job.Kind, d.Job.Class
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.Time.UTC().Format(time.RFC3339), job, kind, class, d.Deliveries, oneLine(d.Error))
	}
	return tw.Flush()
}

// queueReport is queue status's output: the queue's counters and the
// signing rate measured over a short interval.
type queueReport struct {
	queue.Status
	SigningRate float64 `json:"signing_rate"` // results stored per second
	Over        string  `json:"rate_over"`
}

func (r queueReport) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Signing rate:\t%.1f/s (over %s)\n", r.SigningRate, r.Over)
	fmt.Fprintf(tw, "Dead letters:\t%d\n", r.DeadLetters)
	fmt.Fprintf(tw, "Stored results:\t%d\n", r.Results)
	fmt.Fprintf(tw, "Replicas:\t%d\n\n", r.Replicas)
	fmt.Fprintln(tw, "CA\tCLASS\tPENDING\tIN FLIGHT\tREDELIVERED")
	row := func(ca, class string, c queue.ClassStatus) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", ca, class, c.Pending, c.InFlight, c.Redelivered)
	}
	for _, name := range r.CANames() {
		row(name, "interactive", r.CAs[name].Interactive)
		row(name, "batch", r.CAs[name].Batch)
	}
	row("(all)", "interactive", r.Interactive)
	row("(all)", "batch", r.Batch)
	return tw.Flush()
}
