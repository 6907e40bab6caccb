package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/cose"
	"github.com/qpki/qpki/pkg/credential"
	"github.com/qpki/qpki/pkg/hsm"
	"github.com/qpki/qpki/pkg/keyfile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/server"
)

func newCOSECmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cose", Short: "Sign, verify and inspect COSE messages and CBOR Web Tokens"}
	cmd.AddCommand(newCOSESignCmd(), newCOSEVerifyCmd(), newCOSEInfoCmd())
	return cmd
}

// coseSignFlags are the options of `cose sign`.
type coseSignFlags struct {
	typ, data, contentType, out string
	detached, fully, noChain    bool
	claims                      cose.ClaimFlags
	kids, algs                  []string

	// Key sources: key files, the CA (through its pipeline), HSM keys, a
	// credential.
	certs, keys []string
	passEnv     string
	caDir       string
	class       string
	hsmConfig   string
	labels      []string
	algorithm   string
	credential  string
	credDir     string
}

func newCOSESignCmd() *cobra.Command {
	var f coseSignFlags
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Sign a CWT, a COSE_Sign1 or a COSE_Sign message",
		Long: `sign makes a CBOR Web Token (--type cwt, the default without --data) or a
COSE_Sign1 / COSE_Sign message over --data. Each signer's certificate chain
goes in the x5chain header, so that ` + "`qpki cose verify --ca`" + ` needs only the CA
certificate. iat and cti are set automatically.

The key comes from one of:
  --cert C --key K          a certificate (with its chain) and its key file;
                            repeat the pair for a hybrid COSE_Sign token
                            (e.g. ECDSA + ML-DSA: every signature must hold)
  --ca-dir D                the CA's own key, through the running server's
                            queue or in process (the CA certificate must
                            allow digitalSignature)
  --hsm-config F --key-label L --cert C
                            a key in an HSM (--algorithm A without --cert)
  --credential ID           a credential's key and certificate (--cred-dir, default <ca-dir>/credentials)`,
		Example: `  qpki cose sign --cert signer.crt --key signer.key --iss qpki --sub device-7 --exp 24h -o token.cbor
  qpki cose sign --type sign1 --cert signer.crt --key signer.key --data fw.bin --content-type application/octet-stream -o fw.cose
  qpki cose sign --type cwt --cert ec.crt --key ec.key --cert mldsa.crt --key mldsa.key --sub hybrid -o hybrid.cbor
  qpki cose sign --ca-dir ./tokens-ca --sub device-7 --aud api --exp 1h --claim role=reader -o token.cbor`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.typ, "type", "", "cwt, sign1 or sign (default: cwt, or sign1/sign with --data)")
	fl.StringVar(&f.data, "data", "", "payload file for a sign1 or sign message")
	fl.BoolVar(&f.detached, "detached", false, "leave the payload out of the message (it is still signed)")
	fl.StringVar(&f.contentType, "content-type", "", "media type or CoAP content format of the payload")
	fl.StringVar(&f.claims.Issuer, "iss", "", "CWT issuer claim")
	fl.StringVar(&f.claims.Subject, "sub", "", "CWT subject claim")
	fl.StringArrayVar(&f.claims.Audience, "aud", nil, "CWT audience claim (repeatable)")
	fl.StringVar(&f.claims.Expiry, "exp", "", "CWT expiry: a duration from now (24h, 30d), an RFC 3339 time or Unix seconds")
	fl.StringVar(&f.claims.NotBefore, "nbf", "", "CWT not-before, in the same forms as --exp")
	fl.StringArrayVar(&f.claims.Claims, "claim", nil, "other claim: key=text or key:=json (repeatable; a decimal key is an integer key)")
	fl.StringArrayVar(&f.kids, "kid", nil, "key identifier (text), one per signer in order")
	fl.StringArrayVar(&f.algs, "alg", nil, "COSE algorithm per signer in order (e.g. PS512 for an RSA key); default from the key")
	fl.BoolVar(&f.fully, "fully-specified", false, "use the fully specified algorithm identifiers of RFC 9864 (ESP256, Ed25519, ...)")
	fl.BoolVar(&f.noChain, "no-x5chain", false, "leave the certificate chains out of the message")
	fl.StringArrayVar(&f.certs, "cert", nil, "signer certificate file, leaf first, with its chain (repeatable, paired with --key or --key-label)")
	fl.StringArrayVar(&f.keys, "key", nil, "signer private key file (repeatable)")
	fl.StringVar(&f.passEnv, "passphrase-env", "", "environment variable holding the key passphrase (with --ca-dir, default QPKI_CA_PASSPHRASE)")
	fl.StringVar(&f.caDir, "ca-dir", "", "sign with this CA's key, through its server's queue or in process")
	fl.StringVar(&f.class, "class", "", "queue class of a --ca-dir job: interactive (default) or batch")
	fl.StringVar(&f.hsmConfig, "hsm-config", "", "HSM config of --key-label keys (with --ca-dir: overrides the CA's)")
	fl.StringArrayVar(&f.labels, "key-label", nil, "label of an HSM key (repeatable, paired with --cert)")
	fl.StringVar(&f.algorithm, "algorithm", "", "algorithm of an HSM key that has no --cert (e.g. ecdsa-p256, ml-dsa-65)")
	fl.StringVar(&f.credential, "credential", "", "sign with a credential's key and certificate")
	fl.StringVar(&f.credDir, "cred-dir", "", "credentials directory")
	addOutFlag(cmd, &f.out)
	return cmd
}

