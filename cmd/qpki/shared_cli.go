package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/acme/eab"
	"github.com/qpki/qpki/pkg/store/jskv"
	"github.com/qpki/qpki/server"
)

// sharedState names the buckets of a clustered CA (serve --store
// jetstream) that the est user and acme eab commands change instead of
// the data dir's files.
type sharedState struct {
	store  string
	cfg    server.Config
	caName string
	caDir  string
}

func (s *sharedState) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&s.store, "store", "", "jetstream: change the state that serve --store jetstream front-ends share, in the cluster at --nats-url (default: the --data-dir file)")
	addNATSFlags(cmd, &s.cfg)
	fl.Lookup("nats-url").Usage = "NATS server or cluster of the serve --store jetstream front-ends"
	fl.StringVar(&s.caName, "ca", "", "with --store jetstream: the CA's name in the buckets (default: from --ca-dir, as serve names it)")
	fl.StringVar(&s.caDir, "ca-dir", "", "with --store jetstream: the CA directory, to name the CA")
}

// shared reports whether the command works on the cluster, and refuses
// half a set of flags.
func (s *sharedState) shared() (bool, error) {
	switch s.store {
	case "", server.StoreBolt:
		if s.cfg.NATSURL != "" || s.caName != "" || s.caDir != "" {
			return false, errors.New("--nats-url, --ca and --ca-dir go with --store jetstream")
		}
		return false, nil
	case server.StoreJetStream:
		if s.cfg.NATSURL == "" {
			return false, errors.New("--store jetstream needs --nats-url")
		}
		if s.caName == "" && s.caDir == "" {
			return false, errors.New("--store jetstream needs --ca NAME or --ca-dir DIR")
		}
		return true, nil
	}
	return false, errors.New("--store: want " + server.StoreJetStream + " (or none for the --data-dir file)")
}

// records opens the CA's bucket with the given suffix; close ends the
// connection.
func (s *sharedState) records(ctx context.Context, suffix string) (r *jskv.Records, close func(), err error) {
	name, err := auditCAName(s.caName, s.caDir)
	if err != nil {
		return nil, nil, err
	}
	nc, js, err := natsJetStream(s.cfg)
	if err != nil {
		return nil, nil, err
	}
	r, err = jskv.OpenRecords(ctx, js, jskv.Options{CA: name, Replicas: server.StreamReplicas(ctx, js)}, suffix)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return r, func() { nc.Close() }, nil
}

// eabKeys opens the external account keys of the shared ACME bucket,
// moving there those of the EAB bucket of earlier versions first.
func (s *sharedState) eabKeys(ctx context.Context) (eab.Store, func(), error) {
	name, err := auditCAName(s.caName, s.caDir)
	if err != nil {
		return nil, nil, err
	}
	nc, js, err := natsJetStream(s.cfg)
	if err != nil {
		return nil, nil, err
	}
	o := jskv.Options{CA: name, Replicas: server.StreamReplicas(ctx, js), Instance: "cli"}
	st, err := jskv.OpenACME(ctx, js, o)
	if err == nil {
		var old *jskv.Records
		if old, err = jskv.OpenRecords(ctx, js, o, jskv.BucketEAB); err == nil {
			_, err = eab.MigrateRecords(old, st)
		}
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return eab.InStore(st), func() { nc.Close() }, nil
}
