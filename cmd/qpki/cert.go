package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/inspect"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/server"
)

func newCertCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Issue, list, revoke and verify certificates"}
	cmd.AddCommand(newCertIssueCmd(), newCertListCmd(), newCertShowCmd(), newCertRevokeCmd(), newCertVerifyCmd())
	return cmd
}

func newCertIssueCmd() *cobra.Command {
	var dir, prof, csrFile, pubFile, out string
	var vars varFlags
	var keys caKeyFlags
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate from a CSR (or a public key) under a profile",
		Example: `  qpki cert issue --ca-dir ./ca --profile ec/tls-server --csr server.csr --out server.crt
  qpki cert issue --profile ec/tls-client --csr client.csr --var cn=alice -o alice.crt
  qpki cert issue --profile ml/encryption --pubkey kem.pub --var cn=alice -o alice-kem.crt
  qpki cert issue --profile ml/encryption --csr kem.csr -o alice-kem.crt   # RFC 9883 request`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (csrFile == "") == (pubFile == "") {
				return fmt.Errorf("give exactly one of --csr or --pubkey")
			}
			v, err := vars.values()
			if err != nil {
				return err
			}
			req := server.SubmitRequest{Profile: prof, Vars: v, Key: "cli-" + randomID(), Wait: 2 * time.Minute}
			p, err := server.OpenPipeline(dir, keys.options(), 1)
			if err != nil {
				return err
			}
			defer p.Close()
			if csrFile != "" {
				der, err := readCSRDER(csrFile)
				if err != nil {
					return err
				}
				if !x509x.KeyCannotSign(der) {
					// Checked here too, for an error that names the file.
					if _, err := x509x.ParseCertificateRequest(der); err != nil {
						return fmt.Errorf("%s: %v", csrFile, err)
					}
				}
				// enroll checks it, the RFC 9883 statement of an ML-KEM
				// request included.
				req.CSR = der
			} else {
				pub, err := readPublicKey(pubFile)
				if err != nil {
					return err
				}
				if req.PublicKey, err = algo.MarshalPKIX(pub); err != nil {
					return err
				}
			}
			st, err := p.Submit(cmd.Context(), req)
			if err != nil {
				return err
			}
			switch st.State {
			case store.JobFailed:
				return errors.New(st.Error)
			case store.JobQueued:
				return fmt.Errorf("job %s is still queued; the server will finish it (the certificate will appear in `qpki cert list`)", st.JobID)
			}
			if out != "" {
				fmt.Fprintf(os.Stderr, "issued serial %s (%s) to %s\n", st.Serial, st.Cert.Subject, out)
			}
			return writeOut(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: st.DER}), 0o644)
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().StringVar(&prof, "profile", "", "certificate profile, e.g. ec/tls-server")
	cmd.MarkFlagRequired("profile")
	cmd.Flags().StringVar(&csrFile, "csr", "", "CSR file (PEM or DER); for an ML-KEM key, an RFC 9883 request (made by qpki csr gen --sign-cert)")
	cmd.Flags().StringVar(&pubFile, "pubkey", "", "public key file (PEM), for keys that cannot sign a CSR")
	vars.add(cmd)
	keys.add(cmd)
	addOutFlag(cmd, &out)
	return cmd
}

func readPublicKey(path string) (any, error) {
	data, err := readLimited(path, 4*algo.MaxKeyDER)
	if err != nil {
		return nil, err
	}
	der := data
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%s: unexpected PEM block %q, want PUBLIC KEY", path, block.Type)
		}
		der = block.Bytes
	}
	pub, err := algo.ParsePKIX(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return pub, nil
}

// certRow is the JSON form of `cert list`.
type certRow struct {
	Serial    string    `json:"serial"`
	Status    string    `json:"status"`
	Subject   string    `json:"subject"`
	Profile   string    `json:"profile"`
	CAVersion string    `json:"ca_version"`
	NotAfter  time.Time `json:"not_after"`
	Names     []string  `json:"names,omitempty"`
}

