package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/keyfile"
)

// tlsProfile is the profile the served CA issues its own listener's
// certificate from, by the CA key's family.
func tlsProfile(c *ca.CA) (string, error) {
	_, v, err := c.Version("")
	if err != nil {
		return "", err
	}
	a, err := algo.Parse(v.Algos[0])
	if err != nil {
		return "", err
	}
	switch {
	case len(v.Algos) == 1 && a.Family() == algo.FamilyECDSA:
		return "ec/tls-server", nil
	case len(v.Algos) == 1 && a.Family() == algo.FamilyRSA:
		return "rsa/tls-server", nil
	}
	return "", fmt.Errorf("the CA signs with %v, which TLS clients cannot verify: give --tls-cert and --tls-key "+
		"(for example a certificate from an ECDSA CA: `qpki ca init --profile ec/root-ca ...` then `qpki cert issue --profile ec/tls-server ...`)", v.Algos)
}

// listenerCertificate returns the HTTPS certificate: the configured files,
// or one the served CA issues through the pipeline for the listen host,
// kept in the data dir and renewed when it nears its end.
func listenerCertificate(ctx context.Context, core *Core) (tls.Certificate, error) {
	cfg := core.cfg
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return tls.Certificate{}, errors.New("--tls-cert and --tls-key go together")
		}
		return tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--listen %q: %v", cfg.Listen, err)
	}
	dir := filepath.Join(cfg.DataDir, "tls")
	certPath, keyPath := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && pair.Leaf != nil &&
		time.Until(pair.Leaf.NotAfter) > 30*24*time.Hour && pair.Leaf.VerifyHostname(hostOrLocal(host)) == nil &&
		issuedBy(pair.Leaf, core.CA) {
		return pair, nil
	}
	prof, err := tlsProfile(core.CA)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	if prof == "rsa/tls-server" {
		return tls.Certificate{}, errors.New("an RSA CA's listener certificate needs an RSA key: give --tls-cert and --tls-key")
	}
	s, _ := algo.NewSigner(key, algo.ECDSAP256)
	// The name is the listen host, or localhost for an IP address (which
	// goes in the IP SAN).
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"}}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else if h := hostOrLocal(host); h != "localhost" {
		tmpl.Subject.CommonName, tmpl.DNSNames = h, []string{h}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1))
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, s)
	if err != nil {
		return tls.Certificate{}, err
	}
	vars := map[string]any{}
	if len(tmpl.IPAddresses) > 0 {
		ips := ""
		for i, ip := range tmpl.IPAddresses {
			if i > 0 {
				ips += ","
			}
			ips += ip.String()
		}
		vars["ip_addresses"] = ips
	}
	id, err := core.Enroll.Submit(ctx, enroll.Request{Profile: prof, CSR: csr, Vars: vars,
		Key: "serve-tls-" + time.Now().UTC().Format(time.RFC3339Nano), Principal: enroll.Operator(enroll.FrontendServe, "qpki serve")})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing the listener certificate: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := core.Enroll.Wait(wctx, id)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing the listener certificate: %w", err)
	}
	if err := res.Err(); err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing the listener certificate: %w", err)
	}
	chain, err := core.CA.Chain("")
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: res.DER})
	certPEM = append(certPEM, ca.EncodeCerts(chain[:len(chain)-1]...)...)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	os.Remove(keyPath)
	if err := keyfile.Write(keyPath, key, nil); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

func hostOrLocal(h string) string {
	if h == "" || h == "0.0.0.0" || h == "::" {
		return "localhost"
	}
	return h
}

func issuedBy(leaf *x509.Certificate, c *ca.CA) bool {
	cert, err := c.Certificate("")
	return err == nil && leaf.CheckSignatureFrom(cert) == nil
}
