// Package acme is qpki's ACME server (RFC 8555), a front-end of `qpki
// serve`: it speaks the protocol on the HTTPS listener and hands issuance
// to the enrollment pipeline. Its parts follow Pebble and Boulder:
//
//	wfe        HTTP handlers, JWS authentication, nonces, rate limits
//	ra         orders, authorizations, finalize, revocation, ARI
//	va         challenge validation (http-01, dns-01, tls-alpn-01) and CAA
//	probs      problem documents
//	nonce      anti-replay nonces
//	ratelimit  token buckets
//	eab        external account binding keys
//	core       identifiers, key authorizations, ids
//
// Accounts, orders, authorizations, external account keys and nonces
// live in <data-dir>/acme.db (pkg/store), whose keys `qpki acme eab`
// reaches through <data-dir>/acme.sock while serve runs. With
// Config.Store and Config.Nonces they live in JetStream buckets that
// several front-ends share instead. Keys in an acme-eab.json of an
// earlier version move into the store at start.
package acme

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qpki/qpki/acme/eab"
	"github.com/qpki/qpki/acme/egress"
	"github.com/qpki/qpki/acme/nonce"
	"github.com/qpki/qpki/acme/ra"
	"github.com/qpki/qpki/acme/ratelimit"
	"github.com/qpki/qpki/acme/va"
	"github.com/qpki/qpki/acme/wfe"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/store"
)

// DirectoryPath is where clients start.
const DirectoryPath = wfe.DirectoryPath

// Config is the ACME server's configuration (`qpki serve --acme-*`).
type Config struct {
	// DataDir holds acme.db and the key socket acme.sock.
	DataDir string
	// Store, when set, keeps the ACME objects instead of acme.db (the
	// JetStream store that several serve front-ends share).
	Store store.ACMEStore
	// Nonces, when set, issues and redeems the nonces instead of this
	// process (the JetStream bucket that several front-ends share).
	Nonces nonce.Source
	// Profiles are the qpki profiles offered; the first is the default.
	Profiles []string

	TermsOfService string
	Website        string
	CAAIdentities  []string
	EABRequired    bool
	ExternalURL    string

	// Validation: ports instead of 80 and 443, one address for every
	// connection, a DNS server (which also turns CAA checking on), and
	// the time one validation may take.
	HTTPPort    int
	TLSPort     int
	ResolveTo   string
	DNSResolver string
	// ValidationAllow are the special-purpose networks (CIDR, or single
	// addresses) validation may connect to and ip identifiers may be in;
	// ResolveTo is allowed too. Nothing else is.
	ValidationAllow   []string
	ValidationTimeout time.Duration
	// DisableCAA turns CAA checking off (--acme-caa=false). CAA is also
	// skipped with ResolveTo and no DNSResolver (tests without DNS);
	// otherwise it is checked, through DNSResolver or the system's DNS
	// servers.
	DisableCAA bool
	// CAARecheckAge is how old a CAA check may be at finalize before it
	// is made again (default 8h).
	CAARecheckAge time.Duration

	// How long challenge and finalize requests wait for their outcome
	// before answering "processing".
	ChallengeWait time.Duration
	FinalizeWait  time.Duration

	// MaxIdentifiers bounds one order's identifiers, MaxPendingAuthzs an
	// account's pending authorizations (0: 100 each).
	MaxIdentifiers   int
	MaxPendingAuthzs int

	OrderLifetime        time.Duration
	PendingAuthzLifetime time.Duration
	ValidAuthzLifetime   time.Duration
	NonceLifetime        time.Duration

	// Rate limits: requests per client address, new orders per account,
	// and who is exempt (addresses, networks, account ids).
	IPLimit    ratelimit.Limit
	OrderLimit ratelimit.Limit
	Exempt     []string

	MaxBody int64
	Log     *slog.Logger
}

