package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/ocsp"
	"github.com/qpki/qpki/server"
)

// The OCSP responder's part of `qpki serve`.
func init() {
	var enabled, nonce bool
	var validity time.Duration
	var url string
	frontends = append(frontends, frontend{
		flags: func(cmd *cobra.Command) {
			fl := cmd.Flags()
			fl.BoolVar(&enabled, "ocsp", true, "answer OCSP at "+ocsp.Path+" (HTTPS and --http-listen), responses pre-signed through the queue")
			fl.DurationVar(&validity, "ocsp-validity", ocsp.DefaultValidity, "life of an OCSP response (thisUpdate to nextUpdate); re-signed at half of it")
			fl.BoolVar(&nonce, "ocsp-nonce", false, "sign a fresh response for a request with a nonce (RFC 8954), rate-limited per client; off, the pre-signed one is served")
			fl.StringVar(&url, "ocsp-url", "", "OCSP URL put into the AIA of every certificate whose profile leaves ocsp_url unset (e.g. http://ocsp.example.com/ocsp)")
		},
		build: func(cfg server.Config) (server.Frontend, error) {
			if !enabled {
				return nil, nil
			}
			if validity < time.Hour || validity > 366*24*time.Hour {
				return nil, errors.New("--ocsp-validity must be between 1h and 366 days")
			}
			return &ocsp.Frontend{URL: url, Options: ocsp.Options{Validity: validity, Nonce: nonce, Log: cfg.Log}}, nil
		},
	})
}
