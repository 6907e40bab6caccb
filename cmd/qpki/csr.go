package main

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/inspect"
	"github.com/qpki/qpki/pkg/keyfile"
	"github.com/qpki/qpki/pkg/x509x"
)

func newCSRCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "csr", Short: "Create and inspect certificate signing requests"}
	cmd.AddCommand(newCSRGenCmd(), newCSRShowCmd())
	return cmd
}

type csrGenFlags struct {
	alg, keyOut, key, passEnv, out string
	cn, o, ou, c                   string
	dns, ips, emails, uris         []string
}

func newCSRGenCmd() *cobra.Command {
	var f csrGenFlags
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Create a CSR, with a new key (--keyout) or an existing one (--key)",
		Example: `  qpki csr gen --algorithm ecdsa-p256 --keyout server.key --cn server.example.com \
      --dns server.example.com --ip 192.0.2.10 --out server.csr
  qpki csr gen --key server.key --cn server.example.com --dns server.example.com --out server.csr`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run() },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.alg, "algorithm", "ecdsa-p256", "algorithm of a new key")
	fl.StringVar(&f.keyOut, "keyout", "", "write a new private key here")
	fl.StringVar(&f.key, "key", "", "use this existing private key")
	fl.StringVar(&f.passEnv, "passphrase-env", "", "environment variable with the key passphrase (encrypts --keyout, decrypts --key)")
	fl.StringVar(&f.cn, "cn", "", "subject common name")
	fl.StringVar(&f.o, "o", "", "subject organization")
	fl.StringVar(&f.ou, "ou", "", "subject organizational unit")
	fl.StringVar(&f.c, "c", "", "subject country")
	fl.StringSliceVar(&f.dns, "dns", nil, "DNS name (repeatable or comma-separated)")
	fl.StringSliceVar(&f.ips, "ip", nil, "IP address (repeatable)")
	fl.StringSliceVar(&f.emails, "email", nil, "email address (repeatable)")
	fl.StringSliceVar(&f.uris, "uri", nil, "URI (repeatable)")
	addOutFlag(cmd, &f.out)
	return cmd
}

func (f *csrGenFlags) run() error {
	if (f.key == "") == (f.keyOut == "") {
		return fmt.Errorf("give exactly one of --keyout (new key) or --key (existing key)")
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: f.cn}, DNSNames: f.dns, EmailAddresses: f.emails}
	if f.o != "" {
		tmpl.Subject.Organization = []string{f.o}
	}
	if f.ou != "" {
		tmpl.Subject.OrganizationalUnit = []string{f.ou}
	}
	if f.c != "" {
		tmpl.Subject.Country = []string{f.c}
	}
	for _, s := range f.ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("--ip %q is not an IP address", s)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	for _, s := range f.uris {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" {
			return fmt.Errorf("--uri %q is not an absolute URI", s)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	var priv crypto.PrivateKey
	var err error
	if f.key != "" {
		if priv, err = keyfile.Read(f.key, passphrase(f.passEnv, false)); err != nil {
			return err
		}
	} else {
		a, err := algo.Parse(f.alg)
		if err != nil {
			return err
		}
		if priv, err = algo.GenerateKey(a, rand.Reader); err != nil {
			return err
		}
	}
	pub, err := algo.PublicKey(priv)
	if err != nil {
		return err
	}
	a, err := algo.Of(pub)
	if err != nil {
		return err
	}
	s, err := algo.NewSigner(priv, a)
	if err != nil {
		return err
	}
	der, err := x509x.CreateCertificateRequest(rand.Reader, tmpl, s, nil, false)
	if err != nil {
		return err
	}
	if f.keyOut != "" {
		var pw []byte
		if f.passEnv != "" {
			if pw, err = passphrase(f.passEnv, true)(); err != nil {
				return err
			}
		}
		if err := keyfile.Write(f.keyOut, priv, pw); err != nil {
			return err
		}
	}
	return writeOut(f.out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
}

func newCSRShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "show FILE",
		Short:   "Check a CSR's signature and print its content",
		Example: `  qpki csr show server.csr --json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			csr, err := readCSR(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(os.Stdout, inspect.DescribeCSR(csr))
			}
			return inspect.WriteCSR(os.Stdout, csr)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func readCSR(path string) (*x509x.CertificateRequest, error) {
	data, err := readLimited(path, 2*x509x.MaxCSR)
	if err != nil {
		return nil, err
	}
	der, err := x509x.DecodeCSR(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	csr, err := x509x.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return csr, nil
}

// readLimited reads a file, refusing ones larger than max.
func readLimited(path string, max int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: file too large (%d bytes, limit %d)", path, fi.Size(), max)
	}
	return os.ReadFile(path)
}
