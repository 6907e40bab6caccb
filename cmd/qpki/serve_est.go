package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/acme/ratelimit"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/est"
	"github.com/qpki/qpki/pkg/store/jskv"
	"github.com/qpki/qpki/server"
)

// The EST front-end's part of `qpki serve`.
func init() {
	var configFile, profile, clientCA, rateIP, ratePrincipal string
	var rateExempt []string
	var binding bool
	var cacheTTL time.Duration
	var cacheSize, checks int
	frontends = append(frontends, frontend{
		flags: func(cmd *cobra.Command) {
			fl := cmd.Flags()
			fl.StringVar(&configFile, "est-config", "", "EST labels (YAML): default: for /.well-known/est/ and each /.well-known/est/<label>/, with its profile, name policy and authentication rules")
			fl.StringVar(&profile, "est-profile", est.DefaultProfile, "profile of the unlabelled /.well-known/est/ endpoints")
			fl.StringVar(&clientCA, "est-client-ca", "", "PEM trust anchors for EST client certificates on simpleenroll and serverkeygen (e.g. a device manufacturer's CA)")
			fl.BoolVar(&binding, "est-channel-binding", false, "require the TLS channel binding (tls-unique, or tls-exporter for TLS 1.3) in the CSR's challengePassword")
			fl.DurationVar(&cacheTTL, "est-auth-cache-ttl", est.DefaultAuthCacheTTL, "how long a verified EST HTTP Basic credential is remembered (0: hash every request)")
			fl.IntVar(&cacheSize, "est-auth-cache-size", est.DefaultAuthCacheMax, "most verified EST HTTP Basic credentials remembered")
			fl.IntVar(&checks, "est-auth-max-checks", runtime.GOMAXPROCS(0), "most EST password (argon2id) checks at once; more are refused with 503 and Retry-After")
			fl.StringVar(&rateIP, "est-rate-ip", est.DefaultRateIP, "EST requests per client IP address (IPv6: per /64), RATE[/s|/m|/h][:BURST], 0 for none")
			fl.StringVar(&ratePrincipal, "est-rate-principal", est.DefaultRatePrincipal, "EST enrollments per authenticated user or client certificate")
			fl.StringArrayVar(&rateExempt, "est-rate-exempt", nil, "IP addresses, CIDR networks and principals (user:NAME) no EST limit applies to")
		},
		build: func(cfg server.Config) (server.Frontend, error) {
			o := est.Options{Profile: profile, ChannelBinding: binding, DataDir: cfg.DataDir, AuthCacheTTL: cacheTTL, AuthCacheMax: cacheSize,
				MaxPasswordChecks: checks, RateExempt: rateExempt}
			if cacheSize < 1 {
				return nil, errors.New("--est-auth-cache-size must be at least 1 (--est-auth-cache-ttl 0 turns the cache off)")
			}
			if checks < 1 {
				return nil, errors.New("--est-auth-max-checks must be at least 1")
			}
			var err error
			if o.RateIP, err = ratelimit.ParseLimit(rateIP); err != nil {
				return nil, fmt.Errorf("--est-rate-ip: %v", err)
			}
			if o.RatePrincipal, err = ratelimit.ParseLimit(ratePrincipal); err != nil {
				return nil, fmt.Errorf("--est-rate-principal: %v", err)
			}
			if clientCA != "" {
				certs, err := est.LoadCertificates(clientCA)
				if err != nil {
					return nil, err
				}
				o.ClientCAs = certs
			}
			if configFile != "" {
				if err := est.LoadConfig(configFile, &o); err != nil {
					return nil, err
				}
			}
			if cfg.Store == server.StoreJetStream {
				// Users live in a bucket reached through serve's queue.
				preview, err := est.New(est.Options{Profile: o.Profile, Default: o.Default, Labels: o.Labels, ClientCAs: o.ClientCAs}, nil)
				if err != nil {
					return nil, err
				}
				return &sharedFrontend{endpoints: preview.Endpoints(), build: func(svc *enroll.Service) (server.Frontend, error) {
					users, err := server.SharedRecords(context.Background(), cfg, svc, jskv.BucketESTUsers)
					if err != nil {
						return nil, err
					}
					o.Users = est.SharedUsers(users)
					return est.New(o, cfg.Log)
				}}, nil
			}
			return est.New(o, cfg.Log)
		},
	})
}
