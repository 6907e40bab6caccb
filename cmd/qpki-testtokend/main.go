// Command qpki-testtokend is the daemon of the qpki test token, a PKCS#11
// 3.2 token for development and CI only. It is not a secure HSM.
//
// It plays the network HSM behind build/libqpki-testtoken.so: the library
// forwards every PKCS#11 call over a Unix socket, and the daemon keeps the
// tokens and does the cryptography (ML-DSA, SLH-DSA and ML-KEM with circl,
// ECDSA P-256/P-384 with Go's crypto). Each token lives in a directory
// under --dir; its private keys are sealed with AES-256-GCM under a token
// key that is itself wrapped under the SO PIN and the user PIN.
//
//	qpki-testtokend --dir D --socket S [--slots N] [--init-token LABEL[,LABEL...]]
//	                [--sign-latency DURATION] [--max-rate N]
//
// --sign-latency and --max-rate model a network HSM (a Luna, an nShield):
// every signature, each of a worker's batch too, waits its turn in a
// per-token bucket of N signatures/s shared by all sessions, then the
// latency. At exit the daemon logs per token the signatures, how many
// waited for the bucket, and the rate over the busy span.
//
// The library finds the daemon through QPKI_TESTTOKEN_SOCKET. With
// --init-token, tokens that are not initialised yet are initialised at
// start with the SO PIN from QPKI_TESTTOKEN_SO_PIN and the user PIN from
// QPKI_TESTTOKEN_PIN. Restarting the daemon keeps the tokens; the
// sessions of running applications then fail with CKR_DEVICE_REMOVED.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	soPINEnv   = "QPKI_TESTTOKEN_SO_PIN"
	userPINEnv = "QPKI_TESTTOKEN_PIN"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "qpki-testtokend:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("qpki-testtokend", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory holding the tokens (required)")
	socket := fs.String("socket", "", "Unix socket to listen on (required)")
	slots := fs.Int("slots", 1, "number of slots, each with its own token (1-16)")
	maxTries := fs.Int("max-pin-tries", 5, "wrong PINs in a row before a PIN locks")
	kdfIter := fs.Int("kdf-iterations", 600000, "PBKDF2-SHA256 iterations for new PIN wraps")
	initLabels := fs.String("init-token", "", "comma-separated labels: initialise slots 0, 1, ... at start if they are not")
	ephemeral := fs.Bool("ephemeral", false, "for tests: exit when the parent process exits, removing --dir")
	latency := fs.Duration("sign-latency", 0, "wall time added to every signature (a network HSM's round trip)")
	maxRate := fs.Float64("max-rate", 0, "signatures per second per token, shared by all sessions (0: no limit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *socket == "" || fs.NArg() != 0 {
		fs.Usage()
		return errors.New("--dir and --socket are required")
	}
	if *latency < 0 || *latency > time.Minute || *maxRate < 0 || *maxRate > 1e7 {
		return errors.New("--sign-latency must be 0 to 1m, --max-rate 0 to 10000000")
	}
	if *slots < 1 || *slots > 16 || *maxTries < 1 || *kdfIter < 1000 {
		return errors.New("--slots must be 1-16, --max-pin-tries at least 1, --kdf-iterations at least 1000")
	}
	logger := log.New(os.Stderr, "qpki-testtokend: ", log.LstdFlags)

	var ss []*slot
	for i := 0; i < *slots; i++ {
		sl, err := loadSlot(filepath.Join(*dir, fmt.Sprintf("slot-%d", i)), uint64(i))
		if err != nil {
			return fmt.Errorf("slot %d: %v", i, err)
		}
		ss = append(ss, sl)
	}
	srv := newServer(ss, *maxTries, *kdfIter, logger)
	if *latency > 0 || *maxRate > 0 {
		srv.model = newHSMModel(*latency, *maxRate, nil)
		logger.Printf("modelled network HSM: %s per signature, %g signatures/s per token", *latency, *maxRate)
	}
	if *initLabels != "" {
		if err := initTokens(srv, strings.Split(*initLabels, ",")); err != nil {
			return err
		}
	}

	// A socket left by a daemon that was killed is replaced; any other file is not.
	if st, err := os.Lstat(*socket); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s exists and is not a socket", *socket)
		}
		os.Remove(*socket)
	}
	l, err := net.Listen("unix", *socket)
	if err != nil {
		return err
	}
	os.Chmod(*socket, 0o600)
	logger.Printf("qpki test token (development and CI only): %d slot(s) in %s, listening on %s", len(ss), *dir, *socket)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		l.Close()
	}()
	if *ephemeral {
		go func(parent int) {
			for os.Getppid() == parent {
				time.Sleep(200 * time.Millisecond)
			}
			l.Close()
		}(os.Getppid())
	}
	err = srv.serve(l)
	os.Remove(*socket)
	if srv.model != nil {
		for _, sl := range ss {
			logger.Print(srv.model.report(sl.id))
		}
	}
	if *ephemeral {
		os.RemoveAll(*dir)
	}
	return err
}

// initTokens initialises the first len(labels) slots that are not yet.
func initTokens(srv *server, labels []string) error {
	if len(labels) > len(srv.slots) {
		return fmt.Errorf("--init-token names %d tokens for %d slots", len(labels), len(srv.slots))
	}
	soPIN, userPIN := os.Getenv(soPINEnv), os.Getenv(userPINEnv)
	for i, label := range labels {
		sl := srv.slots[i]
		if sl.state.Initialized {
			continue
		}
		if !pinLenOK([]byte(soPIN)) || !pinLenOK([]byte(userPIN)) {
			return fmt.Errorf("--init-token needs %s and %s, each %d to %d bytes", soPINEnv, userPINEnv, minPINLen, maxPIN)
		}
		if len(label) > 32 {
			return fmt.Errorf("token label %q is longer than 32 bytes", label)
		}
		padded := []byte(fmt.Sprintf("%-32s", label))
		if rv := srv.initialize(sl, []byte(soPIN), padded); rv != CKR_OK {
			return fmt.Errorf("slot %d: initialising the token: CKR 0x%x", i, rv)
		}
		key, ok := unwrapTokenKey(sl.state.SOPIN, []byte(soPIN), "so")
		if !ok {
			return fmt.Errorf("slot %d: the new SO PIN wrap does not open", i)
		}
		wrap, err := wrapTokenKey(key, []byte(userPIN), "user", srv.kdfIter)
		clear(key)
		if err != nil {
			return err
		}
		sl.state.UserPIN = wrap
		if err := sl.save(); err != nil {
			return err
		}
	}
	return nil
}
