// Command qpki-chaos runs the chaos test of `make chaos`: a qpki
// deployment of real processes on loopback under a mixed load while
// faults are injected at random, seeded intervals, and fails unless
// every request got one answer, no certificate or serial is duplicated,
// the audit chain holds and issuance came back within seconds of each
// fault. See internal/chaos.
//
//	qpki-chaos -duration 5m [-seed N] [-bin build] [-keep]
//
// It also runs one NATS node of the cluster when called as
// `qpki-chaos nats-node ...`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/qpki/qpki/internal/chaos"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == chaos.NATSNodeCommand {
		if err := chaos.RunNATSNode(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	var cfg chaos.Config
	flag.DurationVar(&cfg.Duration, "duration", envDuration("CHAOS_DURATION", 5*time.Minute), "how long the load and the faults run (default $CHAOS_DURATION or 5m)")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "seed of the fault schedule (printed, to repeat a run)")
	flag.StringVar(&cfg.BinDir, "bin", "build", "directory with qpki, qpki-testtokend and libqpki-testtoken.so (make build testtoken)")
	flag.StringVar(&cfg.WorkDir, "dir", "", "parent directory of the run's files (default: the system's temporary directory)")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the run's directory even when it passes")
	flag.DurationVar(&cfg.AckWait, "ack-wait", 0, "AckWait of the queue, which a stopped worker outlasts (default: from `qpki worker --help`)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := chaos.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "qpki-chaos:", err)
		os.Exit(1)
	}
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "qpki-chaos: $%s=%q is not a duration; using %s\n", name, v, def)
	}
	return def
}
