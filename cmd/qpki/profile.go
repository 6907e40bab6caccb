package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/profile"
)

func newProfileCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "profile", Short: "List, show and check certificate profiles"}
	cmd.AddCommand(newProfileListCmd(), newProfileShowCmd(), newProfileLintCmd())
	return cmd
}

func newProfileListCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the built-in profiles and the CA dir's overrides",
		Example: `  qpki profile list --ca-dir ./ca`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := profile.List(dir)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(os.Stdout, list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tALGORITHMS\tCA\tSOURCE\tDESCRIPTION")
			for _, s := range list {
				algs := make([]string, len(s.Algorithms))
				for i, a := range s.Algorithms {
					algs[i] = string(a)
				}
				desc := s.Description
				if s.Error != "" {
					desc = "error: " + s.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", s.Name, strings.Join(algs, "+"), s.CA, s.Source, desc)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "ca-dir", "", "also list this CA dir's profiles/ overrides")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func newProfileShowCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "show NAME",
		Short:   "Print a profile's YAML (the CA dir's override when there is one)",
		Example: `  qpki profile show ec/tls-server`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := profile.Load(args[0], dir)
			if err != nil {
				return err
			}
			if asJSON {
				vars := make([]string, len(p.Variables))
				for i, v := range p.Variables {
					vars[i] = v.Name
				}
				return printJSON(os.Stdout, map[string]any{"name": p.Name, "description": p.Description, "source": p.Source,
					"algorithms": p.Algorithms, "mode": p.Mode, "ca": p.IsCA(), "validity": profile.FormatDuration(p.Validity),
					"variables": vars, "lint": p.Lint, "yaml": string(p.Raw)})
			}
			_, err = os.Stdout.Write(p.Raw)
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "ca-dir", "", "CA dir whose profiles/ overrides built-ins")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func newProfileLintCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "lint FILE",
		Short:   "Check a profile file; exits non-zero on errors",
		Example: `  qpki profile lint ./ca/profiles/acme/tls-server.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := profile.LoadFile(args[0])
			if err != nil {
				return err
			}
			findings := profile.Lint(p)
			if asJSON {
				if err := printJSON(os.Stdout, findings); err != nil {
					return err
				}
			} else {
				for _, f := range findings {
					fmt.Println(f)
				}
			}
			if profile.HasErrors(findings) {
				return errors.New(args[0] + ": profile has errors")
			}
			if !asJSON {
				fmt.Printf("%s: OK (%s)\n", args[0], p.Name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}
