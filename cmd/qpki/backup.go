package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/backup"
	"github.com/qpki/qpki/pkg/atomicfile"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/server"
)

func newBackupCmd() *cobra.Command {
	var dir, data, out string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Write a consistent snapshot of a CA and its data dir (works while serve runs)",
		Long: `backup writes a tar.gz of the CA dir (metadata, certificates, key files as
stored — encrypted if they were — CRLs, profiles, audit log), the store copied
in one read transaction, and the ACME/EST state of the data dir. HSM keys stay
in the HSM: the backup holds only their references. The queue's own files are
left out: jobs in flight are recorded in the store and resubmitted by their
clients.`,
		Example: `  qpki backup --ca-dir ./data/issuing --data-dir ./data --out backup.tar.gz`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := os.CreateTemp(".", ".qpki-backup-*")
			if err != nil {
				return err
			}
			defer os.Remove(f.Name())
			defer f.Close()
			if cl, err := server.Dial(dir); err == nil {
				defer cl.Close()
				err = cl.Backup(f)
				if err != nil {
					return err
				}
			} else {
				c, err := ca.Open(dir)
				if err != nil {
					return err
				}
				defer c.Close()
				if err := backup.Write(f, server.BackupSources(c, data)); err != nil {
					return err
				}
			}
			if err := f.Sync(); err != nil {
				return err
			}
			f.Close()
			if out == "" || out == "-" {
				content, err := os.ReadFile(f.Name())
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(content)
				return err
			}
			if err := os.Rename(f.Name(), out); err != nil {
				content, rerr := os.ReadFile(f.Name())
				if rerr != nil {
					return err
				}
				return atomicfile.Write(out, content, 0o600)
			}
			os.Chmod(out, 0o600)
			fmt.Fprintf(os.Stderr, "backup written to %s\n", out)
			return nil
		},
	}
	addCADirFlag(cmd, &dir)
	cmd.Flags().StringVar(&data, "data-dir", "", "data dir whose ACME/EST state to include")
	addOutFlag(cmd, &out)
	return cmd
}

func newRestoreCmd() *cobra.Command {
	var dir, data, in string
	cmd := &cobra.Command{
		Use:     "restore",
		Short:   "Restore a backup into a new CA dir (and data dir)",
		Example: `  qpki restore --in backup.tar.gz --ca-dir ./restored/ca --data-dir ./restored/data`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := os.Open(in)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := backup.Restore(f, dir, data); err != nil {
				return err
			}
			c, err := ca.Open(dir)
			if err != nil {
				return fmt.Errorf("restored CA does not open: %w", err)
			}
			defer c.Close()
			st, err := c.Store()
			if err != nil {
				return err
			}
			certs, err := st.List(storeFilterAll)
			if err != nil {
				return err
			}
			if _, err := c.VerifyAudit(certs); err != nil {
				return fmt.Errorf("restored audit log: %w", err)
			}
			fmt.Printf("Restored CA %q into %s (%d certificates, audit log intact).\n", c.Meta.Subject.CommonName, c.Dir, len(certs))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "ca-dir", "", "new CA directory (must not exist or be empty)")
	cmd.Flags().StringVar(&data, "data-dir", "", "new data directory")
	cmd.Flags().StringVar(&in, "in", "", "backup file")
	cmd.MarkFlagRequired("ca-dir")
	cmd.MarkFlagRequired("in")
	return cmd
}
