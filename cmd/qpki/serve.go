package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/qpki/qpki/metrics"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/queue"
	"github.com/qpki/qpki/server"
	"github.com/qpki/qpki/worker"
)

// addAckWaitFlag adds --ack-wait, which serve and worker share: the job
// consumers are shared by every worker of a CA, and the last one to start
// sets them.
func addAckWaitFlag(cmd *cobra.Command, cfg *server.Config) {
	cmd.Flags().DurationVar(&cfg.AckWait, "ack-wait", queue.DefaultAckWait,
		"how soon a job held by a worker that died goes to another worker (workers report progress while they sign; give every worker of a CA the same value)")
}

// natsFlags reach an external NATS server or cluster.
func addNATSFlags(cmd *cobra.Command, cfg *server.Config) {
	fl := cmd.Flags()
	fl.StringVar(&cfg.NATSURL, "nats-url", "", "external NATS server or cluster (default: the embedded server)")
	fl.StringVar(&cfg.NATSCreds, "nats-creds", "", "NATS user credentials file")
	fl.StringVar(&cfg.NATSNKey, "nats-nkey", "", "NATS nkey seed file")
	fl.StringVar(&cfg.NATSCA, "nats-ca", "", "CA certificate for the NATS servers' TLS")
	fl.StringVar(&cfg.NATSCert, "nats-cert", "", "client certificate for NATS TLS")
	fl.StringVar(&cfg.NATSKey, "nats-key", "", "client key for NATS TLS")
}

func newLogger(format string) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

