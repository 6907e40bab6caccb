package ocsp

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/ocspx"
	"github.com/qpki/qpki/pkg/store"
)

// Frontend plugs the responder into `qpki serve`: mounted with the CAs'
// enrollment services, it answers on every listener it wraps and runs the
// presigner until it is closed.
type Frontend struct {
	Options Options
	// URL, when set, goes into the AIA OCSP URL of every certificate
	// whose profile leaves ocsp_url unset (--ocsp-url).
	URL string

	r      atomic.Pointer[Responder]
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Mount starts the responder for the CA of svc (the server.Frontend
// interface; the responder itself answers at Path through Wrap).
func (f *Frontend) Mount(_ *http.ServeMux, svc *enroll.Service) error { return f.MountAll(svc) }

// MountAll starts the responder for the CAs of svcs: one today, several
// when serve hosts several.
func (f *Frontend) MountAll(svcs ...*enroll.Service) error {
	var cas []Authority
	for _, svc := range svcs {
		cas = append(cas, Authority{Name: enroll.QueueName(svc.CA), CA: svc.CA, Enroll: svc})
	}
	r, err := New(f.Options, cas...)
	if err != nil {
		return err
	}
	for _, a := range cas {
		if f.URL != "" {
			a.Enroll.OCSPURL = f.URL
		}
		name, prev := a.Name, a.CA.OnRevoke
		prevCert := a.Enroll.OnCert
		a.Enroll.OnCert = func(c *store.Cert) {
			if prevCert != nil {
				prevCert(c)
			}
			r.Issued(name, c)
		}
		a.CA.OnRevoke = func(c *store.Cert) {
			if prev != nil {
				prev(c)
			}
			r.Revoked(name, c)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		r.Run(ctx)
	}()
	f.r.Store(r)
	return nil
}

// Wrap answers OCSP before next sees the request (see Responder.Wrap);
// until the responder is mounted it answers tryLater.
func (f *Frontend) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if p := req.URL.Path; p != Path && !strings.HasPrefix(p, Path+"/") {
			next.ServeHTTP(w, req)
			return
		}
		if r := f.r.Load(); r != nil {
			r.ServeHTTP(w, req)
			return
		}
		writeStatus(w, ocspx.TryLater)
	})
}

// Responder returns the mounted responder (nil before Mount).
func (f *Frontend) Responder() *Responder { return f.r.Load() }

// Endpoints lists the responder's URL paths for serve's banner.
func (f *Frontend) Endpoints() []string { return []string{Path} }

// Close stops the presigner.
func (f *Frontend) Close() error {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	return nil
}
