package main

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/scep"
	"github.com/qpki/qpki/server"
)

func newSCEPCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "scep", Short: "Manage the SCEP server's RA certificate and one-time challenges"}
	cmd.AddCommand(newSCEPRACmd(), newSCEPChallengeCmd())
	return cmd
}

func newSCEPRACmd() *cobra.Command {
	ra := &cobra.Command{Use: "ra", Short: "The SCEP RA certificate (<ca-dir>/scep/ra.crt, ra.key)"}
	var dir string
	var keys caKeyFlags
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Make or replace the SCEP RA key and certificate",
		Long: `issue makes an RSA key for the SCEP registration authority (SCEP clients
encrypt their requests to it; it signs the answers) and has the CA
certify it under the scep/ra profile. The key is written to
<ca-dir>/scep/ra.key (0600), never the CA key. qpki serve makes one at
first start when the CA has none; restart serve after replacing it.`,
		Example: `  qpki scep ra issue --ca-dir ./ca`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := server.OpenPipeline(dir, keys.options(), 1)
			if err != nil {
				return err
			}
			defer p.Close()
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			name := filepath.Base(abs)
			key, csr, err := scep.NewRAKey(name)
			if err != nil {
				return err
			}
			st, err := p.Submit(cmd.Context(), server.SubmitRequest{Profile: scep.RAProfile, CSR: csr, Vars: map[string]any{"cn": name + " SCEP RA"},
				Key: "cli-scep-ra-" + randomID(), Wait: 2 * time.Minute})
			if err != nil {
				return err
			}
			switch st.State {
			case store.JobFailed:
				return errors.New(st.Error)
			case store.JobQueued:
				return fmt.Errorf("job %s is still queued; run this again once a worker runs", st.JobID)
			}
			ra, err := scep.SaveRA(dir, key, st.DER)
			if err != nil {
				return err
			}
			certPath, _ := scep.RAPaths(dir)
			fmt.Fprintf(os.Stderr, "issued the SCEP RA certificate, serial %x, to %s\n", ra.Cert.SerialNumber, certPath)
			os.Stdout.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: st.DER}))
			return nil
		},
	}
	addCADirFlag(issue, &dir)
	keys.add(issue)
	ra.AddCommand(issue)
	return ra
}

func newSCEPChallengeCmd() *cobra.Command {
	ch := &cobra.Command{Use: "challenge", Short: "One-time SCEP challenge passwords"}
	var dataDir, label, ttl string
	var sh sharedState
	var grant enroll.NamePolicy
	var subject []string
	add := &cobra.Command{
		Use:   "add",
		Short: "Make a one-time challenge password and print it",
		Long: `add makes a random challenge password for one SCEP enrollment on a
label (the default label without --label), bound to the names the
--allow-* flags grant on top of the label's name policy, and prints it
alone on standard output. Only its SHA-256 is stored, in
<data-dir>/scep-challenges.db, or with --store jetstream in the bucket the
serve front-ends share. It is usable by one transaction until --ttl
(24h by default; h, m, d and w units) has passed.`,
		Example: `  qpki scep challenge add --data-dir ./data --allow-dns laptop-17.corp.example.com
  qpki scep challenge add --data-dir ./data --label printers --ttl 7d --allow-dns '*.printers.example.com'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := profile.ParseDuration(ttl)
			if err != nil || d <= 0 {
				return fmt.Errorf("--ttl %q: want a positive duration such as 24h or 7d", ttl)
			}
			names := grant
			for _, a := range subject {
				k, v, ok := strings.Cut(a, "=")
				if !ok || k == "" || v == "" {
					return fmt.Errorf("--allow-subject %q: want ATTRIBUTE=VALUE, e.g. O=Example Corp", a)
				}
				if names.Subject == nil {
					names.Subject = map[string][]string{}
				}
				names.Subject[k] = append(names.Subject[k], v)
			}
			if err := names.Validate(); err != nil {
				return err
			}
			var st scep.ChallengeStore = scep.FileChallenges{Path: scep.ChallengesPath(dataDir)}
			on, err := sh.shared()
			if err != nil {
				return err
			}
			if on {
				r, done, err := sh.records(cmd.Context(), scep.BucketChallenges)
				if err != nil {
					return err
				}
				defer done()
				st = scep.SharedChallenges(r)
			}
			pw, hash, err := scep.NewChallenge()
			if err != nil {
				return err
			}
			now := time.Now().UTC()
			c := scep.Challenge{Label: label, Created: now.Truncate(time.Second), Expires: now.Add(d)}
			if !names.Empty() {
				c.Names = &names
			}
			if err := st.Add(hash, c); err != nil {
				return err
			}
			fmt.Println(pw)
			return nil
		},
	}
	fl := add.Flags()
	fl.StringVar(&dataDir, "data-dir", "./data", "data directory of qpki serve")
	fl.StringVar(&label, "label", "", "the SCEP label (/scep/<label>) the challenge is for (default: /scep)")
	fl.StringVar(&ttl, "ttl", "24h", "how long the challenge can be used")
	fl.StringArrayVar(&grant.DNS, "allow-dns", nil, "a DNS name or pattern the enrollment may have (repeatable)")
	fl.StringArrayVar(&grant.IP, "allow-ip", nil, "an IP network (CIDR) or address the enrollment may have (repeatable)")
	fl.StringArrayVar(&grant.Email, "allow-email", nil, "an e-mail address, or @domain (repeatable)")
	fl.StringArrayVar(&grant.URI, "allow-uri", nil, "a URI, or a prefix ending in /* (repeatable)")
	fl.StringArrayVar(&subject, "allow-subject", nil, "a subject ATTRIBUTE=VALUE, VALUE * for any (repeatable)")
	sh.addFlags(add)
	ch.AddCommand(add)
	return ch
}
