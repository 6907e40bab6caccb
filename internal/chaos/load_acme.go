package chaos

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// http01 answers the front-ends' http-01 validations for every account.
type http01 struct {
	tokens sync.Map
	srv    *http.Server
}

func startHTTP01(port int) (*http01, error) {
	l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", loopback, port))
	if err != nil {
		return nil, err
	}
	h := &http01{}
	h.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if v, found := h.tokens.Load(tok); ok && found {
			w.Write([]byte(v.(string)))
			return
		}
		http.NotFound(w, r)
	})}
	go h.srv.Serve(l)
	return h, nil
}

// definitive reports an ACME error that a retry cannot change: a 4xx
// problem other than a bad nonce or a rate limit.
func definitive(err error) bool {
	var ae *acme.Error
	if errors.As(err, &ae) {
		if strings.HasSuffix(ae.ProblemType, ":badNonce") || ae.StatusCode == http.StatusTooManyRequests {
			return false
		}
		return ae.StatusCode >= 400 && ae.StatusCode < 500
	}
	var oe *acme.OrderError
	var ze *acme.AuthorizationError
	return errors.As(err, &oe) || errors.As(err, &ze)
}

// retrier repeats a step of a request until it works, fails for good, or
// the request's time is up.
type retrier struct {
	led      *ledger
	r        *request
	deadline time.Time
}

var errNoAnswer = errors.New("no answer before the request's deadline")

