package chaos

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/qpki/qpki/pkg/cms"
)

// estClient enrolls over EST with HTTP Basic, as a device would: a lost
// answer, a 503 or a 202 makes it send the same CSR again, which is the
// same job.
type estClient struct {
	url string
	hc  *http.Client
	led *ledger
}

func newESTClient(c *cluster, led *ledger) *estClient {
	return &estClient{url: "https://" + c.lb.addr() + "/.well-known/est/simpleenroll", hc: c.httpClient(20 * time.Second), led: led}
}

// enroll enrolls name, then sends the same CSR once more: the answer
// must be the same certificate.
func (e *estClient) enroll(ctx context.Context, name string, limit time.Duration) error {
	r := e.led.begin(kindEST, "est:"+name)
	err := e.enrollSteps(ctx, r, name, limit)
	e.led.finish(r, err, errors.Is(err, errNoAnswer))
	return err
}

func (e *estClient) enrollSteps(ctx context.Context, r *request, name string, limit time.Duration) error {
	csr, err := newCSR(name)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	for range 2 {
		c, err := e.post(ctx, r, csr, deadline)
		if err != nil {
			return err
		}
		e.led.deliver(r, c)
	}
	return nil
}

func (e *estClient) post(ctx context.Context, r *request, csr []byte, deadline time.Time) (*x509.Certificate, error) {
	body := base64.StdEncoding.EncodeToString(csr)
	wait := 100 * time.Millisecond
	var last string
	for attempt := 0; ; attempt++ {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w (simpleenroll: %s)", errNoAnswer, last)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (simpleenroll: %v)", errNoAnswer, ctx.Err())
		}
		if attempt > 0 {
			e.led.retry(r)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/pkcs10")
		req.SetBasicAuth(estUser, estPass)
		resp, err := e.hc.Do(req)
		if err != nil {
			last = err.Error()
			time.Sleep(wait)
			wait = min(2*wait, 2*time.Second)
			continue
		}
		data, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && rerr == nil:
			der, err := base64.StdEncoding.DecodeString(string(bytes.Join(bytes.Fields(data), nil)))
			if err != nil {
				return nil, fmt.Errorf("simpleenroll: the answer is not base64: %v", err)
			}
			certs, err := cms.ParseCertsOnly(der)
			if err != nil {
				return nil, fmt.Errorf("simpleenroll: %v", err)
			}
			if len(certs) != 1 {
				return nil, fmt.Errorf("simpleenroll: %d certificates in the answer", len(certs))
			}
			return certs[0], nil
		case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || rerr != nil:
			last = fmt.Sprintf("HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(data)))
			d := wait
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				d = min(time.Duration(s)*time.Second, 2*time.Second)
			}
			time.Sleep(d)
			wait = min(2*wait, 2*time.Second)
		default:
			return nil, fmt.Errorf("simpleenroll: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
		}
	}
}
