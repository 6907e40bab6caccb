package metrics

import (
	"net/http"
	"strconv"
	"time"
)

// Unmatched is the endpoint label of a request no route matched (a 404, a
// 405 or a redirect of the mux): the label never carries a raw path, so
// its values stay as few as the routes.
const Unmatched = "unmatched"

// InstrumentHTTP counts and times the requests that next serves. next is
// (or ends in) the http.ServeMux that routes them: the endpoint label is
// the pattern that matched, such as "POST /acme/new-order".
func (m *Metrics) InstrumentHTTP(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		// The mux set r.Pattern on this very request.
		endpoint := r.Pattern
		if endpoint == "" {
			endpoint = Unmatched
		}
		m.httpCount.WithLabelValues(endpoint, strconv.Itoa(sw.Status())).Inc()
		m.httpLatency.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	})
}

// StatusWriter remembers the status code and size of a response. It
// unwraps for http.ResponseController and passes Flush on.
type StatusWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *StatusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush sends buffered data to the client (long polls, streams).
func (w *StatusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status is the response's status code (200 when the handler wrote
// nothing).
func (w *StatusWriter) Status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Bytes is the size of the body written.
func (w *StatusWriter) Bytes() int64 { return w.bytes }
