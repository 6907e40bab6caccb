package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/acme"
	"github.com/qpki/qpki/acme/eab"
	"github.com/qpki/qpki/acme/ratelimit"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store/jskv"
	"github.com/qpki/qpki/server"
)

// The ACME front-end's part of `qpki serve`.
func init() {
	var on bool
	var c acme.Config
	var ipLimit, orderLimit string
	var caa bool
	frontends = append(frontends, frontend{
		flags: func(cmd *cobra.Command) {
			fl := cmd.Flags()
			fl.BoolVar(&on, "acme", true, "serve ACME (RFC 8555) at https://HOST:PORT"+acme.DirectoryPath)
			fl.StringSliceVar(&c.Profiles, "acme-profiles", nil, "profiles offered over ACME, the first the default (default: the tls-server profile of the CA's algorithm family)")
			fl.IntVar(&c.HTTPPort, "acme-http-port", 80, "port http-01 validations connect to")
			fl.IntVar(&c.TLSPort, "acme-tls-port", 443, "port tls-alpn-01 validations connect to")
			fl.StringVar(&c.DNSResolver, "acme-dns-resolver", "", "DNS server (host:port) for dns-01, CAA and address lookups (default: the system's)")
			fl.StringVar(&c.ResolveTo, "acme-resolve-to", "", "send every http-01 and tls-alpn-01 validation to this IP address, which is then allowed (tests, closed networks)")
			fl.StringSliceVar(&c.ValidationAllow, "acme-validation-allow", nil, "special-purpose network (CIDR) validation may connect to and ip identifiers may be in (repeatable; closed networks, tests)")
			fl.DurationVar(&c.ValidationTimeout, "acme-validation-timeout", 10*time.Second, "time one challenge validation may take")
			fl.BoolVar(&caa, "acme-caa", true, "check CAA records (RFC 8659) at validation and again at finalize when the check is older than 8 hours; false only for closed networks (logged as a warning)")
			fl.StringSliceVar(&c.CAAIdentities, "acme-caa-identities", nil, "issuer domain names CAA records may name for this CA (directory meta.caaIdentities)")
			fl.StringVar(&c.TermsOfService, "acme-terms-of-service", "", "terms of service URL that new accounts must agree to")
			fl.StringVar(&c.Website, "acme-website", "", "website URL in the directory's meta")
			fl.BoolVar(&c.EABRequired, "acme-eab-required", false, "require an external account binding (keys from `qpki acme eab add`)")
			fl.StringVar(&c.ExternalURL, "acme-external-url", "", "base URL clients reach the server at (default: https:// and the request's Host)")
			fl.StringVar(&ipLimit, "acme-rate-ip", "100/s:200", "requests per client IP: RATE[/s|/m|/h][:BURST], 0 for none")
			fl.StringVar(&orderLimit, "acme-rate-orders", "100/m:300", "new orders per account: RATE[/s|/m|/h][:BURST], 0 for none")
			fl.StringSliceVar(&c.Exempt, "acme-rate-exempt", nil, "IP addresses, networks (CIDR) and account ids no rate limit applies to")
			fl.IntVar(&c.MaxIdentifiers, "acme-max-identifiers", 100, "identifiers one order may have (rejectedIdentifier beyond)")
			fl.IntVar(&c.MaxPendingAuthzs, "acme-max-pending-authzs", 100, "pending authorizations one account may have (rateLimited beyond)")
			fl.DurationVar(&c.ChallengeWait, "acme-challenge-wait", 5*time.Second, "how long a challenge request waits for its validation before answering processing")
			fl.DurationVar(&c.FinalizeWait, "acme-finalize-wait", 5*time.Second, "how long a finalize request waits for the certificate before answering processing")
			fl.DurationVar(&c.ValidAuthzLifetime, "acme-authz-lifetime", 30*24*time.Hour, "how long a valid authorization is reused across the account's orders")
		},
		build: func(cfg server.Config) (server.Frontend, error) {
			if !on {
				return nil, nil
			}
			c.DisableCAA = !caa
			var err error
			if c.IPLimit, err = ratelimit.ParseLimit(ipLimit); err != nil {
				return nil, fmt.Errorf("--acme-rate-ip: %v", err)
			}
			if c.OrderLimit, err = ratelimit.ParseLimit(orderLimit); err != nil {
				return nil, fmt.Errorf("--acme-rate-orders: %v", err)
			}
			if len(c.Profiles) == 0 {
				if c.Profiles, err = defaultACMEProfile(cfg.CADir); err != nil {
					return nil, err
				}
			}
			c.DataDir, c.Log = cfg.DataDir, cfg.Log
			if cfg.Store == server.StoreJetStream {
				return &sharedFrontend{endpoints: []string{acme.DirectoryPath}, build: func(svc *enroll.Service) (server.Frontend, error) {
					st, err := server.SharedACMEStore(context.Background(), cfg, svc)
					if err != nil {
						return nil, err
					}
					c.Store = st
					if c.Nonces, err = server.SharedNonces(context.Background(), cfg, svc, c.NonceLifetime); err != nil {
						return nil, err
					}
					// Keys of the EAB bucket of earlier versions move into
					// the ACME bucket, where accounts use them up.
					old, err := server.SharedRecords(context.Background(), cfg, svc, jskv.BucketEAB)
					if err != nil {
						return nil, err
					}
					if n, err := eab.MigrateRecords(old, st); err != nil {
						return nil, fmt.Errorf("moving the external account keys into the ACME bucket: %w", err)
					} else if n > 0 {
						cfg.Log.Info("acme: external account keys moved into the ACME bucket", "keys", n)
					}
					return acme.New(c)
				}}, nil
			}
			return acme.New(c)
		},
	})
}

// defaultACMEProfile is acme.DefaultProfiles of the served CA.
func defaultACMEProfile(caDir string) ([]string, error) {
	c, err := ca.Open(caDir)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return acme.DefaultProfiles(c), nil
}
