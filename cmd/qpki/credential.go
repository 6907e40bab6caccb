package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/credential"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/server"
)

func newCredentialCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "credential",
		Short: "Enroll, list, rotate and revoke credentials (keys and their certificates)",
		Long: `A credential is an end entity's private keys, in an HSM or in files, with
the certificates the CA issued for them, managed together. It lives in
<cred-dir>/<id>/credential.meta.json; --cred-dir defaults to
<ca-dir>/credentials.`,
	}
	cmd.AddCommand(newCredentialEnrollCmd(), newCredentialListCmd(), newCredentialShowCmd(),
		newCredentialRevokeCmd(), newCredentialRotateCmd())
	return cmd
}

// credDirFlags locate the credentials directory.
type credDirFlags struct{ caDir, credDir string }

func (f *credDirFlags) add(cmd *cobra.Command) {
	addCADirFlag(cmd, &f.caDir)
	cmd.Flags().StringVar(&f.credDir, "cred-dir", "", "credentials directory (default <ca-dir>/credentials)")
}

func (f *credDirFlags) dir() string {
	if f.credDir != "" {
		return f.credDir
	}
	return filepath.Join(f.caDir, "credentials")
}

// caUnlockFlags unlock the CA's key for a credential command, whose own
// --hsm-config and passphrase flags are the credential's.
type caUnlockFlags struct{ passEnv, hsmConfig string }

func (f *caUnlockFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.passEnv, "ca-passphrase-env", "QPKI_CA_PASSPHRASE", "environment variable holding the CA key passphrase")
	cmd.Flags().StringVar(&f.hsmConfig, "ca-hsm-config", "", "HSM config overriding the one recorded in the CA dir")
}

func (f *caUnlockFlags) options() ca.KeyOptions {
	return ca.KeyOptions{Passphrase: passphrase(f.passEnv, false), HSMConfig: f.hsmConfig}
}

// pipelineCA issues and revokes a credential's certificates through the
// CA's pipeline: the running server's queue, or in process.
type pipelineCA struct{ p server.Pipeline }

func (c pipelineCA) Issue(ctx context.Context, profile string, vars map[string]any, pub []byte) ([]byte, error) {
	st, err := c.p.Submit(ctx, server.SubmitRequest{Profile: profile, Vars: vars, PublicKey: pub,
		Key: "credential-" + randomID(), Wait: 2 * time.Minute})
	if err != nil {
		return nil, err
	}
	switch st.State {
	case store.JobFailed:
		return nil, errors.New(st.Error)
	case store.JobQueued:
		return nil, fmt.Errorf("job %s is still queued; the credential was not written (enroll again once the server has caught up)", st.JobID)
	}
	return st.DER, nil
}

func (c pipelineCA) Revoke(ctx context.Context, serial string, reason int) error {
	_, err := c.p.Revoke(ctx, serial, reason)
	if err != nil && strings.Contains(err.Error(), store.ErrRevoked.Error()) {
		return nil
	}
	return err
}

func newCredentialEnrollCmd() *cobra.Command {
	var dirs credDirFlags
	var profiles []string
	var vars varFlags
	var key hsmKeyFlags
	var caKeys caUnlockFlags
	var alg, passEnv, id string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Generate a key (in an HSM or a file), have the CA certify it and store the credential",
		Example: `  qpki credential enroll --ca-dir ./ca --profile ec/tls-server --var cn=server.example.com \
      --var dns_names=server.example.com --hsm-config hsm.yaml --key-label server-key
  qpki credential enroll --ca-dir ./ca --profile ec/tls-client --var cn=Alice --key-passphrase-env ALICE_PASS`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := vars.values()
			if err != nil {
				return err
			}
			spec := credential.KeySpec{HSMConfig: key.config, Label: key.label}
			if spec.ID, err = hsm.ParseKeyID(key.keyID); err != nil {
				return fmt.Errorf("--key-id: %v", err)
			}
			if (key.label != "" || key.keyID != "") && key.config == "" {
				return errors.New("--key-label and --key-id need --hsm-config")
			}
			if key.config != "" && key.label == "" {
				return errors.New("--hsm-config needs --key-label")
			}
			if alg != "" {
				if spec.Algorithm, err = algo.Parse(alg); err != nil {
					return err
				}
			}
			if passEnv != "" {
				if key.config != "" {
					return errors.New("--key-passphrase-env applies to key files, not HSM keys")
				}
				if spec.Passphrase, err = passphrase(passEnv, true)(); err != nil {
					return err
				}
			}
			p, err := server.OpenPipeline(dirs.caDir, caKeys.options(), 1)
			if err != nil {
				return err
			}
			defer p.Close()
			c, err := credential.Enroll(cmd.Context(), pipelineCA{p}, credential.EnrollOptions{
				Dir: dirs.dir(), CADir: dirs.caDir, Profiles: profiles, Vars: v, Key: spec, ID: id})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(os.Stdout, c)
			}
			fmt.Printf("Enrolled credential %s in %s.\n", c.ID, filepath.Join(dirs.dir(), c.ID))
			for _, cert := range c.Certificates {
				fmt.Printf("  serial %s  %s  %s  key %s\n", cert.Serial, cert.Profile, cert.Algorithm, storageLine(cert.Storage))
			}
			return nil
		},
	}
	dirs.add(cmd)
	cmd.Flags().StringArrayVar(&profiles, "profile", nil, "end-entity profile, e.g. ec/tls-server (repeatable: one key and certificate each)")
	cmd.MarkFlagRequired("profile")
	vars.add(cmd)
	key.add(cmd)
	cmd.Flags().StringVar(&alg, "algorithm", "", "key algorithm (default: the profile's)")
	cmd.Flags().StringVar(&passEnv, "key-passphrase-env", "", "encrypt key files with the passphrase in this environment variable")
	cmd.Flags().StringVar(&id, "id", "", "credential id (default: from the subject)")
	caKeys.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func storageLine(ss []credential.Storage) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		if s.Type == credential.StoragePKCS11 {
			parts[i] = fmt.Sprintf("pkcs11 label=%s id=%s", s.Label, s.KeyID)
		} else {
			parts[i] = "file " + s.Path
		}
	}
	return strings.Join(parts, ", ")
}

