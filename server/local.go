package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/jobspec"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/queue"
)

// The local API: JSON over HTTP on a Unix socket in the CA dir, mode 0600,
// so that only the CA's owner reaches it. It lets the CLI read and write
// the CA's store while the server holds the bbolt file.

// SubmitRequest is a job submitted through the local API.
type SubmitRequest struct {
	Kind      string         `json:"kind,omitempty"`
	Profile   string         `json:"profile,omitempty"`
	Vars      map[string]any `json:"vars,omitempty"`
	CSR       []byte         `json:"csr,omitempty"`
	PublicKey []byte         `json:"public_key,omitempty"`
	Key       string         `json:"key"`
	Class     string         `json:"class,omitempty"`
	// CRL jobs.
	CRLVersion string        `json:"crl_version,omitempty"`
	CRLDays    int           `json:"crl_days,omitempty"`
	CRLShard   *int          `json:"crl_shard,omitempty"`
	Wait       time.Duration `json:"wait,omitempty"`
	// Frontend is "cli" (the default) or "batch", and Operator the local
	// user who runs it: whoever reaches the CA directory is its operator,
	// so the principal may have any name the profile allows.
	Frontend string `json:"frontend,omitempty"`
	Operator string `json:"operator,omitempty"`
}

// OperatorName is the local user's name, the operator principal's.
func OperatorName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// enrollRequest is the request for enroll, with the operator as principal.
func (req SubmitRequest) enrollRequest() (enroll.Request, error) {
	f := enroll.FrontendCLI
	switch enroll.Frontend(req.Frontend) {
	case "", enroll.FrontendCLI:
	case enroll.FrontendBatch:
		f = enroll.FrontendBatch
	default:
		return enroll.Request{}, fmt.Errorf("frontend %q: the local API takes cli or batch", req.Frontend)
	}
	er := enroll.Request{Kind: req.Kind, Profile: req.Profile, Vars: req.Vars, CSR: req.CSR, PublicKey: req.PublicKey, Key: req.Key, Class: req.Class,
		Principal: enroll.Operator(f, cmp.Or(req.Operator, OperatorName()))}
	if req.Kind == jobspec.KindCRL {
		er.CRL = ca.CRLOptions{Version: req.CRLVersion, Validity: time.Duration(req.CRLDays) * 24 * time.Hour, Shard: req.CRLShard}
	}
	return er, nil
}

// JobStatus is a job's state as the local API reports it. An issued
// certificate is in DER; Cert is its record, which the local API sends
// without the DER a second time.
type JobStatus struct {
	JobID  string      `json:"job_id"`
	State  string      `json:"state"`
	Error  string      `json:"error,omitempty"`
	DER    []byte      `json:"der,omitempty"`
	Cert   *store.Cert `json:"cert,omitempty"`
	Serial string      `json:"serial,omitempty"`
}

// RevokeRequest revokes a certificate.
type RevokeRequest struct {
	Serial string `json:"serial"`
	Reason int    `json:"reason"`
}

// maxLocalBody bounds a local API request (a batch line's CSR is small).
const maxLocalBody = 1 << 20

func (s *Server) startLocal() error {
	path := SocketPath(s.Core.CA.Dir)
	if fi, err := os.Stat(s.Core.CA.Dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		s.Core.cfg.Log.Warn("the CA directory is open to other users; make it 0700 (chmod 700)", "dir", s.Core.CA.Dir, "mode", fi.Mode().Perm().String())
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return fmt.Errorf("local API socket: %w", err)
	}
	s.sock = path
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/jobs", s.submit)
	mux.HandleFunc("POST /v1/cose", s.submitCOSE)
	mux.HandleFunc("GET /v1/jobs/{id}", s.job)
	mux.HandleFunc("GET /v1/certs", s.listCerts)
	mux.HandleFunc("GET /v1/certs/{serial}", s.getCert)
	mux.HandleFunc("POST /v1/revoke", s.revoke)
	mux.HandleFunc("GET /v1/queue", s.queueStatus)
	mux.HandleFunc("GET /v1/queue/dead", s.deadLetters)
	mux.HandleFunc("GET /v1/backup", s.backupHandler)
	s.local = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.local.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.done <- err
		}
	}()
	return nil
}

// listenPrivate binds a Unix socket at path that only its owner can
// connect to, from the moment the name exists: the socket is bound in a
// fresh 0700 directory beside path (os.MkdirTemp), made 0600 there, and
// only then renamed to path (rename(2) moves a bound socket, and connect
// goes by the name). Binding at path and then chmod-ing would leave a
// window with the umask's mode, and changing the umask would race every
// other goroutine that creates files.
func listenPrivate(path string) (net.Listener, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".s")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s") // short: socket paths are limited to 108 bytes
	ln, err := net.Listen("unix", bound)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // Shutdown removes path
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	// Over a stale socket of a crashed server, if any (Start checked
	// that no server answers on it).
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	var req SubmitRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxLocalBody)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("malformed request: %v", err))
		return
	}
	er, err := req.enrollRequest()
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	id, err := s.Core.Enroll.Submit(r.Context(), er)
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, err)
		return
	}
	s.answerJob(w, r, id, req.Wait)
}

func (s *Server) job(w http.ResponseWriter, r *http.Request) {
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	s.answerJob(w, r, r.PathValue("id"), wait)
}