// Frontend is the ACME server as a `qpki serve` front-end.
type Frontend struct {
	cfg    Config
	st     store.ACMEStore
	nonces nonce.Source
	local  *nonce.Service // nonces held here (no Config.Nonces)
	ra     *ra.RA
	wfe    *wfe.WFE
	keys   *eab.Server // the key socket, with acme.db
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New opens the ACME store; the server starts at Mount.
func New(cfg Config) (*Frontend, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Profiles) == 0 {
		return nil, errors.New("acme: no profile to offer (--acme-profiles)")
	}
	if cfg.ResolveTo != "" {
		if _, err := netip.ParseAddr(cfg.ResolveTo); err != nil {
			return nil, fmt.Errorf("acme: resolve-to %q is not an IP address", cfg.ResolveTo)
		}
	}
	if _, err := egress.ParsePrefixes(cfg.ValidationAllow); err != nil {
		return nil, fmt.Errorf("acme: validation-allow: %v", err)
	}
	switch {
	case cfg.DisableCAA:
		cfg.Log.Warn("acme: CAA checking is off (--acme-caa=false): certificates are issued whatever the domains' CAA records say")
	case cfg.ResolveTo != "" && cfg.DNSResolver == "":
		cfg.Log.Warn("acme: CAA checking is off: --acme-resolve-to without --acme-dns-resolver")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	st := cfg.Store
	if st == nil {
		bst, err := store.OpenACME(filepath.Join(cfg.DataDir, store.ACMEFile))
		if err != nil {
			return nil, err
		}
		st = bst
	}
	if n, err := eab.MigrateFile(cfg.DataDir, st); err != nil {
		st.Close()
		return nil, fmt.Errorf("acme: moving the external account keys into the store: %w", err)
	} else if n > 0 {
		cfg.Log.Info("acme: external account keys moved into the ACME store", "keys", n, "from", eab.Path(cfg.DataDir))
	}
	f := &Frontend{cfg: cfg, st: st, nonces: cfg.Nonces}
	if cfg.Store == nil {
		// serve holds acme.db: the CLI reaches the keys through here.
		ks, err := eab.ServeSocket(cfg.DataDir, eab.InStore(st))
		if err != nil {
			st.Close()
			return nil, err
		}
		f.keys = ks
	}
	if f.nonces == nil {
		n, err := nonce.New(st, cfg.NonceLifetime, 0)
		if err != nil {
			if f.keys != nil {
				f.keys.Close()
			}
			st.Close()
			return nil, err
		}
		f.nonces, f.local = n, n
	}
	return f, nil
}

// Mount builds the RA, VA and WFE for the served CA and adds the ACME
// routes.
func (f *Frontend) Mount(mux *http.ServeMux, svc *enroll.Service) error {
	cfg := f.cfg
	vcfg := va.Config{HTTPPort: cfg.HTTPPort, TLSPort: cfg.TLSPort, Resolver: cfg.DNSResolver,
		Timeout: cfg.ValidationTimeout, CAAIdentities: cfg.CAAIdentities,
		SkipCAA: cfg.DisableCAA || (cfg.ResolveTo != "" && cfg.DNSResolver == "")}
	if cfg.ResolveTo != "" {
		vcfg.ResolveTo, _ = netip.ParseAddr(cfg.ResolveTo)
	}
	vcfg.Allow, _ = egress.ParsePrefixes(cfg.ValidationAllow) // checked by New
	r, err := ra.New(ra.Config{Profiles: cfg.Profiles, OrderLifetime: cfg.OrderLifetime,
		PendingAuthzLifetime: cfg.PendingAuthzLifetime, ValidAuthzLifetime: cfg.ValidAuthzLifetime,
		ChallengeWait: cfg.ChallengeWait, FinalizeWait: cfg.FinalizeWait, CAARecheckAge: cfg.CAARecheckAge,
		MaxIdentifiers: cfg.MaxIdentifiers, MaxPendingAuthzs: cfg.MaxPendingAuthzs, Log: cfg.Log}, f.st, svc, va.New(vcfg))
	if err != nil {
		return err
	}
	f.ra = r
	w := wfe.New(wfe.Config{TermsOfService: cfg.TermsOfService, Website: cfg.Website, CAAIdentities: cfg.CAAIdentities,
		EABRequired: cfg.EABRequired, ExternalURL: cfg.ExternalURL, MaxBody: cfg.MaxBody,
		IPLimit: cfg.IPLimit, OrderLimit: cfg.OrderLimit, Exempt: ratelimit.ParseExempt(cfg.Exempt), Log: cfg.Log},
		r, f.st, f.nonces)
	w.Register(mux)
	f.wfe = w
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(3)
	go func() {
		defer f.wg.Done()
		if f.local != nil {
			f.local.Run(ctx)
		}
	}()
	go func() {
		defer f.wg.Done()
		r.Run(ctx)
	}()
	go func() {
		defer f.wg.Done()
		f.collect(ctx)
	}()
	return nil
}

// collect deletes expired objects every minute.
func (f *Frontend) collect(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for {
				n, err := f.st.DeleteExpired(time.Now(), 1000)
				if err != nil {
					f.cfg.Log.Error("acme: deleting expired objects", "error", err)
				}
				if err != nil || n < 1000 || ctx.Err() != nil {
					break
				}
			}
		}
	}
}

// Endpoints lists the paths `qpki serve` prints.
func (f *Frontend) Endpoints() []string { return []string{DirectoryPath} }

// drainTimeout bounds how long Close waits for the requests being
// served (serve's listener waits 30 s for them first).
const drainTimeout = 30 * time.Second

// Close waits for the requests being served, stops the background work,
// saves the nonces and closes the store. serve closes front-ends after
// the listener stopped; a handler that outlived it still counts here.
func (f *Frontend) Close() error {
	var err error
	f.once.Do(func() {
		if f.keys != nil {
			f.keys.Close()
		}
		drained := true
		if f.wfe != nil {
			drained = f.wfe.Drain(drainTimeout)
		}
		if f.cancel != nil {
			f.cancel()
		}
		f.wg.Wait()
		var flushErr error
		if f.ra != nil {
			f.ra.Wait()
			flushErr = f.ra.Flush()
		}
		var nonceErr error
		switch {
		case f.local == nil:
		case drained:
			nonceErr = f.local.Close()
		default:
			// A handler still running may redeem a nonce after the save:
			// save them as after a crash, so that the next start drops
			// them all (clients get badNonce and retry) rather than
			// restore one that was used.
			f.cfg.Log.Warn("acme: requests still running at shutdown: the saved nonces will not be restored")
			nonceErr = f.local.Abandon()
		}
		err = errors.Join(flushErr, nonceErr, f.st.Close())
	})
	return err
}
