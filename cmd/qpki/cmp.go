package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/cmp"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/server"
)

func newCMPCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cmp", Short: "Manage the CMP server's shared secrets"}
	secret := &cobra.Command{Use: "secret", Short: "One-time shared secrets for MAC-protected CMP enrollment (<data-dir>/cmp.db)"}
	var dataDir, ref, label, ttl string
	var sh sharedState
	var grant enroll.NamePolicy
	add := &cobra.Command{
		Use:   "add",
		Short: "Add a one-time shared secret and print it",
		Long: `add makes a random secret for reference REF (the client's senderKID,
openssl cmp -ref) and prints it alone on standard output, once: it is not
shown again. Each secret is good for one initial enrollment (ir, cr or
p10cr) under --label (default: the unlabelled /.well-known/cmp), until
--ttl. The --allow-* flags grant names on top of the label's name policy.`,
		Example: `  qpki cmp secret add --data-dir ./data --ref gnb-0042 --ttl 7d --allow-dns 'gnb-0042.ran.example.com'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := profile.ParseDuration(ttl)
			if err != nil {
				return fmt.Errorf("--ttl: %v", err)
			}
			recs := cmp.FileRecords(cmp.DBPath(dataDir), "secrets")
			on, err := sh.shared()
			if err != nil {
				return err
			}
			if on {
				r, done, err := sh.records(cmd.Context(), cmp.BucketSecrets)
				if err != nil {
					return err
				}
				defer done()
				recs = r
			} else if dataDir == "" {
				return fmt.Errorf("--data-dir is required")
			}
			var names *enroll.NamePolicy
			if !grant.Empty() {
				names = &grant
			}
			s, err := cmp.AddSecret(recs, ref, label, d, names)
			if err != nil {
				return err
			}
			fmt.Println(s)
			return nil
		},
	}
	fl := add.Flags()
	fl.StringVar(&dataDir, "data-dir", "", "serve's --data-dir")
	fl.StringVar(&ref, "ref", "", "the secret's reference (senderKID)")
	fl.StringVar(&label, "label", "", "the CMP label (default: /.well-known/cmp)")
	fl.StringVar(&ttl, "ttl", "7d", "how long the secret is good (e.g. 12h, 7d)")
	fl.StringArrayVar(&grant.DNS, "allow-dns", nil, "DNS names the secret grants (host.example.com, *.example.com, .example.com)")
	fl.StringArrayVar(&grant.IP, "allow-ip", nil, "IP networks the secret grants")
	add.MarkFlagRequired("ref")
	sh.addFlags(add)
	secret.AddCommand(add)
	cmd.AddCommand(secret)
	cmd.AddCommand(newCMPRACmd())
	return cmd
}

func newCMPRACmd() *cobra.Command {
	ra := &cobra.Command{Use: "ra", Short: "The CMP RA certificate that signs the CMP answers"}
	var caDir string
	var keys caKeyFlags
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue a new CMP RA key and certificate (<ca-dir>/cmp-ra/)",
		Long: `issue makes a new RA key and has the CA certify it through its pipeline
(the running serve's, when one holds the CA directory). serve makes one at
first start; this command replaces it (serve loads it at its next start).`,
		Example: `  qpki cmp ra issue --ca-dir ./issuing`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(caDir)
			if err != nil {
				return err
			}
			caCert, err := c.Certificate("")
			c.Close()
			if err != nil {
				return err
			}
			p, err := server.OpenPipeline(caDir, keys.options(), 1)
			if err != nil {
				return err
			}
			defer p.Close()
			issue := func(ctx context.Context, prof string, csr []byte, key string) ([]byte, error) {
				st, err := p.Submit(ctx, server.SubmitRequest{Profile: prof, CSR: csr, Key: key, Wait: time.Minute})
				if err != nil {
					return nil, err
				}
				if st.State != store.JobDone {
					if st, err = p.Job(ctx, st.JobID, time.Minute); err != nil {
						return nil, err
					}
				}
				if st.State != store.JobDone {
					return nil, fmt.Errorf("job %s: %s %s", st.JobID, st.State, st.Error)
				}
				return st.DER, nil
			}
			r, err := cmp.IssueRA(cmd.Context(), caDir, caCert, issue)
			if err != nil {
				return err
			}
			fmt.Printf("CMP RA certificate %s, serial %x, in %s\n", r.Cert.Subject, r.Cert.SerialNumber, cmp.RADir(caDir))
			return nil
		},
	}
	issue.Flags().StringVar(&caDir, "ca-dir", "", "the CA directory")
	issue.MarkFlagRequired("ca-dir")
	keys.add(issue)
	ra.AddCommand(issue)
	return ra
}
