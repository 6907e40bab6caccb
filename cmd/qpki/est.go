package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/est"
	"github.com/qpki/qpki/pkg/store/jskv"
)

func newESTCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "est", Short: "Manage the EST server's HTTP Basic users"}
	user := &cobra.Command{Use: "user", Short: "Add, list and remove EST users (<data-dir>/est-users.json)"}
	var dataDir string
	var asJSON bool
	var sh sharedState
	var grant enroll.NamePolicy
	var subject []string
	// users is the data dir's file, or with --store jetstream the bucket
	// the front-ends share.
	users := func(cmd *cobra.Command) (est.UserStore, func(), error) {
		on, err := sh.shared()
		if err != nil || !on {
			return est.UsersDir(dataDir), func() {}, err
		}
		r, done, err := sh.records(cmd.Context(), jskv.BucketESTUsers)
		if err != nil {
			return nil, nil, err
		}
		return est.SharedUsers(r), done, nil
	}
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add an EST user, or set a user's password and names",
		Long: `add hashes the password with argon2id into <data-dir>/est-users.json,
replacing the file atomically; a running qpki serve picks it up within a
second. The password is asked for on a terminal, or read from the first
line of standard input when it is not one.

The --allow-* flags grant the user names, on top of what the EST label's
name policy grants (see "names" in the README): DNS names
(host.example.com, *.example.com for one label under it, .example.com
for any depth), IP networks, e-mail addresses (user@example.com, or
@example.com), URIs (exact, or a prefix ending in /*) and subject
attributes (O=Example Corp, CN=* for any CN). Adding a user again
replaces its password and its grants.`,
		Example: `  qpki est user add router-fleet --data-dir ./data --allow-dns '*.routers.example.com' --allow-ip 10.20.0.0/16
  qpki est user add router-fleet --store jetstream --nats-url nats://10.0.0.5:4222 --ca issuing --allow-dns '*.routers.example.com'
  printf '%s\n' "$PW" | qpki est user add router-fleet --data-dir ./data --allow-dns gw1.example.com`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readNewPassword(os.Stdin)
			if err != nil {
				return err
			}
			defer clear(pw)
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
			st, done, err := users(cmd)
			if err != nil {
				return err
			}
			defer done()
			created, err := est.SetUserIn(st, args[0], pw, &names)
			if err != nil {
				return err
			}
			if created {
				fmt.Printf("added EST user %s\n", args[0])
			} else {
				fmt.Printf("changed the password of EST user %s\n", args[0])
			}
			return nil
		},
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the EST users",
		Example: `  qpki est user list --data-dir ./data`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, done, err := users(cmd)
			if err != nil {
				return err
			}
			defer done()
			users, err := st.List()
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]map[string]any, len(users))
				for i, u := range users {
					out[i] = map[string]any{"name": u.Name, "created": u.Created, "names": u.Names}
				}
				return printJSON(os.Stdout, out)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCREATED\tNAMES")
			for _, u := range users {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Created.Format("2006-01-02 15:04:05Z07:00"), grantSummary(u.Names))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	remove := &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove an EST user",
		Example: `  qpki est user remove router-fleet --data-dir ./data`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, done, err := users(cmd)
			if err != nil {
				return err
			}
			defer done()
			if err := st.Remove(args[0]); err != nil {
				return err
			}
			fmt.Printf("removed EST user %s\n", args[0])
			return nil
		},
	}
	fl := add.Flags()
	fl.StringArrayVar(&grant.DNS, "allow-dns", nil, "a DNS name or pattern the user may have (repeatable)")
	fl.StringArrayVar(&grant.IP, "allow-ip", nil, "an IP network (CIDR) or address the user may have (repeatable)")
	fl.StringArrayVar(&grant.Email, "allow-email", nil, "an e-mail address, or @domain, the user may have (repeatable)")
	fl.StringArrayVar(&grant.URI, "allow-uri", nil, "a URI, or a prefix ending in /*, the user may have (repeatable)")
	fl.StringArrayVar(&subject, "allow-subject", nil, "a subject ATTRIBUTE=VALUE the user may have, VALUE * for any (repeatable)")
	for _, c := range []*cobra.Command{add, list, remove} {
		c.Flags().StringVar(&dataDir, "data-dir", "./data", "data directory of qpki serve")
		sh.addFlags(c)
		user.AddCommand(c)
	}
	cmd.AddCommand(user)
	return cmd
}

// grantSummary prints a user's grants on one line.
func grantSummary(p *enroll.NamePolicy) string {
	if p.Empty() {
		return "-"
	}
	var parts []string
	add := func(kind string, vs []string) {
		for _, v := range vs {
			parts = append(parts, kind+":"+v)
		}
	}
	add("dns", p.DNS)
	add("ip", p.IP)
	add("email", p.Email)
	add("uri", p.URI)
	for k, vs := range p.Subject {
		add("subject", []string{k + "=" + strings.Join(vs, "|")})
	}
	return strings.Join(parts, " ")
}

// readNewPassword asks for a password twice on a terminal, or reads the
// first line of in otherwise.
func readNewPassword(in *os.File) ([]byte, error) {
	if !term.IsTerminal(int(in.Fd())) {
		return readPasswordLine(in)
	}
	fmt.Fprint(os.Stderr, "Password: ")
	pw, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(os.Stderr, "Repeat password: ")
	again, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	defer clear(again)
	if !bytes.Equal(pw, again) {
		return nil, errors.New("passwords do not match")
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	return pw, nil
}

// readPasswordLine reads one line of at most 1 KiB, without its line end.
func readPasswordLine(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, 1025), 1025).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the password from standard input: %v", err)
	}
	if len(line) > 1024 {
		return nil, errors.New("the password on standard input is longer than 1024 bytes")
	}
	pw := bytes.TrimRight(line, "\r\n")
	if len(pw) == 0 {
		return nil, errors.New("no password on standard input")
	}
	return bytes.Clone(pw), nil
}
