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
		msg := strings.TrimSpace(err.Error())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		fmt.Fprintln(os.Stderr, "qpki: error:", msg)
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
		newServeCmd(), newWorkerCmd(), newBatchCmd(), newQueueCmd(), newCOSECmd(), newAuditCmd(), newBackupCmd(), newRestoreCmd())
	root.AddCommand(newHSMCmd(), newCredentialCmd())
	root.AddCommand(newESTCmd())
	root.AddCommand(newACMECmd())
	return root
}