func newCertListCmd() *cobra.Command {
	var dir, status string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List issued certificates",
		Example: `  qpki cert list --ca-dir ./ca --status revoked --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := server.OpenPipeline(dir, ca.KeyOptions{}, 1)
			if err != nil {
				return err
			}
			defer p.Close()
			now := time.Now()
			certs, err := p.Certs(cmd.Context(), status)
			if err != nil {
				return err
			}
			rows := make([]certRow, 0, len(certs))
			for _, r := range certs {
				rows = append(rows, certRow{r.Serial, r.Status(now), r.Subject, r.Profile, r.CAVersion, r.NotAfter, r.Names})
			}
			if asJSON {
				return printJSON(os.Stdout, rows)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSTATUS\tNOT AFTER\tPROFILE\tSUBJECT")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Serial, r.Status, r.NotAfter.Format(time.DateOnly), r.Profile, r.Subject)
			}
			return tw.Flush()
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().StringVar(&status, "status", "", "only valid, revoked or expired certificates")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func newCertShowCmd() *cobra.Command {
	var dir string
	var asJSON, asPEM bool
	cmd := &cobra.Command{
		Use:     "show SERIAL",
		Short:   "Show an issued certificate",
		Example: `  qpki cert show 4f:1a:... --ca-dir ./ca --pem`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			serial, err := store.ParseSerial(args[0])
			if err != nil {
				return err
			}
			p, err := server.OpenPipeline(dir, ca.KeyOptions{}, 1)
			if err != nil {
				return err
			}
			defer p.Close()
			rec, err := p.Cert(cmd.Context(), store.FormatSerial(serial))
			if err != nil {
				return err
			}
			cert, err := x509.ParseCertificate(rec.DER)
			if err != nil {
				return err
			}
			switch {
			case asPEM:
				_, err = os.Stdout.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rec.DER}))
				return err
			case asJSON:
				return printJSON(os.Stdout, struct {
					inspect.Cert
					Status     string            `json:"status"`
					Profile    string            `json:"profile"`
					CAVersion  string            `json:"ca_version"`
					Revocation *store.Revocation `json:"revocation,omitempty"`
				}{inspect.DescribeCert(cert), rec.Status(time.Now()), rec.Profile, rec.CAVersion, rec.Revocation})
			}
			fmt.Printf("Status:   %s\nProfile:  %s\nCA:       %s\n", rec.Status(time.Now()), rec.Profile, rec.CAVersion)
			if r := rec.Revocation; r != nil {
				fmt.Printf("Revoked:  %s (%s)\n", r.Time.Format(time.RFC3339), ca.ReasonName(r.Reason))
			}
			return inspect.WriteCert(os.Stdout, cert)
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.Flags().BoolVar(&asPEM, "pem", false, "print the certificate as PEM")
	return cmd
}

func newCertRevokeCmd() *cobra.Command {
	var dir, reason string
	cmd := &cobra.Command{
		Use:     "revoke SERIAL",
		Short:   "Revoke an issued certificate",
		Long:    "Reasons: " + strings.Join([]string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise"}, ", ") + ".\nRun `qpki crl gen` afterwards to publish the revocation.",
		Example: `  qpki cert revoke 4f1a... --reason keyCompromise --ca-dir ./ca`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := ca.ParseReason(reason)
			if err != nil {
				return err
			}
			p, err := server.OpenPipeline(dir, ca.KeyOptions{}, 1)
			if err != nil {
				return err
			}
			defer p.Close()
			rec, err := p.Revoke(cmd.Context(), args[0], code)
			if err != nil {
				return err
			}
			fmt.Printf("Revoked %s (%s), reason %s.\n", rec.Serial, rec.Subject, ca.ReasonName(code))
			return nil
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "revocation reason")
	return cmd
}

func newCertVerifyCmd() *cobra.Command {
	var caFiles, untrusted, crls []string
	var at string
	cmd := &cobra.Command{
		Use:   "verify CERT",
		Short: "Verify a certificate's chain to a trust anchor, and its revocation",
		Example: `  qpki cert verify server.crt --ca root.crt --untrusted sub.crt --crl sub.crl
  qpki cert verify fullchain.pem --ca root.crt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			leafs, err := readCertFile(args[0])
			if err != nil {
				return err
			}
			o := ca.VerifyOptions{Intermediates: leafs[1:]}
			for _, f := range caFiles {
				cs, err := readCertFile(f)
				if err != nil {
					return err
				}
				o.Roots = append(o.Roots, cs...)
			}
			for _, f := range untrusted {
				cs, err := readCertFile(f)
				if err != nil {
					return err
				}
				o.Intermediates = append(o.Intermediates, cs...)
			}
			for _, f := range crls {
				data, err := readLimited(f, 64<<20)
				if err != nil {
					return err
				}
				o.CRLs = append(o.CRLs, data)
			}
			if at != "" {
				if o.Now, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--at: %v", err)
				}
			}
			chain, err := ca.VerifyChain(leafs[0], o)
			if err != nil {
				// Say which signature failed, when one did.
				if sigs := ca.DiagnoseSignatures(leafs[0], o); len(sigs) > 0 {
					fmt.Printf("%s: FAILED\n", args[0])
					printSignatures(sigs)
				}
				return fmt.Errorf("%s: verification failed: %v", args[0], err)
			}
			fmt.Printf("%s: OK\n", args[0])
			printSignatures(ca.Signatures(chain))
			if len(chain) > 0 && !bytes.Equal(chain[len(chain)-1].RawIssuer, chain[len(chain)-1].RawSubject) {
				fmt.Printf("  %d: %s (trust anchor)\n", len(chain)-1, chain[len(chain)-1].Subject)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&caFiles, "ca", nil, "trust anchor file (repeatable)")
	cmd.MarkFlagRequired("ca")
	cmd.Flags().StringArrayVar(&untrusted, "untrusted", nil, "intermediate certificates (repeatable)")
	cmd.Flags().StringArrayVar(&crls, "crl", nil, "CRL to check revocation against (repeatable)")
	cmd.Flags().StringVar(&at, "at", "", "verify at this time (RFC 3339) instead of now")
	return cmd
}

// printSignatures prints one line per certificate of a chain and its
// signature(s): "classical (ecdsa-with-SHA384): OK, alternative
// (ml-dsa-65): OK" for a Catalyst certificate.
func printSignatures(sigs []ca.SignatureStatus) {
	for i, s := range sigs {
		fmt.Printf("  %d: %s\n     %s\n", i, s.Subject, s)
	}
}

func readCertFile(path string) ([]*x509.Certificate, error) {
	data, err := readLimited(path, 16<<20)
	if err != nil {
		return nil, err
	}
	certs, err := ca.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return certs, nil
}
