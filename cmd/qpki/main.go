// Command qpki is the post-quantum-ready certificate authority's CLI. It
// parses flags and calls into the packages that do the work.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "qpki: error:", oneLine(err.Error()))
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "qpki",
		Short: "A post-quantum-ready certificate authority",
		Long: `qpki issues X.509 certificates, CRLs and CWTs from CAs whose keys live in
files or in an HSM, with classical, post-quantum and hybrid algorithms.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(refusePINFlag)
	root.AddCommand(newKeyCmd(), newCSRCmd(), newCACmd(), newCertCmd(), newCRLCmd(), newProfileCmd(),
		newServeCmd(), newWorkerCmd(), newBatchCmd(), newQueueCmd(), newCOSECmd(), newCMSCmd(), newAuditCmd(), newBackupCmd(), newRestoreCmd())
	root.AddCommand(newHSMCmd(), newCredentialCmd())
	root.AddCommand(newESTCmd())
	root.AddCommand(newCMPCmd())
	root.AddCommand(newSCEPCmd())
	root.AddCommand(newACMECmd())
	root.AddCommand(newOCSPCmd())
	return root
}

// oneLine folds a multi-line error (a YAML decoder lists one problem per
// line) into the one line the CLI prints, so that no detail is lost.
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	msg = strings.Join(parts, " ")
	if len(msg) > 1000 {
		msg = msg[:1000] + "..."
	}
	return msg
}
