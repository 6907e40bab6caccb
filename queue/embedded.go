package queue

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"
)

// Files under <data dir>/nats.
const (
	natsDirName     = "nats"
	credentialsName = "credentials.json" // user and password, mode 0600, written once
	serverInfoName  = "server.json"      // URL of the running embedded server, rewritten at each start
	lockName        = "lock"
)

// maxSmallFile bounds the JSON files this package reads back.
const maxSmallFile = 64 << 10

// Users of the embedded server, one per role (see Role). The front-end's
// and the in-process workers' passwords are made at each start and never
// written; the stored one is for qpki worker processes on this machine.
const (
	frontendUser    = "qpki-serve"
	localWorkerUser = "qpki-worker-local"
	workerUser      = "qpki-worker"
)

// credentials are a user and password of the embedded server.
type credentials struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// serverInfo records the URL of the embedded server. It stays after the
// server stops: the next start reuses the port, so that workers connected
// to it find it again when it comes back.
type serverInfo struct {
	URL     string    `json:"url"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

func natsDir(dataDir string) string { return filepath.Join(dataDir, natsDirName) }

func newPassword() string {
	buf := make([]byte, 32)
	rand.Read(buf)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// loadOrCreateCredentials reads the stored worker credentials, creating
// them at first start, or replacing those of an earlier version, whose
// one user had every right. A file that others can read is refused, not
// trusted.
func loadOrCreateCredentials(dir string) (credentials, error) {
	path := filepath.Join(dir, credentialsName)
	c, err := readCredentials(path)
	if err == nil && c.User == workerUser || err != nil && !errors.Is(err, fs.ErrNotExist) {
		return c, err
	}
	c = credentials{User: workerUser, Password: newPassword()}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return c, err
	}
	if err := writeFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		return c, fmt.Errorf("queue: storing NATS credentials: %w", err)
	}
	return c, nil
}

func readCredentials(path string) (credentials, error) {
	var c credentials
	data, err := readPrivateFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("queue: malformed %s: %w", path, err)
	}
	if c.User == "" || len(c.Password) < 16 {
		return c, fmt.Errorf("queue: %s has no usable user and password", path)
	}
	return c, nil
}

// readPrivateFile reads a small file that must not be readable by group
// or others.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("queue: %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("queue: %s has mode %04o; it holds a password and must be 0600", path, st.Mode().Perm())
	}
	if st.Size() > maxSmallFile {
		return nil, fmt.Errorf("queue: %s is too large", path)
	}
	buf := make([]byte, st.Size())
	if _, err := f.ReadAt(buf, 0); err != nil && st.Size() > 0 {
		return nil, err
	}
	return buf, nil
}

func readServerInfo(dir string) (serverInfo, error) {
	var si serverInfo
	path := filepath.Join(dir, serverInfoName)
	data, err := readPrivateFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return si, fmt.Errorf("queue: no embedded NATS server recorded in %s (is qpki serve running with this data dir?)", dir)
		}
		return si, err
	}
	if err := json.Unmarshal(data, &si); err != nil || si.URL == "" {
		return si, fmt.Errorf("queue: malformed %s", path)
	}
	return si, nil
}

// choosePort returns the port to listen on: the one asked for, else the
// one the previous start used when it is free, else a random one.
func choosePort(dir string, asked int) (int, error) {
	if asked != 0 {
		if !portFree(asked) {
			return 0, fmt.Errorf("queue: port %d on 127.0.0.1 is in use", asked)
		}
		return asked, nil
	}
	if si, err := readServerInfo(dir); err == nil {
		if u, err := url.Parse(si.URL); err == nil {
			if p, err := strconv.Atoi(u.Port()); err == nil && p > 0 && portFree(p) {
				return p, nil
			}
		}
	}
	return server.RANDOM_PORT, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// embeddedServer is a running in-process nats-server.
type embeddedServer struct {
	srv         *server.Server
	url         string
	creds       credentials // the stored worker user's
	frontend    credentials // this process's front-end
	localWorker credentials // this process's workers
	lock        *os.File
	dir         string
}

func startEmbedded(o Options, logServer bool) (*embeddedServer, error) {
	dir := natsDir(o.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	e := &embeddedServer{lock: lock, dir: dir}
	ok := false
	defer func() {
		if !ok {
			e.stop()
		}
	}()
	e.creds, err = loadOrCreateCredentials(dir)
	if err != nil {
		return nil, err
	}
	port, err := choosePort(dir, o.Port)
	if err != nil {
		return nil, err
	}
	e.frontend = credentials{User: frontendUser, Password: newPassword()}
	e.localWorker = credentials{User: localWorkerUser, Password: newPassword()}
	// The server keeps only bcrypt hashes of the passwords (it would warn
	// about plaintext ones).
	var users []*server.User
	for _, u := range []struct {
		c    credentials
		role Role
	}{{e.frontend, RoleFrontend}, {e.localWorker, RoleWorker}, {e.creds, RoleWorker}} {
		hash, err := bcrypt.GenerateFromPassword([]byte(u.c.Password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		users = append(users, &server.User{Username: u.c.User, Password: string(hash), Permissions: u.role.Permissions().server()})
	}
	sopts := &server.Options{
		ServerName: "qpki-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		Users:      users,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: o.SyncAlways,
		// Room for the headers (message id, expectations) on top of the
		// largest message the streams accept.
		MaxPayload: o.MaxMsgSize + 64<<10,
		NoSigs:     true,
		NoLog:      true,
	}
	e.srv, err = server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("queue: embedded NATS server: %w", err)
	}
	if logServer {
		e.srv.SetLoggerV2(serverLogger{o.Logger}, false, false, false)
	}
	go e.srv.Start()
	if !e.srv.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("queue: embedded NATS server did not become ready")
	}
	e.url = e.srv.ClientURL()
	si := serverInfo{URL: e.url, PID: os.Getpid(), Started: time.Now().UTC()}
	data, _ := json.MarshalIndent(si, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, serverInfoName), append(data, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("queue: recording the server URL: %w", err)
	}
	ok = true
	return e, nil
}

func (e *embeddedServer) stop() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = nil
	}
	if e.lock != nil {
		unlockDir(e.lock)
		e.lock = nil
	}
}

// serverLogger forwards the embedded server's log to slog.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(f string, v ...any) { s.l.Info("nats: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Warnf(f string, v ...any)   { s.l.Warn("nats: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Fatalf(f string, v ...any)  { s.l.Error("nats: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Errorf(f string, v ...any)  { s.l.Error("nats: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Debugf(f string, v ...any)  { s.l.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Tracef(f string, v ...any)  {}

// writeFileAtomic writes through a synced temporary file renamed over
// path, so a reader sees the old file or the new one, never half of one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
