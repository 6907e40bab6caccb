package eab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SocketName is the ACME front-end's key socket in the data dir: while
// serve holds acme.db, `qpki acme eab` reaches the keys through it. Only
// the data dir's owner can connect (mode 0600, from the moment it
// exists).
const SocketName = "acme.sock"

// SocketPath is the key socket of a data dir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

const maxRequest = 4 << 10

// Server answers the key socket.
type Server struct {
	hs   *http.Server
	path string
}

// ServeSocket serves s on the data dir's key socket until Close.
func ServeSocket(dataDir string, s Store) (*Server, error) {
	path := SocketPath(dataDir)
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("external account key socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		ks, err := s.List()
		if err != nil {
			answer(w, http.StatusInternalServerError, err)
			return
		}
		answer(w, http.StatusOK, ks)
	})
	mux.HandleFunc("POST /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ KID, Note string }
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest)).Decode(&req); err != nil {
			answer(w, http.StatusBadRequest, err)
			return
		}
		k, err := s.Add(req.KID, req.Note)
		if err != nil {
			answer(w, http.StatusBadRequest, err)
			return
		}
		answer(w, http.StatusOK, k)
	})
	mux.HandleFunc("DELETE /v1/keys/{kid}", func(w http.ResponseWriter, r *http.Request) {
		switch err := s.Remove(r.PathValue("kid")); {
		case errors.Is(err, ErrUnknownKey):
			answer(w, http.StatusNotFound, err)
		case err != nil:
			answer(w, http.StatusInternalServerError, err)
		default:
			answer(w, http.StatusOK, struct{}{})
		}
	})
	srv := &Server{hs: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, path: path}
	go srv.hs.Serve(ln)
	return srv, nil
}

// Close stops the socket and removes it.
func (s *Server) Close() error {
	err := s.hs.Close()
	os.Remove(s.path)
	return err
}

func answer(w http.ResponseWriter, code int, v any) {
	if err, ok := v.(error); ok {
		v = map[string]string{"error": err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// listenPrivate binds a Unix socket that only its owner can reach from
// the moment its name exists: bound in a fresh 0700 directory, made 0600
// there, then renamed into place.
func listenPrivate(path string) (net.Listener, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".eab")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.Listen("unix", bound)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Remote is the keys of a running serve, through its key socket.
func Remote(dataDir string) Store {
	path := SocketPath(dataDir)
	return remote{&http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}}}
}

type remote struct{ c *http.Client }

func (r remote) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, "http://acme"+path, rd)
	if err != nil {
		return err
	}
	resp, err := r.c.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the running serve's key socket: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFile))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(data, &e)
		if resp.StatusCode == http.StatusNotFound {
			return ErrUnknownKey
		}
		return errors.New(e.Error)
	}
	return json.Unmarshal(data, out)
}

func (r remote) Add(kid, note string) (Key, error) {
	var k Key
	err := r.call(http.MethodPost, "/v1/keys", map[string]string{"KID": kid, "Note": note}, &k)
	return k, err
}

func (r remote) List() ([]Key, error) {
	var ks []Key
	err := r.call(http.MethodGet, "/v1/keys", nil, &ks)
	return ks, err
}

func (r remote) Remove(kid string) error {
	if !ValidID(kid) {
		return fmt.Errorf("%w %q", ErrUnknownKey, kid)
	}
	err := r.call(http.MethodDelete, "/v1/keys/"+kid, nil, &struct{}{})
	if errors.Is(err, ErrUnknownKey) {
		return fmt.Errorf("%w %q", ErrUnknownKey, kid)
	}
	return err
}