func newCredentialListCmd() *cobra.Command {
	var dirs credDirFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List credentials",
		Example: `  qpki credential list --ca-dir ./ca`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := credential.List(dirs.dir())
			if err != nil {
				return err
			}
			if asJSON {
				if cs == nil {
					cs = []*credential.Credential{}
				}
				return printJSON(os.Stdout, cs)
			}
			now := time.Now()
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tNOT AFTER\tPROFILES\tSUBJECT")
			for _, c := range cs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.State(now), c.NotAfter.Format(time.DateOnly), strings.Join(c.Profiles, ","), c.Subject)
			}
			return tw.Flush()
		},
	}
	dirs.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func newCredentialShowCmd() *cobra.Command {
	var dirs credDirFlags
	var asJSON, asPEM bool
	cmd := &cobra.Command{
		Use:     "show ID",
		Short:   "Show a credential: its certificates and where their keys are",
		Example: `  qpki credential show server.example.com-1a2b3c4d --ca-dir ./ca --pem`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := credential.Show(dirs.dir(), args[0])
			if err != nil {
				return err
			}
			switch {
			case asJSON:
				return printJSON(os.Stdout, c)
			case asPEM:
				data, err := readLimited(filepath.Join(dirs.dir(), c.ID, "certificates.pem"), 4<<20)
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(data)
				return err
			}
			fmt.Printf("ID:          %s\nSubject:     %s\nStatus:      %s\nProfiles:    %s\nCreated:     %s\nValidity:    %s to %s\n",
				c.ID, c.Subject, c.State(time.Now()), strings.Join(c.Profiles, ", "), c.Created.Format(time.RFC3339),
				c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "\nSERIAL\tSTATUS\tROLE\tPROFILE\tALGORITHM\tNOT AFTER\tKEY")
			for _, cert := range c.Certificates {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cert.Serial, cert.Status, cert.Role, cert.Profile, cert.Algorithm,
					cert.NotAfter.Format(time.DateOnly), storageLine(cert.Storage))
			}
			return tw.Flush()
		},
	}
	dirs.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.Flags().BoolVar(&asPEM, "pem", false, "print the active certificates (PEM)")
	return cmd
}

func newCredentialRevokeCmd() *cobra.Command {
	var dirs credDirFlags
	var caKeys caUnlockFlags
	var reason string
	cmd := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke every certificate of a credential",
		Example: `  qpki credential revoke server.example.com-1a2b3c4d --ca-dir ./ca --reason keyCompromise`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := ca.ParseReason(reason)
			if err != nil {
				return err
			}
			p, err := server.OpenPipeline(dirs.caDir, caKeys.options(), 1)
			if err != nil {
				return err
			}
			defer p.Close()
			c, err := credential.Revoke(cmd.Context(), pipelineCA{p}, dirs.dir(), args[0], code, time.Time{})
			if err != nil {
				return err
			}
			fmt.Printf("Revoked credential %s (%d certificates, reason %s).\n", c.ID, len(c.Certificates), ca.ReasonName(code))
			return nil
		},
	}
	dirs.add(cmd)
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 revocation reason, e.g. keyCompromise, superseded")
	caKeys.add(cmd)
	return cmd
}

func newCredentialRotateCmd() *cobra.Command {
	var dirs credDirFlags
	var caKeys caUnlockFlags
	var vars varFlags
	var hsmConfig, passEnv string
	cmd := &cobra.Command{
		Use:   "rotate ID",
		Short: "Give a credential new keys (in the same HSM, or new files) and new certificates",
		Long: `rotate makes a new key for each active certificate of the credential, in
the same place as the old key (the same HSM and label under a new key id,
or a new key file), and has the CA certify it under the same profile. The
old certificates are kept, archived, until they expire or are revoked.`,
		Example: `  qpki credential rotate server.example.com-1a2b3c4d --ca-dir ./ca`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := vars.values()
			if err != nil {
				return err
			}
			o := credential.RotateOptions{HSMConfig: hsmConfig, Vars: v}
			if passEnv != "" {
				if o.Passphrase, err = passphrase(passEnv, true)(); err != nil {
					return err
				}
			}
			p, err := server.OpenPipeline(dirs.caDir, caKeys.options(), 1)
			if err != nil {
				return err
			}
			defer p.Close()
			c, err := credential.Rotate(cmd.Context(), pipelineCA{p}, dirs.dir(), args[0], o)
			if err != nil {
				return err
			}
			fmt.Printf("Rotated credential %s.\n", c.ID)
			for _, cert := range c.Active() {
				fmt.Printf("  serial %s  %s  %s  key %s\n", cert.Serial, cert.Profile, cert.Algorithm, storageLine(cert.Storage))
			}
			return nil
		},
	}
	dirs.add(cmd)
	vars.add(cmd)
	cmd.Flags().StringVar(&hsmConfig, "hsm-config", "", "HSM config overriding the one recorded in the credential dir")
	cmd.Flags().StringVar(&passEnv, "key-passphrase-env", "", "encrypt new key files with the passphrase in this environment variable")
	caKeys.add(cmd)
	return cmd
}