func (s *Server) answerJob(w http.ResponseWriter, r *http.Request, id string, wait time.Duration) {
	wait = min(max(wait, 0), 5*time.Minute)
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	res, err := s.Core.Enroll.Wait(ctx, id)
	switch {
	case errors.Is(err, enroll.ErrPending):
		writeJSON(w, http.StatusAccepted, JobStatus{JobID: id, State: store.JobQueued})
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, err)
	case err != nil:
		writeErr(w, http.StatusInternalServerError, err)
	default:
		st := JobStatus{JobID: id, State: res.State, Error: res.Error, DER: res.DER}
		if res.Cert != nil {
			// The certificate goes once, in der, not a second time in
			// cert: a batch fetches thousands.
			c := *res.Cert
			if len(st.DER) > 0 {
				c.DER = nil
			}
			st.Cert, st.Serial = &c, c.Serial
		}
		writeJSON(w, http.StatusOK, st)
	}
}

func (s *Server) listCerts(w http.ResponseWriter, r *http.Request) {
	st, err := s.Core.CA.Store()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	certs, err := st.List(store.Filter{Status: r.URL.Query().Get("status")})
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, certs)
}

func (s *Server) getCert(w http.ResponseWriter, r *http.Request) {
	serial, err := store.ParseSerial(r.PathValue("serial"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	st, err := s.Core.CA.Store()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	c, err := st.Cert(serial)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxLocalBody)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("malformed request: %v", err))
		return
	}
	c, err := s.Core.CA.Revoke(req.Serial, req.Reason, time.Now())
	if err != nil {
		code := http.StatusUnprocessableEntity
		if errors.Is(err, store.ErrNotFound) {
			code = http.StatusNotFound
		}
		writeErr(w, code, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) queueStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.Core.Queue.Status(r.Context())
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// deadLetters lists the newest dead letters of the served CA (?limit=N,
// default 20), without their payloads.
func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("limit %q: want 1 to 10000", v))
			return
		}
		limit = n
	}
	dls, err := s.Core.Queue.DeadLetters(r.Context(), enroll.QueueName(s.Core.CA), limit)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	// The listing is about what failed and why: job payloads and the raw
	// bytes of invalid messages stay in the stream.
	out := make([]queue.DeadLetter, len(dls))
	for i, d := range dls {
		if d.Job != nil {
			j := *d.Job
			j.Payload = nil
			d.Job = &j
		}
		d.Raw = nil
		out[i] = d
	}
	writeJSON(w, http.StatusOK, out)
}

// ErrNoServer means no server holds the CA dir.
var ErrNoServer = errors.New("no qpki server holds this CA")

// Client talks to the local API of the server that holds a CA dir.
type Client struct {
	hc *http.Client
}

// Dial connects to the server holding caDir, or returns ErrNoServer.
func Dial(caDir string) (*Client, error) {
	path := SocketPath(caDir)
	if _, err := os.Stat(path); err != nil {
		return nil, ErrNoServer
	}
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, ErrNoServer // a stale socket left by a killed server
	}
	conn.Close()
	// Keep as many idle connections as a batch has requests in flight (256
	// by default): with fewer, a connection freed while the pool is full is
	// closed and the next request dials again, a third of all requests.
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}, MaxIdleConnsPerHost: 1024}
	return &Client{hc: &http.Client{Transport: tr}}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytesReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://qpki"+path, rd)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("qpki server: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, errorBody(resp.Status, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// Submit submits a job and waits up to req.Wait for its result.
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (*JobStatus, error) {
	var st JobStatus
	_, err := c.do(ctx, http.MethodPost, "/v1/jobs", req, &st)
	return &st, err
}

// Job returns a job's state, waiting up to wait for it to finish.
func (c *Client) Job(ctx context.Context, id string, wait time.Duration) (*JobStatus, error) {
	var st JobStatus
	_, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+id+"?wait="+wait.String(), nil, &st)
	return &st, err
}

// Certs lists the CA's certificates.
func (c *Client) Certs(ctx context.Context, status string) ([]*store.Cert, error) {
	var out []*store.Cert
	_, err := c.do(ctx, http.MethodGet, "/v1/certs?status="+status, nil, &out)
	return out, err
}

// Cert returns one certificate.
func (c *Client) Cert(ctx context.Context, serial string) (*store.Cert, error) {
	var out store.Cert
	code, err := c.do(ctx, http.MethodGet, "/v1/certs/"+serial, nil, &out)
	if code == http.StatusNotFound {
		return nil, fmt.Errorf("%v: %w", err, store.ErrNotFound)
	}
	return &out, err
}

// Revoke revokes a certificate.
func (c *Client) Revoke(ctx context.Context, serial string, reason int) (*store.Cert, error) {
	var out store.Cert
	_, err := c.do(ctx, http.MethodPost, "/v1/revoke", RevokeRequest{Serial: serial, Reason: reason}, &out)
	return &out, err
}

// QueueStatus returns the queue's counters as JSON.
func (c *Client) QueueStatus(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := c.do(ctx, http.MethodGet, "/v1/queue", nil, &out)
	return out, err
}

// DeadLetters returns the newest dead letters of the served CA, newest
// first.
func (c *Client) DeadLetters(ctx context.Context, limit int) ([]queue.DeadLetter, error) {
	var out []queue.DeadLetter
	_, err := c.do(ctx, http.MethodGet, "/v1/queue/dead?limit="+strconv.Itoa(limit), nil, &out)
	return out, err
}

// errorBody turns a local API error answer into an error.
func errorBody(status string, data []byte) error {
	var e struct{ Error string }
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return fmt.Errorf("qpki server: %s", status)
}

func errorFrom(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return errorBody(resp.Status, data)
}
