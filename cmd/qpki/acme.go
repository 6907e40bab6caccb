package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/acme/eab"
	"github.com/qpki/qpki/pkg/store"
)

func newACMECmd() *cobra.Command {
	cmd := &cobra.Command{Use: "acme", Short: "Manage the ACME server's external account binding keys"}
	keys := &cobra.Command{
		Use:   "eab",
		Short: "Add, list and remove external account binding keys (in the ACME store)",
		Long: `External account binding (RFC 8555 §7.3.4) ties a new ACME account to a
key id and HMAC key the operator handed out. Each pair binds one account.
The keys live in the ACME store, <data-dir>/acme.db, where the account a key
binds and the mark that the key is used are written together; while qpki
serve runs, these commands reach them through its socket <data-dir>/acme.sock.
Keys of an earlier <data-dir>/acme-eab.json move into the store at the first
start. Start serve with --acme-eab-required to refuse accounts without a
binding. Front-ends that share a NATS cluster (serve --store jetstream) keep
their keys in the shared ACME bucket: change those with --store jetstream
--nats-url URL --ca NAME (or --ca-dir DIR).`,
	}
	var dataDir, kid, note string
	var asJSON bool
	var sh sharedState
	// store is the keys of the data dir's acme.db (through the running
	// serve's socket while serve holds it), or with --store jetstream
	// those of the bucket the front-ends share.
	store := func(cmd *cobra.Command) (eab.Store, func(), error) {
		on, err := sh.shared()
		if err != nil {
			return nil, nil, err
		}
		if on {
			return sh.eabKeys(cmd.Context())
		}
		return localEABKeys(dataDir)
	}
	add := &cobra.Command{
		Use:   "add",
		Short: "Create a key id and HMAC key pair and print them, once",
		Long: `add creates a single-use binding key and prints its id and HMAC key
(base64url, as certbot --eab-hmac-key and lego --hmac take it). Hand both
to the client's operator over a trusted channel.`,
		Example: `  qpki acme eab add --data-dir ./data --note "web team"
  certbot register --server https://ca.example:8443/acme/directory --eab-kid KID --eab-hmac-key HMAC ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, done, err := store(cmd)
			if err != nil {
				return err
			}
			defer done()
			k, err := st.Add(kid, note)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]string{"kid": k.ID, "hmac": k.HMAC})
			}
			fmt.Printf("kid:  %s\nhmac: %s\n", k.ID, k.HMAC)
			return nil
		},
	}
	add.Flags().StringVar(&kid, "kid", "", "key id (default: random)")
	add.Flags().StringVar(&note, "note", "", "what the key is for, shown by list")
	add.Flags().BoolVar(&asJSON, "json", false, "print {\"kid\",\"hmac\"} as JSON")
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the keys and the accounts they bound (never the HMAC keys)",
		Example: `  qpki acme eab list --data-dir ./data`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, done, err := store(cmd)
			if err != nil {
				return err
			}
			defer done()
			ks, err := st.List()
			if err != nil {
				return err
			}
			if asJSON {
				type row struct {
					KID     string    `json:"kid"`
					Note    string    `json:"note,omitempty"`
					Created time.Time `json:"created"`
					Used    time.Time `json:"used,omitzero"`
					Account string    `json:"account,omitempty"`
				}
				rows := make([]row, len(ks))
				for i, k := range ks {
					rows[i] = row{k.ID, k.Note, k.Created, k.Used, k.Account}
				}
				return json.NewEncoder(os.Stdout).Encode(rows)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tCREATED\tUSED\tACCOUNT\tNOTE")
			for _, k := range ks {
				used := "-"
				if !k.Used.IsZero() {
					used = k.Used.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Created.Format(time.RFC3339), used, dash(k.Account), k.Note)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	remove := &cobra.Command{
		Use:     "remove KID",
		Short:   "Remove a key (an account it bound stays)",
		Example: `  qpki acme eab remove 3Zx9Qk2mL0aB --data-dir ./data`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, done, err := store(cmd)
			if err != nil {
				return err
			}
			defer done()
			if err := st.Remove(args[0]); err != nil {
				return err
			}
			fmt.Printf("removed external account key %s\n", args[0])
			return nil
		},
	}
	for _, c := range []*cobra.Command{add, list, remove} {
		c.Flags().StringVar(&dataDir, "data-dir", "./data", "data directory of qpki serve")
		sh.addFlags(c)
		keys.AddCommand(c)
	}
	cmd.AddCommand(keys)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// localEABKeys opens the keys of a data dir's acme.db, or reaches those
// of the serve that holds it.
func localEABKeys(dataDir string) (eab.Store, func(), error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, nil, err
	}
	st, err := store.OpenACME(filepath.Join(dataDir, store.ACMEFile))
	if errors.Is(err, store.ErrLocked) {
		return eab.Remote(dataDir), func() {}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if _, err := eab.MigrateFile(dataDir, st); err != nil {
		st.Close()
		return nil, nil, err
	}
	return eab.InStore(st), func() { st.Close() }, nil
}
