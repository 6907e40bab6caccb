package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/pkg/audit"
	"github.com/qpki/qpki/pkg/audit/jsaudit"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/store/jskv"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
)

// natsJetStream connects to the NATS server or cluster that the --nats-*
// flags name.
func natsJetStream(cfg server.Config) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("qpki-audit"), nats.Timeout(10 * time.Second)}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	if cfg.NATSNKey != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NATSNKey)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, o)
	}
	if cfg.NATSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSCA))
	}
	if cfg.NATSCert != "" || cfg.NATSKey != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSCert, cfg.NATSKey))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("NATS %s: %w", cfg.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// auditCAName is the CA's name in the audit stream: --ca, or that of the
// CA dir as serve derives it.
func auditCAName(name, dir string) (string, error) {
	if name != "" {
		return name, queue.CheckCA(name)
	}
	c, err := ca.Open(dir)
	if err != nil {
		return "", fmt.Errorf("%w (or name the CA with --ca)", err)
	}
	return server.QueueName(c), nil
}

// exportAuditStream reads a CA's audit stream as JSONL.
func exportAuditStream(ctx context.Context, cfg server.Config, name string) ([]byte, error) {
	nc, js, err := natsJetStream(cfg)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	var buf bytes.Buffer
	if _, err := jsaudit.Export(ctx, js, name, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// verifyAuditStream checks the audit stream's chain and that every
// certificate in the shared store has its issuance entry.
func verifyAuditStream(ctx context.Context, cfg server.Config, name string) (*audit.Report, int, error) {
	nc, js, err := natsJetStream(cfg)
	if err != nil {
		return nil, 0, err
	}
	defer nc.Close()
	var buf bytes.Buffer
	if _, err := jsaudit.Export(ctx, js, name, &buf); err != nil {
		return nil, 0, err
	}
	rep, err := audit.Verify(&buf)
	if err != nil {
		return rep, 0, err
	}
	if _, err := js.KeyValue(ctx, jskv.BucketName(name, "CERTS")); err != nil {
		return rep, 0, fmt.Errorf("the shared store of CA %s: %w", name, err)
	}
	st, err := jskv.Open(ctx, js, jskv.Options{CA: name})
	if err != nil {
		return rep, 0, err
	}
	certs, err := st.List(store.Filter{})
	if err != nil {
		return rep, 0, err
	}
	for _, c := range certs {
		if !rep.Serials[c.Serial] {
			return rep, len(certs), fmt.Errorf("certificate %s (%s) is in the store but not in the audit log: entries are missing", c.Serial, c.Subject)
		}
	}
	return rep, len(certs), nil
}