func newServeCmd() *cobra.Command {
	var cfg server.Config
	var configFile, passEnv, logFormat string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the CA: queue, workers, recorder and HTTPS front-ends in one process",
		Long: `serve runs everything for one CA: the embedded NATS JetStream queue (or an
external cluster with --nats-url), signing workers, the recorder that commits
results to the CA's store, the HTTPS listener (the front-ends, /healthz,
/readyz) and the ops listener (--ops-listen, plain HTTP on loopback by
default: /status, a status page, /status.json, /metrics, /healthz, /readyz).
Behind a load balancer, --trusted-proxies names the balancers whose
Forwarded / X-Forwarded-For headers or PROXY protocol (v1, v2) header give
the client's address.
CLI commands on the same CA dir go through serve's local socket while it
runs. SIGTERM stops taking work, finishes what is in flight and exits 0.

--store jetstream keeps the certificate index, serial reservations, jobs
and ACME accounts, orders and authorizations in JetStream key-value
buckets (QPKI_<ca>_CERTS, _SERIALS, _JOBS, _META, _ACME) and the audit log
in the stream QPKI_AUDIT_<ca>, replicated as the queue's streams are. Run
several serve front-ends with --nats-url on one cluster, each with a copy
of the CA dir (same directory name) and its own --data-dir; they share
the records and one hash chain (` + "`qpki audit export --nats-url`" + `).`,
		Example: `  qpki serve --ca-dir ./data/issuing --data-dir ./data --workers 2
  qpki serve --config qpki.yaml
  qpki serve --store jetstream --nats-url nats://10.0.0.5:4222,nats://10.0.0.6:4222 --ca-dir ./issuing --workers 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigFile(cmd, configFile); err != nil {
				return err
			}
			if err := checkStoreFlag(cfg); err != nil {
				return err
			}
			cfg.Keys = ca.KeyOptions{Passphrase: passphrase(passEnv, false), HSMConfig: cfg.HSMConfig}
			cfg.Log = newLogger(logFormat)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			var fronts []server.Frontend
			for _, mk := range frontends {
				f, err := mk.build(cfg)
				if err != nil {
					return err
				}
				if f != nil {
					fronts = append(fronts, f)
				}
			}
			s, err := server.Start(ctx, cfg, fronts...)
			if err != nil {
				return err
			}
			fmt.Printf("qpki serving %s\n  local API   %s\n  queue       %s\n", s.Core.CA.Dir, server.SocketPath(s.Core.CA.Dir), s.Core.Queue.URL())
			if s.OpsAddr != "" {
				fmt.Printf("  ops         http://%s/status  (/status.json, /metrics, /healthz, /readyz)\n", s.OpsAddr)
			}
			go func() {
				select {
				case <-s.HTTPSReady():
					fmt.Printf("  HTTPS       https://%s/  (/healthz, /readyz)\n", s.Addr)
					for _, f := range fronts {
						if d, ok := f.(interface{ Endpoints() []string }); ok {
							for _, ep := range d.Endpoints() {
								fmt.Printf("              https://%s%s\n", s.Addr, ep)
							}
						}
					}
				case <-ctx.Done():
				}
			}()
			err = s.Wait(ctx)
			s.Shutdown()
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.CADir, "ca-dir", defaultCADir(), "CA directory")
	fl.StringVar(&cfg.DataDir, "data-dir", "./data", "data directory (queue store, TLS key)")
	fl.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "HTTPS listen address")
	fl.StringVar(&cfg.OpsListen, "ops-listen", server.DefaultOpsListen, "plain-HTTP ops listener: /status, /status.json, /metrics, /healthz, /readyz (\"\": none)")
	fl.StringArrayVar(&cfg.TrustedProxies, "trusted-proxies", nil, "load balancer network (CIDR or address) whose Forwarded/X-Forwarded-For or PROXY protocol header gives the client address (repeatable)")
	fl.IntVar(&cfg.Workers, "workers", 2, "signer sessions in this process (0: leave signing to `qpki worker`)")
	fl.Float64Var(&cfg.Rate, "rate", 0, "maximum signatures per second (0: no limit)")
	addAckWaitFlag(cmd, &cfg)
	fl.StringVar(&cfg.HSMConfig, "hsm-config", "", "HSM config overriding the one in the CA dir")
	fl.StringVar(&cfg.TLSCert, "tls-cert", "", "HTTPS certificate (default: issued by the served CA)")
	fl.StringVar(&cfg.TLSKey, "tls-key", "", "HTTPS key")
	fl.StringVar(&cfg.Store, "store", server.StoreBolt, "where the CA's records live: bolt (ca.db, acme.db, audit.jsonl; one serve) or jetstream (key-value buckets and an audit stream on the NATS server or cluster, shared by several serve front-ends)")
	fl.StringVar(&configFile, "config", "", "YAML file with any of these settings")
	fl.StringVar(&passEnv, "passphrase-env", "QPKI_CA_PASSPHRASE", "environment variable with the CA key passphrase")
	fl.StringVar(&logFormat, "log-format", "text", "text or json")
	fl.BoolVar(&cfg.PublishCRL, "crl-publish", true, "keep the CA's CRL fresh and serve it at "+server.CRLPath)
	fl.IntVar(&cfg.CRLDays, "crl-days", 7, "validity of published CRLs, in days (regenerated at half-life)")
	fl.BoolVar(&cfg.CRLOnRevoke, "crl-on-revoke", false, "regenerate the CRL right after each revocation")
	fl.StringVar(&cfg.HTTPListen, "http-listen", "", "plain-HTTP listener for the CRL, OCSP and SCEP (e.g. :8080)")
	fl.StringVar(&cfg.CRLListen, "crl-listen", "", "alias of --http-listen")
	addNATSFlags(cmd, &cfg)
	for _, f := range frontends {
		f.flags(cmd)
	}
	return cmd
}

// frontend is a protocol front-end's part of `qpki serve`: its flags, and
// how to build it from them. Each front-end adds itself from its own file
// (serve_acme.go, serve_est.go) in an init function.
type frontend struct {
	flags func(cmd *cobra.Command)
	// build returns nil when the front-end is not enabled.
	build func(cfg server.Config) (server.Frontend, error)
}

var frontends []frontend

func newWorkerCmd() *cobra.Command {
	var cfg server.Config
	var passEnv, logFormat, opsListen string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run signing workers alone, against the queue of a qpki serve",
		Long: `worker signs a CA's jobs from NATS: it needs the NATS URL, the CA's
directory (metadata and certificates; the store stays with serve) and the
CA's keys (a file or, usually, an HSM). Without --nats-url it joins the
embedded server of the serve process whose --data-dir is given.`,
		Example: `  qpki worker --nats-url nats://10.0.0.5:4222 --nats-creds worker.creds --ca-dir ./ca --hsm-config hsm.yaml --workers 4
  qpki worker --data-dir ./data --ca-dir ./data/issuing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.Open(cfg.CADir)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			o := queue.Options{NATSURL: cfg.NATSURL, CredsFile: cfg.NATSCreds, NKeySeedFile: cfg.NATSNKey,
				TLSCAFile: cfg.NATSCA, TLSCertFile: cfg.NATSCert, TLSKeyFile: cfg.NATSKey, Name: "qpki-worker", Role: queue.RoleWorker}
			if cfg.NATSURL == "" {
				o.EmbeddedDataDir = server.QueueDir(cfg.DataDir)
			}
			q, err := queue.Connect(ctx, o)
			if err != nil {
				return err
			}
			defer q.Close()
			log := newLogger(logFormat)
			var observer worker.Observer
			if opsListen != "" {
				m := metrics.New()
				stopMetrics, err := server.ServeOps(opsListen, m, q, log)
				if err != nil {
					return err
				}
				defer stopMetrics()
				observer = m
			}
			err = worker.Run(ctx, c, q, worker.Options{Sessions: cfg.Workers, Rate: cfg.Rate, Log: log, Observer: observer,
				Consume: queue.ConsumeOptions{AckWait: cfg.AckWait},
				Keys:    ca.KeyOptions{Passphrase: passphrase(passEnv, false), HSMConfig: cfg.HSMConfig}, QueueName: server.QueueName(c)})
			if err == nil {
				log.Info("worker stopped")
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.CADir, "ca-dir", defaultCADir(), "CA directory")
	fl.StringVar(&cfg.DataDir, "data-dir", "./data", "data dir of the local serve whose embedded NATS to join")
	fl.IntVar(&cfg.Workers, "workers", 1, "signer sessions")
	fl.Float64Var(&cfg.Rate, "rate", 0, "maximum signatures per second (0: no limit)")
	addAckWaitFlag(cmd, &cfg)
	fl.StringVar(&cfg.HSMConfig, "hsm-config", "", "HSM config overriding the one in the CA dir")
	fl.StringVar(&passEnv, "passphrase-env", "QPKI_CA_PASSPHRASE", "environment variable with the CA key passphrase")
	fl.StringVar(&logFormat, "log-format", "text", "text or json")
	fl.StringVar(&opsListen, "ops-listen", "", "serve /metrics, /healthz and /readyz over plain HTTP on this address (e.g. 127.0.0.1:9464)")
	fl.StringVar(&opsListen, "metrics-listen", "", "alias of --ops-listen")
	addNATSFlags(cmd, &cfg)
	return cmd
}
