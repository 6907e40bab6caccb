package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/scep"
	"github.com/qpki/qpki/server"
)

// The SCEP front-end's part of `qpki serve`.
func init() {
	var configFile string
	var wait time.Duration
	var enabled bool
	frontends = append(frontends, frontend{
		flags: func(cmd *cobra.Command) {
			fl := cmd.Flags()
			fl.BoolVar(&enabled, "scep", true, "answer SCEP at "+scep.PathPrefix+" and "+scep.PathPrefix+"/<label> (HTTPS and --http-listen)")
			fl.StringVar(&configFile, "scep-config", "", "SCEP labels (YAML): default: for /scep and each /scep/<label>, with its ca, profile, challenge (one-time, static, webhook), legacy_des and name policy")
			fl.DurationVar(&wait, "scep-wait", scep.DefaultWait, "how long a SCEP request waits for its certificate before the answer is PENDING")
		},
		build: func(cfg server.Config) (server.Frontend, error) {
			if !enabled {
				return nil, nil
			}
			if wait <= 0 {
				return nil, errors.New("--scep-wait must be positive")
			}
			// With a --scep-config the RA is made at start; without, when
			// SCEP is first used, so that a serve without SCEP clients
			// issues nothing for it.
			o := scep.Options{DataDir: cfg.DataDir, Wait: wait, Log: cfg.Log, IssueRAAtStart: configFile != ""}
			if configFile != "" {
				if err := scep.LoadConfig(configFile, &o); err != nil {
					return nil, err
				}
			}
			// A label's ca: names the CA by its directory's base name;
			// serve hosts one today.
			name := filepath.Base(cfg.CADir)
			for _, l := range append([]*scep.Label{o.Default}, labelsOf(o)...) {
				if l != nil && l.CA != "" && l.CA != name {
					return nil, fmt.Errorf("--scep-config: ca %q: this server hosts only CA %q", l.CA, name)
				}
			}
			if cfg.Store == server.StoreJetStream {
				o.OpenChallenges = func(svc *enroll.Service) (scep.ChallengeStore, error) {
					r, err := server.SharedRecords(context.Background(), cfg, svc, scep.BucketChallenges)
					if err != nil {
						return nil, err
					}
					return scep.SharedChallenges(r), nil
				}
			}
			return scep.New(o)
		},
	})
}

func labelsOf(o scep.Options) []*scep.Label {
	var out []*scep.Label
	for _, l := range o.Labels {
		out = append(out, l)
	}
	return out
}
