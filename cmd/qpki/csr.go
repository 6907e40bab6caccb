package main

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
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
	// Catalyst: the alternative key, new or existing.
	catalyst, pqcKeyOut, pqcKey string
	// RFC 9883: the signature certificate and key that vouch for a key
	// that cannot sign.
	signCert, signKey, signPassEnv string
	noSignCert                     bool
}

func newCSRGenCmd() *cobra.Command {
	var f csrGenFlags
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Create a CSR, with a new key (--keyout) or an existing one (--key)",
		Example: `  qpki csr gen --algorithm ecdsa-p256 --keyout server.key --cn server.example.com \
      --dns server.example.com --ip 192.0.2.10 --out server.csr
  qpki csr gen --key server.key --cn server.example.com --dns server.example.com --out server.csr
  qpki csr gen --algorithm ml-dsa-65 --keyout pq.key --cn pq.example.com --dns pq.example.com --out pq.csr
  qpki csr gen --algorithm ecdsa-p384 --keyout ec.key --catalyst ml-dsa-65 --pqc-keyout pqc.key \
      --cn hybrid.example.com --dns hybrid.example.com --out hybrid.csr
  qpki csr gen --algorithm composite-mldsa65-ecdsa-p256 --keyout comp.key --cn comp.example.com --out comp.csr
  qpki csr gen --algorithm ml-kem-768 --keyout kem.key --sign-cert alice.crt --sign-key alice.key --out kem.csr`,
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
	fl.StringVar(&f.catalyst, "catalyst", "", "add a Catalyst alternative key of this algorithm (e.g. ml-dsa-65), written to --pqc-keyout")
	fl.StringVar(&f.pqcKeyOut, "pqc-keyout", "", "write the new Catalyst alternative private key here")
	fl.StringVar(&f.pqcKey, "pqc-key", "", "use this existing Catalyst alternative private key")
	fl.StringVar(&f.signCert, "sign-cert", "", "for a key that cannot sign (ml-kem-*): the subject's signature certificate (RFC 9883)")
	fl.StringVar(&f.signKey, "sign-key", "", "the private key of --sign-cert, which signs the request")
	fl.StringVar(&f.signPassEnv, "sign-passphrase-env", "", "environment variable with the --sign-key passphrase")
	fl.BoolVar(&f.noSignCert, "no-include-cert", false, "name the signature certificate without including it (the CA looks it up)")
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
	priv, err := f.loadOrGenerate(f.key, f.alg)
	if err != nil {
		return err
	}
	pub, err := algo.PublicKey(priv)
	if err != nil {
		return err
	}
	a, err := algo.Of(pub)
	if err != nil {
		return err
	}
	var der, altDER []byte
	var altPriv crypto.PrivateKey
	switch {
	case !a.CanSign():
		if der, err = f.statementRequest(tmpl, pub, a); err != nil {
			return err
		}
	default:
		if f.signCert != "" || f.signKey != "" {
			return fmt.Errorf("%s keys sign their own request: --sign-cert and --sign-key are for keys that cannot (ml-kem-*)", a)
		}
		s, err := algo.NewSigner(priv, a)
		if err != nil {
			return err
		}
		var alt algo.Signer
		if altPriv, alt, err = f.catalystKey(a); err != nil {
			return err
		}
		if der, err = x509x.CreateCertificateRequest(rand.Reader, tmpl, s, alt, false); err != nil {
			return err
		}
		if altPriv != nil {
			altDER = der
		}
	}
	if f.keyOut != "" || f.pqcKeyOut != "" {
		var pw []byte
		if f.passEnv != "" {
			if pw, err = passphrase(f.passEnv, true)(); err != nil {
				return err
			}
		}
		if f.keyOut != "" {
			if err := keyfile.Write(f.keyOut, priv, pw); err != nil {
				return err
			}
		}
		if f.pqcKeyOut != "" && altDER != nil {
			if err := keyfile.Write(f.pqcKeyOut, altPriv, pw); err != nil {
				return err
			}
		}
	}
	return writeOut(f.out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
}

// loadOrGenerate reads the key file, or makes a new key of algorithm alg.
func (f *csrGenFlags) loadOrGenerate(file, alg string) (crypto.PrivateKey, error) {
	if file != "" {
		return keyfile.Read(file, passphrase(f.passEnv, false))
	}
	a, err := algo.Parse(alg)
	if err != nil {
		return nil, err
	}
	return algo.GenerateKey(a, rand.Reader)
}

// catalystKey returns the Catalyst alternative key, when --catalyst or
// --pqc-key asks for one.
func (f *csrGenFlags) catalystKey(primary algo.Algorithm) (crypto.PrivateKey, algo.Signer, error) {
	if f.catalyst == "" && f.pqcKey == "" {
		if f.pqcKeyOut != "" {
			return nil, nil, errors.New("--pqc-keyout needs --catalyst ALGORITHM")
		}
		return nil, nil, nil
	}
	if (f.pqcKey == "") == (f.pqcKeyOut == "") {
		return nil, nil, errors.New("a Catalyst request needs exactly one of --pqc-keyout (new alternative key) or --pqc-key (existing)")
	}
	if !primary.IsClassical() {
		return nil, nil, fmt.Errorf("a Catalyst request pairs a classical key with a post-quantum one; the primary key is %s", primary)
	}
	priv, err := f.loadOrGenerate(f.pqcKey, f.catalyst)
	if err != nil {
		return nil, nil, fmt.Errorf("alternative key: %w", err)
	}
	pub, err := algo.PublicKey(priv)
	if err != nil {
		return nil, nil, err
	}
	a, err := algo.Of(pub)
	if err != nil {
		return nil, nil, err
	}
	if f.catalyst != "" {
		if want, err := algo.Parse(f.catalyst); err != nil {
			return nil, nil, err
		} else if want != a {
			return nil, nil, fmt.Errorf("--pqc-key holds a %s key, --catalyst asks for %s", a, want)
		}
	}
	if a.IsClassical() || !a.CanSign() {
		return nil, nil, fmt.Errorf("the Catalyst alternative key must be a post-quantum signature key, not %s", a)
	}
	s, err := algo.NewSigner(priv, a)
	return priv, s, err
}

// statementRequest makes an RFC 9883 request for a key that cannot sign,
// signed by the subject's signature key. Without subject flags the
// request takes the signature certificate's subject, which the CA
// requires it to match.
func (f *csrGenFlags) statementRequest(tmpl *x509.CertificateRequest, pub crypto.PublicKey, a algo.Algorithm) ([]byte, error) {
	if f.signCert == "" || f.signKey == "" {
		return nil, fmt.Errorf("%s keys cannot sign their request: give the subject's signature certificate and key (--sign-cert, --sign-key; RFC 9883), or have the CA certify the public key (`qpki key pub`, then `qpki cert issue --pubkey`)", a)
	}
	if f.catalyst != "" || f.pqcKey != "" || f.pqcKeyOut != "" {
		return nil, errors.New("--catalyst applies to signature keys")
	}
	certs, err := readCertFile(f.signCert)
	if err != nil {
		return nil, err
	}
	signPriv, err := keyfile.Read(f.signKey, passphrase(f.signPassEnv, false))
	if err != nil {
		return nil, err
	}
	signPub, err := algo.PublicKey(signPriv)
	if err != nil {
		return nil, err
	}
	sa, err := algo.Of(signPub)
	if err != nil {
		return nil, err
	}
	signer, err := algo.NewSigner(signPriv, sa)
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	if f.cn == "" && f.o == "" && f.ou == "" && f.c == "" {
		tmpl.RawSubject = certs[0].RawSubject
	}
	return x509x.CreateCertificateRequestWithStatement(rand.Reader, tmpl, pub, signer, certs[0], !f.noSignCert, false)
}

func newCSRShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "show FILE",
		Short:   "Check a CSR's signature and print its content",
		Example: `  qpki csr show server.csr --json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			der, err := readCSRDER(args[0])
			if err != nil {
				return err
			}
			var d inspect.CSR
			if x509x.KeyCannotSign(der) {
				csr, signer, err := x509x.ParseCertificateRequestWithStatement(der, nil)
				if err != nil {
					return fmt.Errorf("%s: %v", args[0], err)
				}
				d = inspect.DescribeStatementCSR(csr, signer)
			} else {
				csr, err := x509x.ParseCertificateRequest(der)
				if err != nil {
					return fmt.Errorf("%s: %v", args[0], err)
				}
				d = inspect.DescribeCSR(csr)
			}
			if asJSON {
				return printJSON(os.Stdout, d)
			}
			return inspect.WriteCSRDescription(os.Stdout, d)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

// readCSRDER reads a CSR file, PEM or DER.
func readCSRDER(path string) ([]byte, error) {
	data, err := readLimited(path, 2*x509x.MaxCSR)
	if err != nil {
		return nil, err
	}
	der, err := x509x.DecodeCSR(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return der, nil
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
