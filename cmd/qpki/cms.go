package main

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cms"
	"github.com/qpki/qpki/pkg/credential"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/keyfile"
	"github.com/qpki/qpki/pkg/x509x"
)

func newCMSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cms", Short: "Sign, verify, encrypt, decrypt and inspect CMS messages (PKCS #7)"}
	cmd.AddCommand(newCMSSignCmd(), newCMSVerifyCmd(), newCMSEncryptCmd(), newCMSDecryptCmd(), newCMSInfoCmd())
	return cmd
}

func readCMSFile(path string) ([]byte, error) {
	data, err := readLimited(path, 2*cms.MaxMessage)
	if err != nil {
		return nil, err
	}
	return cms.Decode(data)
}

func writeCMS(out string, der []byte, asPEM bool) error {
	if asPEM {
		der = cms.EncodePEM(der)
	}
	return writeOut(out, der, 0o644)
}

func readCertFiles(paths []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range paths {
		cs, err := readCertFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}

func newCMSSignCmd() *cobra.Command {
	var certFile, keyFile, passEnv, out, hsmConfig, label, credID, credDir string
	var chain []string
	var detached, asPEM bool
	cmd := &cobra.Command{
		Use:   "sign FILE",
		Short: "Make a SignedData over FILE, with signed attributes and the signer's certificates",
		Long: `sign makes a CMS SignedData (RFC 5652) over FILE with signed attributes.
The signature algorithm is the key's: ECDSA, RSA (PKCS #1 v1.5), Ed25519,
ML-DSA (RFC 9882), SLH-DSA (RFC 9814) or composite ML-DSA. The key comes
from --cert C --key K (PEM or DER), an HSM key (--hsm-config F --key-label L
--cert C) or a credential (--credential ID).`,
		Example: `  qpki cms sign doc.txt --cert signer.crt --key signer.key --chain issuing.crt -o doc.p7s
  HSM_PIN=... qpki cms sign doc.txt --hsm-config hsm.yaml --key-label sign --cert signer.crt --detached -o doc.p7s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			content, err := readLimited(args[0], cms.MaxMessage)
			if err != nil {
				return err
			}
			var opts cms.SignOptions
			switch {
			case credID != "":
				dir := credDir
				if dir == "" {
					dir = filepath.Join(defaultCADir(), "credentials")
				}
				s, leaf, err := credential.Signer(dir, credID, credential.OpenOptions{HSMConfig: hsmConfig, Passphrase: passphrase(passEnv, false)})
				if err != nil {
					return err
				}
				defer s.Close()
				opts.Signer, opts.Certificate = s, leaf
				if c, err := ca.Open(filepath.Dir(filepath.Clean(dir))); err == nil {
					if cc, err := c.Chain(""); err == nil {
						opts.Chain = cc
					}
				}
			case certFile == "":
				return errors.New("--cert is required (or --credential)")
			default:
				certs, err := readCertFile(certFile)
				if err != nil {
					return err
				}
				opts.Certificate, opts.Chain = certs[0], certs[1:]
				switch {
				case label != "":
					if hsmConfig == "" {
						return errors.New("--key-label needs --hsm-config")
					}
					a, err := x509x.KeyAlgorithm(certs[0])
					if err != nil {
						return err
					}
					s, err := hsm.OpenSigner(hsmConfig, hsm.KeyRef{Label: label}, a)
					if err != nil {
						return err
					}
					defer s.Close()
					opts.Signer = s
				case keyFile != "":
					if opts.Signer, err = fileSigner(keyFile, passEnv); err != nil {
						return err
					}
				default:
					return errors.New("give --key, or --hsm-config and --key-label")
				}
			}
			more, err := readCertFiles(chain)
			if err != nil {
				return err
			}
			opts.Chain = append(opts.Chain, more...)
			opts.Detached = detached
			der, err := cms.Sign(rand.Reader, content, opts)
			if err != nil {
				return err
			}
			return writeCMS(out, der, asPEM)
		},
	}
	cmd.Flags().StringVar(&certFile, "cert", "", "signer certificate (PEM or DER; further certificates in the file are included)")
	cmd.Flags().StringVar(&keyFile, "key", "", "signer private key file (PEM or DER)")
	cmd.Flags().StringVar(&passEnv, "passphrase-env", "", "environment variable holding the key passphrase")
	cmd.Flags().StringArrayVar(&chain, "chain", nil, "further certificates to include (repeatable)")
	cmd.Flags().StringVar(&hsmConfig, "hsm-config", "", "HSM config of the signing key")
	cmd.Flags().StringVar(&label, "key-label", "", "label of the HSM signing key")
	cmd.Flags().StringVar(&credID, "credential", "", "sign with this credential's key and certificate")
	cmd.Flags().StringVar(&credDir, "cred-dir", "", "credential directory (default <ca-dir>/credentials)")
	cmd.Flags().BoolVar(&detached, "detached", false, "leave the content out of the SignedData")
	cmd.Flags().BoolVar(&asPEM, "pem", false, "write PEM instead of DER")
	addOutFlag(cmd, &out)
	return cmd
}

func newCMSVerifyCmd() *cobra.Command {
	var anchors, untrusted []string
	var data, out string
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify a SignedData: each signature, and with --ca each signer's chain",
		Long: `verify checks every signer of a SignedData: its signed attributes match
the content, its signature verifies, and, with --ca, its certificate chains
to one of the trust anchors through the certificates in the message and
--untrusted. Without --ca the signatures are checked against the
certificates inside the message only, and verify says that no chain was
checked. --data gives the content of a detached signature; -o writes the
content out.`,
		Example: `  qpki cms verify doc.p7s --ca root.crt
  qpki cms verify doc.p7s --data doc.txt --ca root.crt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ber, err := readCMSFile(args[0])
			if err != nil {
				return err
			}
			sd, err := cms.ParseSignedData(ber)
			if err != nil {
				return err
			}
			var opts cms.VerifyOptions
			if opts.Roots, err = readCertFiles(anchors); err != nil {
				return err
			}
			if opts.Intermediates, err = readCertFiles(untrusted); err != nil {
				return err
			}
			if data != "" {
				if opts.Content, err = readLimited(data, cms.MaxMessage); err != nil {
					return err
				}
			}
			vs, err := sd.Verify(opts)
			if err != nil {
				return err
			}
			w := os.Stdout
			if out == "" {
				fmt.Fprintf(w, "%s: OK\n", args[0])
			} else {
				w = os.Stderr
			}
			for _, v := range vs {
				fmt.Fprintf(w, "  signer %s: %s signature OK\n", v.Certificate.Subject, v.Algorithm)
				for i, c := range v.Chain {
					fmt.Fprintf(w, "    %d: %s\n", i, c.Subject)
				}
			}
			if len(opts.Roots) == 0 {
				fmt.Fprintln(w, "  no chain was checked (no --ca): the signatures were verified against the certificates in the message only")
			}
			if out != "" {
				content := sd.Content
				if content == nil {
					content = opts.Content
				}
				return writeOut(out, content, 0o644)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&anchors, "ca", nil, "trust anchor certificate (repeatable)")
	cmd.Flags().StringArrayVar(&untrusted, "untrusted", nil, "intermediate certificates (repeatable)")
	cmd.Flags().StringVar(&data, "data", "", "the signed content, for a detached signature")
	addOutFlag(cmd, &out)
	return cmd
}

func newCMSEncryptCmd() *cobra.Command {
	var recipients []string
	var out string
	var auth, pkcs1, asPEM bool
	cmd := &cobra.Command{
		Use:   "encrypt FILE",
		Short: "Encrypt FILE to recipient certificates (EnvelopedData, or AuthEnvelopedData with --auth)",
		Long: `encrypt makes an EnvelopedData (AES-256-CBC) or, with --auth, an
AuthEnvelopedData (AES-256-GCM) of FILE. Each recipient's key decides how the
content key reaches it: RSA keys by RSAES-OAEP (or PKCS #1 v1.5 with
--rsa-pkcs1v15), EC keys by ephemeral-static ECDH (KARI), ML-KEM and
composite ML-KEM keys by KEMRecipientInfo (RFC 9629, HKDF-SHA256).`,
		Example: `  qpki cms encrypt secret.txt --recipient alice.crt --recipient bob-kem.crt -o secret.p7m`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			content, err := readLimited(args[0], cms.MaxMessage)
			if err != nil {
				return err
			}
			if len(recipients) == 0 {
				return errors.New("at least one --recipient is required")
			}
			var certs []*x509.Certificate
			for _, r := range recipients {
				cs, err := readCertFile(r)
				if err != nil {
					return err
				}
				certs = append(certs, cs[0])
			}
			der, err := cms.Encrypt(rand.Reader, content, certs, cms.EncryptOptions{Auth: auth, RSAPKCS1v15: pkcs1})
			if err != nil {
				return err
			}
			return writeCMS(out, der, asPEM)
		},
	}
	cmd.Flags().StringArrayVar(&recipients, "recipient", nil, "recipient certificate (PEM or DER; repeatable)")
	cmd.Flags().BoolVar(&auth, "auth", false, "AuthEnvelopedData with AES-256-GCM")
	cmd.Flags().BoolVar(&pkcs1, "rsa-pkcs1v15", false, "RSA PKCS #1 v1.5 key transport instead of RSAES-OAEP")
	cmd.Flags().BoolVar(&asPEM, "pem", false, "write PEM instead of DER")
	addOutFlag(cmd, &out)
	return cmd
}

func newCMSDecryptCmd() *cobra.Command {
	var keyFile, certFile, passEnv, out string
	var inHSM kemKeyFlags
	cmd := &cobra.Command{
		Use:   "decrypt FILE",
		Short: "Decrypt an EnvelopedData or AuthEnvelopedData with the recipient's key",
		Example: `  qpki cms decrypt secret.p7m --key alice.key --cert alice.crt -o secret.txt
  qpki cms decrypt secret.p7m --key kem.key
  HSM_PIN=... qpki cms decrypt secret.p7m --hsm-config hsm.yaml --key-label kem --cert kem.crt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ber, err := readCMSFile(args[0])
			if err != nil {
				return err
			}
			key, closeKey, err := inHSM.open(keyFile, passEnv)
			if err != nil {
				return err
			}
			defer closeKey()
			var cert *x509.Certificate
			if certFile != "" {
				cs, err := readCertFile(certFile)
				if err != nil {
					return err
				}
				cert = cs[0]
			}
			plain, err := cms.Decrypt(ber, key, cert)
			if err != nil {
				return err
			}
			return writeOut(out, plain, 0o600)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "recipient private key file (PEM or DER)")
	cmd.Flags().StringVar(&certFile, "cert", "", "recipient certificate, to select the recipient (PEM or DER)")
	cmd.Flags().StringVar(&passEnv, "passphrase-env", "", "environment variable holding the key passphrase")
	inHSM.add(cmd)
	addOutFlag(cmd, &out)
	return cmd
}

// kemKeyFlags select an ML-KEM key in an HSM instead of a key file.
type kemKeyFlags struct{ config, label string }

func (f *kemKeyFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "hsm-config", "", "HSM config of an ML-KEM key (instead of --key)")
	cmd.Flags().StringVar(&f.label, "key-label", "", "label of the HSM ML-KEM key")
}

// open returns the key file's key, or the HSM's ML-KEM key and a function
// that closes its token.
func (f *kemKeyFlags) open(keyFile, passEnv string) (crypto.PrivateKey, func(), error) {
	switch {
	case f.config != "" || f.label != "":
		if keyFile != "" {
			return nil, nil, errors.New("give --key or --hsm-config with --key-label, not both")
		}
		if f.config == "" || f.label == "" {
			return nil, nil, errors.New("an HSM key needs --hsm-config and --key-label")
		}
		tok, err := hsm.OpenFile(f.config)
		if err != nil {
			return nil, nil, err
		}
		k, err := tok.FindKey(f.label, nil)
		if err == nil {
			var kk *hsm.KEMKey
			if kk, err = tok.KEMKey(k); err == nil {
				return kk, func() { tok.Close() }, nil
			}
		}
		tok.Close()
		return nil, nil, err
	case keyFile == "":
		return nil, nil, errors.New("--key (or --hsm-config and --key-label) is required")
	}
	key, err := keyfile.Read(keyFile, passphrase(passEnv, false))
	return key, func() {}, err
}

func newCMSInfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "info FILE",
		Short:   "Describe a CMS message: content type, signers, recipients, algorithms",
		Example: `  qpki cms info doc.p7s`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ber, err := readCMSFile(args[0])
			if err != nil {
				return err
			}
			s, err := cms.Summary(ber)
			if err != nil {
				return err
			}
			fmt.Print(s)
			return nil
		},
	}
}