func (f *coseSignFlags) run(cmd *cobra.Command) error {
	if f.out == "" && term.IsTerminal(int(os.Stdout.Fd())) {
		return errors.New("a COSE message is binary: write it to a file with --out")
	}
	req, err := f.request(cmd)
	if err != nil {
		return err
	}
	sources := 0
	for _, set := range []bool{len(f.keys) > 0, f.caDir != "", len(f.labels) > 0, f.credential != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return errors.New("give one signing key source: --cert/--key, --ca-dir, --hsm-config/--key-label or --credential")
	}
	var msg []byte
	switch {
	case f.caDir != "":
		msg, err = f.signWithCA(cmd.Context(), req)
	case f.credential != "":
		msg, err = f.signWithCredential(req)
	default:
		msg, err = f.signWithKeys(req)
	}
	if err != nil {
		return err
	}
	if f.out != "" {
		fmt.Fprintf(os.Stderr, "wrote a %d-byte %s to %s\n", len(msg), typeName(req.Type), f.out)
	}
	return writeOut(f.out, msg, 0o644)
}

func typeName(t cose.Type) string {
	switch t {
	case cose.TypeCWT:
		return "CWT"
	case cose.TypeSign:
		return "COSE_Sign message"
	case cose.TypeSign1:
		return "COSE_Sign1 message"
	}
	return "COSE message"
}

// request turns the flags into a sign request.
func (f *coseSignFlags) request(cmd *cobra.Command) (cose.SignRequest, error) {
	req := cose.SignRequest{ContentType: f.contentType, Detached: f.detached, FullySpecified: f.fully,
		OmitX5Chain: f.noChain, Algorithms: f.algs}
	if f.typ != "" {
		t, err := cose.ParseType(f.typ)
		if err != nil {
			return req, err
		}
		req.Type = t
	} else if f.data == "" {
		req.Type = cose.TypeCWT
	}
	claimsGiven := false
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "claim"} {
		claimsGiven = claimsGiven || cmd.Flags().Changed(name)
	}
	if req.Type == cose.TypeCWT {
		if f.data != "" {
			return req, errors.New("a CWT's payload is its claims: use --iss, --sub, --aud, --exp, --nbf and --claim, not --data")
		}
		c, err := f.claims.Build(time.Now())
		if err != nil {
			return req, err
		}
		req.Claims = c
	} else {
		if claimsGiven {
			return req, errors.New("claims (--iss, --sub, --aud, --exp, --nbf, --claim) need --type cwt")
		}
		if f.data == "" {
			return req, errors.New("--type " + string(req.Type) + " needs --data FILE")
		}
		data, err := readLimited(f.data, cose.DefaultMaxSize)
		if err != nil {
			return req, err
		}
		req.Payload = data
	}
	switch len(f.kids) {
	case 0:
	case 1:
		req.KID = []byte(f.kids[0])
	default:
		for _, k := range f.kids {
			req.KIDs = append(req.KIDs, []byte(k))
		}
	}
	return req, nil
}

// signWithCA signs through the CA's pipeline: a job on the running
// server's queue, or in process when no server holds the CA.
func (f *coseSignFlags) signWithCA(ctx context.Context, req cose.SignRequest) ([]byte, error) {
	if len(f.certs) > 0 || len(f.labels) > 0 {
		return nil, errors.New("--ca-dir signs with the CA's key and chain; leave out --cert and --key-label")
	}
	env := f.passEnv
	if env == "" {
		env = "QPKI_CA_PASSPHRASE"
	}
	p, err := server.OpenPipeline(f.caDir, ca.KeyOptions{Passphrase: passphrase(env, false), HSMConfig: f.hsmConfig}, 1)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	st, err := server.SignCOSE(ctx, p, server.COSERequest{Request: req, Key: "cose-" + randomID(), Class: f.class, Wait: 2 * time.Minute})
	if err != nil {
		return nil, err
	}
	switch st.State {
	case store.JobFailed:
		return nil, errors.New(st.Error)
	case store.JobQueued:
		return nil, fmt.Errorf("COSE job %s is still queued", st.JobID)
	}
	return st.DER, nil
}

