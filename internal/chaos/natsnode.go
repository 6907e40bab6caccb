package chaos

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSNodeCommand is the argument that makes the chaos binary run one
// node of the cluster instead of the harness: the nodes are processes of
// their own, so that kill -9 of one is real.
const NATSNodeCommand = "nats-node"

// RunNATSNode runs a clustered JetStream nats-server on loopback until
// SIGTERM or SIGINT.
func RunNATSNode(args []string) error {
	fs := flag.NewFlagSet(NATSNodeCommand, flag.ContinueOnError)
	name := fs.String("name", "", "server name")
	port := fs.Int("port", 0, "client port")
	clusterPort := fs.Int("cluster-port", 0, "route port")
	routes := fs.String("routes", "", "comma-separated route ports of the other nodes")
	store := fs.String("store", "", "JetStream store directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *port == 0 || *clusterPort == 0 || *store == "" {
		return errors.New("nats-node: -name, -port, -cluster-port and -store are required")
	}
	var urls []string
	for _, p := range strings.Split(*routes, ",") {
		if p != "" {
			urls = append(urls, "nats-route://"+loopback+":"+p)
		}
	}
	o := &server.Options{
		ServerName: *name,
		Host:       loopback,
		Port:       *port,
		JetStream:  true,
		StoreDir:   *store,
		NoSigs:     true,
		Cluster:    server.ClusterOpts{Name: "qpki-chaos", Host: loopback, Port: *clusterPort},
		Routes:     server.RoutesFromStr(strings.Join(urls, ",")),
		// Loopback only: no monitoring, no leaf nodes, no gateways.
		HTTPPort: 0,
	}
	s, err := server.NewServer(o)
	if err != nil {
		return err
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		return fmt.Errorf("nats-node %s: not ready", *name)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
