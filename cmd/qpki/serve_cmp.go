package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/cmp"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/server"
)

// The CMP front-end's part of `qpki serve`.
func init() {
	var configFile string
	var wait time.Duration
	frontends = append(frontends, frontend{
		flags: func(cmd *cobra.Command) {
			fl := cmd.Flags()
			fl.StringVar(&configFile, "cmp-config", "", "CMP labels (YAML): default: for "+cmp.Path+" and each "+cmp.Path+"/p/<label>, with CA, profile, name policy and authentication")
			fl.DurationVar(&wait, "cmp-wait", cmp.DefaultWait, "how long a CMP request waits for its certificate before the answer is waiting and the client polls")
		},
		build: func(cfg server.Config) (server.Frontend, error) {
			o := cmp.Options{DataDir: cfg.DataDir, Wait: wait}
			if configFile == "" {
				return nil, nil
			}
			if err := cmp.LoadConfig(configFile, &o); err != nil {
				return nil, err
			}
			o.CAName = (&ca.CA{Dir: cfg.CADir}).Name()
			if cfg.Store == server.StoreJetStream {
				// Secrets and transactions live in buckets reached through
				// serve's queue, shared by every front-end.
				o.OpenRecords = func(svc *enroll.Service) (cmp.Records, cmp.Records, error) {
					s, err := server.SharedRecords(context.Background(), cfg, svc, cmp.BucketSecrets)
					if err != nil {
						return nil, nil, err
					}
					t, err := server.SharedRecords(context.Background(), cfg, svc, cmp.BucketTransactions)
					return s, t, err
				}
			}
			return cmp.New(o, cfg.Log)
		},
	})
}