// signWithKeys signs in process with key files or HSM keys.
func (f *coseSignFlags) signWithKeys(req cose.SignRequest) ([]byte, error) {
	n := len(f.keys) + len(f.labels)
	if len(f.certs) != 0 && len(f.certs) != n {
		return nil, fmt.Errorf("%d --cert for %d keys: give one certificate per key, in the same order", len(f.certs), n)
	}
	if len(f.labels) > 0 && f.hsmConfig == "" {
		return nil, errors.New("--key-label needs --hsm-config")
	}
	if f.algorithm != "" && len(f.labels) == 0 {
		return nil, errors.New("--algorithm applies to HSM keys (--key-label) only")
	}
	chains := make([][]*x509.Certificate, len(f.certs))
	for i, c := range f.certs {
		var err error
		if chains[i], err = readCertFile(c); err != nil {
			return nil, err
		}
	}
	signers := make([]cose.Signer, 0, n)
	for _, k := range f.keys {
		s, err := fileSigner(k, f.passEnv)
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	for i, label := range f.labels {
		a, err := f.hsmAlgorithm(chains, i)
		if err != nil {
			return nil, err
		}
		s, err := hsm.OpenSigner(f.hsmConfig, hsm.KeyRef{Label: label}, a)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		signers = append(signers, s)
	}
	return cose.Sign(rand.Reader, req, signers, chains)
}

// signWithCredential signs with a credential's key (a file or an HSM key,
// as its credential.meta.json records) and puts its certificate, and the
// issuing CA's chain when the credential dir lies in a CA dir, in x5chain.
func (f *coseSignFlags) signWithCredential(req cose.SignRequest) ([]byte, error) {
	dir := f.credDir
	if dir == "" {
		dir = filepath.Join(defaultCADir(), "credentials")
	}
	s, leaf, err := credential.Signer(dir, f.credential, credential.OpenOptions{HSMConfig: f.hsmConfig, Passphrase: passphrase(f.passEnv, false)})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	chain := []*x509.Certificate{leaf}
	if c, err := ca.Open(filepath.Dir(filepath.Clean(dir))); err == nil {
		if cc, err := c.Chain(""); err == nil {
			chain = append(chain, cc...)
		}
	}
	return cose.Sign(rand.Reader, req, []cose.Signer{s}, [][]*x509.Certificate{chain})
}

// hsmAlgorithm is the algorithm of the i-th HSM key: the one its
// certificate names, or --algorithm; never guessed from the token.
func (f *coseSignFlags) hsmAlgorithm(chains [][]*x509.Certificate, i int) (algo.Algorithm, error) {
	if len(chains) > 0 {
		return x509x.KeyAlgorithm(chains[i][0])
	}
	if f.algorithm == "" {
		return "", errors.New("an HSM key needs its certificate (--cert) or --algorithm")
	}
	return algo.Parse(f.algorithm)
}

func fileSigner(path, passEnv string) (algo.Signer, error) {
	priv, err := keyfile.Read(path, passphrase(passEnv, false))
	if err != nil {
		return nil, err
	}
	pub, err := algo.PublicKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	a, err := algo.Of(pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return algo.NewSigner(priv, a)
}

func newCOSEVerifyCmd() *cobra.Command {
	var caFiles, untrusted, pubFiles []string
	var data, aad, aud, typ, at string
	var skew time.Duration
	var minSigs int
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify a COSE message or CWT: chains, signatures, exp and nbf",
		Long: `verify checks every signature of the message: the signer's x5chain up to a
--ca certificate (or a --pubkey for signers without x5chain), then the
signature; for a CWT, exp and nbf with --skew of tolerance. A hybrid
COSE_Sign token is valid only when every signature holds; --min-signatures 2
also refuses a hybrid token stripped of a signature.`,
		Example: `  qpki cose verify token.cbor --ca ca.crt
  qpki cose verify fw.cose --ca root.crt --untrusted sub.crt --data fw.bin
  qpki cose verify hybrid.cbor --ca ec-root.crt --ca mldsa-root.crt --min-signatures 2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			msg, err := readLimited(args[0], cose.DefaultMaxSize)
			if err != nil {
				return err
			}
			o := cose.VerifyOptions{Audience: aud, MinSignatures: minSigs, ClockSkew: skew}
			if skew == 0 {
				o.ClockSkew = -1 // none, as asked
			}
			if typ != "" {
				if o.Type, err = cose.ParseType(typ); err != nil {
					return err
				}
			}
			for _, f := range caFiles {
				cs, err := readCertFile(f)
				if err != nil {
					return err
				}
				o.Roots = append(o.Roots, cs...)
			}
			for _, f := range untrusted {
				cs, err := readCertFile(f)
				if err != nil {
					return err
				}
				o.Intermediates = append(o.Intermediates, cs...)
			}
			for _, f := range pubFiles {
				pub, err := readPublicKey(f)
				if err != nil {
					return err
				}
				o.PublicKeys = append(o.PublicKeys, pub)
			}
			if data != "" {
				if o.Detached, err = readLimited(data, cose.DefaultMaxSize); err != nil {
					return err
				}
			}
			if aad != "" {
				if o.ExternalAAD, err = readLimited(aad, cose.DefaultMaxSize); err != nil {
					return err
				}
			}
			if at != "" {
				if o.Now, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--at: %v", err)
				}
			}
			m, err := cose.Verify(msg, o)
			if err != nil {
				return fmt.Errorf("%s: verification failed: %v", args[0], err)
			}
			return writeVerified(os.Stdout, args[0], m)
		},
	}
	cmd.Flags().StringArrayVar(&caFiles, "ca", nil, "trust anchor certificate file (repeatable)")
	cmd.Flags().StringArrayVar(&untrusted, "untrusted", nil, "intermediate certificates, for messages whose x5chain holds only the leaf (repeatable)")
	cmd.Flags().StringArrayVar(&pubFiles, "pubkey", nil, "public key trusted as is, for signers without x5chain (repeatable)")
	cmd.Flags().StringVar(&data, "data", "", "the payload of a detached message")
	cmd.Flags().StringVar(&aad, "external-aad", "", "file of external additional authenticated data")
	cmd.Flags().StringVar(&aud, "aud", "", "require this audience in a CWT")
	cmd.Flags().StringVar(&typ, "type", "", "require this message type: cwt, sign1 or sign")
	cmd.Flags().IntVar(&minSigs, "min-signatures", 0, "require at least this many signatures (2 for hybrid tokens)")
	cmd.Flags().DurationVar(&skew, "skew", cose.DefaultClockSkew, "clock skew tolerated on exp and nbf")
	cmd.Flags().StringVar(&at, "at", "", "verify at this time (RFC 3339) instead of now")
	return cmd
}

// writeVerified prints what was verified: each signer's algorithm and
// path, and a token's claims.
func writeVerified(w io.Writer, name string, m *cose.Message) error {
	what := map[cose.Type]string{cose.TypeCWT: "CWT", cose.TypeSign1: "COSE_Sign1", cose.TypeSign: "COSE_Sign"}[m.Type]
	fmt.Fprintf(w, "%s: OK (%s, %d signature(s))\n", name, what, len(m.Signatures))
	for i, s := range m.Signatures {
		signer := "a trusted public key"
		if len(s.Chain) > 0 {
			var names []string
			for _, c := range s.Chain {
				names = append(names, c.Subject.String())
			}
			signer = strings.Join(names, " <- ")
		}
		fmt.Fprintf(w, "  [%d] %s: %s\n", i+1, s.Alg(), signer)
	}
	if c := m.Claims; c != nil {
		for _, kv := range [][2]string{{"iss", c.Issuer}, {"sub", c.Subject}, {"aud", strings.Join(c.Audience, ", ")}} {
			if kv[1] != "" {
				fmt.Fprintf(w, "  %s: %s\n", kv[0], kv[1])
			}
		}
		if !c.Expiry.IsZero() {
			fmt.Fprintf(w, "  exp: %s\n", c.Expiry.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func newCOSEInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info FILE",
		Short: "Describe a COSE message or CWT (headers, claims, signers) without verifying it",
		Example: `  qpki cose info token.cbor
  qpki cose info --json token.cbor`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			msg, err := readLimited(args[0], cose.DefaultMaxSize)
			if err != nil {
				return err
			}
			if asJSON {
				d, err := cose.Describe(msg)
				if err != nil {
					return fmt.Errorf("%s: %v", args[0], err)
				}
				return printJSON(os.Stdout, d)
			}
			if err := cose.Info(os.Stdout, msg); err != nil {
				return fmt.Errorf("%s: %v", args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}
