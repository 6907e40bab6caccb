package est

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qpki/qpki/enroll"
)

// A submission that the shared store could not take (a NATS leader
// election under --store jetstream) is answered 503 with Retry-After, so
// that the device sends its CSR again, not 400, which it takes as a
// refusal of the request (the chaos run lost an enrollment so); the
// refusals stay 400 and 403.
func TestSubmitErrorStoreUnavailable(t *testing.T) {
	f := &Frontend{o: Options{RetryAfter: 3 * time.Second}, log: slog.New(slog.DiscardHandler)}
	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("reserving the serial: %w", jetstream.ErrNoStreamResponse), http.StatusServiceUnavailable},
		{fmt.Errorf("jskv: %w", jetstream.ErrKeyExists), http.StatusServiceUnavailable},
		{fmt.Errorf("name: %w", enroll.ErrNotGranted), http.StatusForbidden},
		{errors.New("profile ec/tls-server: key type ed25519 not allowed"), http.StatusBadRequest},
	} {
		w := httptest.NewRecorder()
		f.submitError(w, c.err)
		if w.Code != c.code {
			t.Errorf("%v: HTTP %d, want %d", c.err, w.Code, c.code)
		}
		if c.code == http.StatusServiceUnavailable && w.Header().Get("Retry-After") != "3" {
			t.Errorf("%v: Retry-After %q", c.err, w.Header().Get("Retry-After"))
		}
	}
}
