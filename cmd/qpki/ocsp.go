package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/server"
)

func newOCSPCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ocsp", Short: "OCSP responder (served by `qpki serve` at /ocsp)"}
	responder := &cobra.Command{Use: "responder", Short: "The CA's delegated OCSP responder"}
	responder.AddCommand(newOCSPResponderIssueCmd())
	cmd.AddCommand(responder)
	return cmd
}

func newOCSPResponderIssueCmd() *cobra.Command {
	var dir, alg, hsmConfig, label, passEnv string
	var days int
	var keys caUnlockFlags
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a delegated OCSP responder certificate (id-kp-OCSPSigning, id-pkix-ocsp-nocheck) and sign OCSP with it",
		Long: `issue makes a new key for the CA's delegated OCSP responder (a file in
<ca-dir>/ocsp/, or in the HSM with --hsm-config and --key-label), has the CA
issue its certificate (profile ocsp/responder, written to
<ca-dir>/profiles/ocsp/ on first use), and installs it: from then on the
workers sign OCSP responses with it, and qpki serve renews the certificate
when a third of its life is left.`,
		Example: `  qpki ocsp responder issue --ca-dir ./issuing --days 7
  qpki ocsp responder issue --ca-dir ./issuing --hsm-config hsm.yaml --key-label ocsp-responder --algorithm ecdsa-p384`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			o := server.ResponderOptions{Days: days, Key: ca.KeySpec{HSMConfig: hsmConfig, Label: label}}
			if alg != "" {
				if o.Algorithm, err = algo.Parse(alg); err != nil {
					return err
				}
			}
			if hsmConfig == "" {
				if v, ok := os.LookupEnv(passEnv); ok && v != "" {
					o.Key.Passphrase = []byte(v)
				}
			} else if label == "" {
				return fmt.Errorf("--hsm-config needs --key-label")
			}
			p, err := server.OpenPipeline(dir, keys.options(), 1)
			if err != nil {
				return err
			}
			defer p.Close()
			cert, err := server.IssueResponder(cmd.Context(), p, c, o)
			if err != nil {
				return err
			}
			fmt.Printf("delegated OCSP responder %q, serial %x, valid until %s\n", cert.Subject.CommonName, cert.SerialNumber, cert.NotAfter.UTC().Format("2006-01-02 15:04 MST"))
			return nil
		},
	}
	addCADirFlag(cmd, &dir)
	fl := cmd.Flags()
	fl.StringVar(&alg, "algorithm", "", "responder key algorithm (default: the CA key's)")
	fl.StringVar(&hsmConfig, "hsm-config", "", "make the responder key in this HSM instead of a file")
	fl.StringVar(&label, "key-label", "", "label of the responder key in the HSM")
	fl.IntVar(&days, "days", 7, "validity in days (1-90; serve renews it before it expires)")
	fl.StringVar(&passEnv, "passphrase-env", "QPKI_CA_PASSPHRASE", "environment variable whose passphrase encrypts the responder key file (the workers read it as the CA key's; unset: unencrypted, mode 0600)")
	keys.add(cmd)
	return cmd
}