func (rt retrier) do(ctx context.Context, step string, fn func(ctx context.Context) error) error {
	wait := 100 * time.Millisecond
	var last error
	for attempt := 0; ; attempt++ {
		if time.Now().After(rt.deadline) {
			return fmt.Errorf("%w (%s: %v)", errNoAnswer, step, last)
		}
		if attempt > 0 {
			rt.led.retry(rt.r)
		}
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := fn(sctx)
		cancel()
		if err == nil {
			return nil
		}
		if definitive(err) {
			return fmt.Errorf("%s: %w", step, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%s: %v)", errNoAnswer, step, ctx.Err())
		}
		last = err
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// acmeClient is one account that orders certificates in a loop.
type acmeClient struct {
	cl  *acme.Client
	h   *http01
	led *ledger
}

func newACMEClient(ctx context.Context, c *cluster, h *http01, led *ledger) (*acmeClient, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cl := &acme.Client{Key: key, DirectoryURL: "https://" + c.lb.addr() + "/acme/directory", HTTPClient: c.httpClient(20 * time.Second),
		UserAgent: "qpki-chaos"}
	a := &acmeClient{cl: cl, h: h, led: led}
	var lastErr error
	for range 30 {
		if _, err := cl.Register(ctx, &acme.Account{}, acme.AcceptTOS); err == nil || errors.Is(err, acme.ErrAccountAlreadyExists) {
			return a, nil
		} else {
			lastErr = err
		}
		time.Sleep(time.Second)
	}
	return nil, fmt.Errorf("ACME account: %w", lastErr)
}

// order runs one order for name to its certificate and downloads the
// certificate a second time, which must be the same.
func (a *acmeClient) order(ctx context.Context, name string, limit time.Duration) (*x509.Certificate, error) {
	r := a.led.begin(kindACME, "acme:"+name)
	cert, err := a.orderSteps(ctx, r, name, limit)
	a.led.finish(r, err, errors.Is(err, errNoAnswer))
	return cert, err
}

func (a *acmeClient) orderSteps(ctx context.Context, r *request, name string, limit time.Duration) (*x509.Certificate, error) {
	rt := retrier{led: a.led, r: r, deadline: time.Now().Add(limit)}
	var o *acme.Order
	if err := rt.do(ctx, "newOrder", func(ctx context.Context) (err error) {
		o, err = a.cl.AuthorizeOrder(ctx, acme.DomainIDs(name))
		return err
	}); err != nil {
		return nil, err
	}
	for _, zurl := range o.AuthzURLs {
		var z *acme.Authorization
		if err := rt.do(ctx, "authorization", func(ctx context.Context) (err error) {
			z, err = a.cl.GetAuthorization(ctx, zurl)
			return err
		}); err != nil {
			return nil, err
		}
		if z.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for _, ch := range z.Challenges {
			if ch.Type == "http-01" {
				chal = ch
			}
		}
		if chal == nil {
			return nil, errors.New("no http-01 challenge offered")
		}
		resp, err := a.cl.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return nil, err
		}
		a.h.tokens.Store(chal.Token, resp)
		defer a.h.tokens.Delete(chal.Token)
		if err := rt.do(ctx, "challenge", func(ctx context.Context) error {
			_, err := a.cl.Accept(ctx, chal)
			return err
		}); err != nil {
			return nil, err
		}
		if err := rt.do(ctx, "authorization wait", func(ctx context.Context) error {
			_, err := a.cl.WaitAuthorization(ctx, zurl)
			return err
		}); err != nil {
			return nil, err
		}
	}
	csr, err := newCSR(name)
	if err != nil {
		return nil, err
	}
	// Finalize, and after a lost answer look at the order: finalize again
	// while it is ready, wait while it is processing.
	var certURL string
	if err := rt.do(ctx, "finalize", func(ctx context.Context) error {
		cur, err := a.cl.GetOrder(ctx, o.URI)
		if err != nil {
			return err
		}
		switch cur.Status {
		case acme.StatusReady:
			_, certURL, err = a.cl.CreateOrderCert(ctx, cur.FinalizeURL, csr, false)
			var ae *acme.Error
			if errors.As(err, &ae) && strings.HasSuffix(ae.ProblemType, ":orderNotReady") {
				// An earlier finalize whose answer was lost got there
				// first: look at the order again.
				return fmt.Errorf("finalize raced an earlier one: %s", ae.Detail)
			}
			return err
		case acme.StatusProcessing:
			cur, err = a.cl.WaitOrder(ctx, o.URI)
			if err != nil {
				return err
			}
			certURL = cur.CertURL
			return nil
		case acme.StatusValid:
			certURL = cur.CertURL
			return nil
		}
		return &acme.OrderError{OrderURL: o.URI, Status: cur.Status}
	}); err != nil {
		return nil, err
	}
	var first *x509.Certificate
	for i := range 2 {
		var der [][]byte
		if err := rt.do(ctx, "certificate", func(ctx context.Context) (err error) {
			der, err = a.cl.FetchCert(ctx, certURL, false)
			return err
		}); err != nil {
			return nil, err
		}
		c, err := x509.ParseCertificate(der[0])
		if err != nil {
			return nil, fmt.Errorf("the certificate does not parse: %v", err)
		}
		a.led.deliver(r, c)
		if i == 0 {
			first = c
		}
	}
	return first, nil
}

// revoke revokes c with the account key (RFC 8555 §7.6).
func (a *acmeClient) revoke(ctx context.Context, c *x509.Certificate, limit time.Duration) {
	r := a.led.begin(kindRevoke, "revoke:"+serialHex(c))
	rt := retrier{led: a.led, r: r, deadline: time.Now().Add(limit)}
	tries := 0
	err := rt.do(ctx, "revokeCert", func(ctx context.Context) error {
		tries++
		err := a.cl.RevokeCert(ctx, nil, c.Raw, acme.CRLReasonKeyCompromise)
		var ae *acme.Error
		if tries > 1 && errors.As(err, &ae) && strings.HasSuffix(ae.ProblemType, ":alreadyRevoked") {
			return nil // the answer to an earlier try was lost
		}
		return err
	})
	if err == nil {
		a.led.markRevoked(serialHex(c))
	}
	a.led.finish(r, err, errors.Is(err, errNoAnswer))
}

func newCSR(names ...string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
}
