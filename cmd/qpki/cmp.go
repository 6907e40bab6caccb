package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/cmp"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/profile"
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
	return cmd
}
