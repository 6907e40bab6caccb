package ra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
	"github.com/qpki/qpki/queue"
)

// Finalize checks an order's CSR and submits it to the signing pipeline
// (RFC 8555 §7.4): the CSR must name exactly the order's identifiers and
// its key must pass the profile's policy. The order is processing while
// the job is queued and valid once its certificate is recorded; Finalize
// waits a little for that. CAA checks older than CAARecheckAge are made
// again first. Beyond those, it writes nothing to the ACME store: the
// job, whose id derives from the order's, is the record. accountURL is the
// account's URL, as CAA accounturi parameters name it.
func (ra *RA) Finalize(ctx context.Context, acct *store.ACMEAccount, accountURL string, accountKey []byte, orderID string, csrDER []byte, requestID string) (*OrderState, *probs.Problem) {
	o, err := ra.st.Order(orderID)
	if prob := lookupProblem(err, "order"); prob != nil {
		return nil, prob
	}
	if o.AccountID != acct.ID {
		return nil, probs.NotFound("no such order")
	}
	st, prob := ra.state(o)
	if prob != nil {
		return nil, prob
	}
	if st.Status != store.ACMEReady {
		return nil, probs.OrderNotReady("the order is %s, not ready", st.Status)
	}
	// enroll verifies the CSR's signature and runs the profile's policy;
	// here only the names are compared, and failures are explained below.
	csr, err := x509x.ParseCertificateRequestUnverified(csrDER)
	if err != nil {
		return nil, probs.BadCSR("%v", err)
	}
	vars, prob := csrMatchesOrder(csr, o)
	if prob != nil {
		return nil, prob
	}
	if spki, err := algo.MarshalPKIX(csr.PublicKey); err == nil && bytes.Equal(spki, accountKey) {
		return nil, probs.BadCSR("the CSR's key is the account key")
	}
	if prob := ra.recheckCAA(ctx, st.Authzs, accountURL); prob != nil {
		return nil, prob
	}
	now := ra.now()
	if !o.NotAfter.IsZero() {
		p, err := ra.profile(o.Profile)
		if err != nil {
			return nil, probs.ServerInternal("profile %s: %v", o.Profile, err)
		}
		vars[profile.VarValidity] = validityFor(p, o.NotAfter, now).String()
	}
	jobID, err := ra.svc.Submit(ctx, enroll.Request{Profile: o.Profile, Vars: vars, CSR: csrDER,
		Key: jobKeyPrefix + o.ID, Class: queue.ClassInteractive, RequestID: requestID, Principal: orderPrincipal(acct, o)})
	if err != nil {
		return nil, ra.submitProblem(err, o, vars, csrDER, now)
	}
	wctx, cancel := context.WithTimeout(ctx, ra.cfg.FinalizeWait)
	res, err := ra.svc.Wait(wctx, jobID)
	cancel()
	switch {
	case errors.Is(err, enroll.ErrPending):
		st.Status = store.ACMEProcessing
	case err != nil:
		return nil, probs.ServerInternal("waiting for the certificate: %v", err)
	case res.State == store.JobDone && res.Cert != nil:
		st.Status, st.CertSerial = store.ACMEValid, res.Cert.Serial
		ra.settled(o.ID, res.Cert.Serial)
		ra.owners.add(res.Cert.Serial, acct.ID)
	default:
		st.Status, st.Error = store.ACMEInvalid, probs.ServerInternal("signing failed: %s", res.Error)
	}
	return st, nil
}

// orderPrincipal is the account as enroll sees it: its names are the
// order's identifiers, all authorized when the order is ready.
func orderPrincipal(acct *store.ACMEAccount, o *store.ACMEOrder) enroll.Principal {
	var dns, ips []string
	for _, id := range o.Identifiers {
		switch id.Type {
		case "dns":
			dns = append(dns, id.Value)
		case "ip":
			ips = append(ips, id.Value)
		}
	}
	return enroll.Principal{Frontend: enroll.FrontendACME, Account: acct.ID, Names: enroll.ExactNames(dns, ips)}
}

// submitProblem tells a client's mistake (badCSR) from the server's
// trouble when enroll refused a job.
func (ra *RA) submitProblem(err error, o *store.ACMEOrder, vars map[string]any, csrDER []byte, now time.Time) *probs.Problem {
	if errors.Is(err, store.ErrKeyReused) {
		return probs.OrderNotReady("the order was already finalized with another CSR")
	}
	if errors.Is(err, enroll.ErrNotGranted) {
		return probs.RejectedIdentifier("%v", err)
	}
	csr, perr := x509x.ParseCertificateRequest(csrDER)
	if perr != nil {
		return probs.BadCSR("%v", perr)
	}
	if _, perr := ra.svc.CA.Prepare(ca.IssueRequest{Profile: o.Profile, Vars: vars, CSR: csr, Now: now}); perr != nil {
		return probs.BadCSR("the profile refuses the CSR: %v", perr)
	}
	return probs.ServerInternal("submitting the order: %v", err)
}

// settled notes that an order's certificate is recorded, so that the
// order is kept as long as the certificate lives. The notes are written
// in batches (see Run); a lost one is noted again the next time the
// order is read.
func (ra *RA) settled(orderID, serial string) {
	ra.settleMu.Lock()
	ra.toSettle[orderID] = serial
	ra.settleMu.Unlock()
}

// Run writes settled orders every quarter second until ctx is done.
func (ra *RA) Run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := ra.Flush(); err != nil {
				ra.cfg.Log.Error("acme: recording settled orders", "error", err)
			}
		}
	}
}

// Flush writes the settled orders noted so far.
func (ra *RA) Flush() error {
	ra.settleMu.Lock()
	batch := ra.toSettle
	ra.toSettle = map[string]string{}
	ra.settleMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	cs, err := ra.svc.CA.Store()
	if err != nil {
		return err
	}
	notAfter := map[string]time.Time{}
	ids := make([]string, 0, len(batch))
	for id, serial := range batch {
		ids = append(ids, id)
		if n, err := store.ParseSerial(serial); err == nil {
			if rec, err := cs.Cert(n); err == nil {
				notAfter[serial] = rec.NotAfter
			}
		}
	}
	return ra.st.UpdateOrders(ids, func(o *store.ACMEOrder) error {
		if serial := batch[o.ID]; o.CertSerial == "" && serial != "" {
			o.Status, o.CertSerial, o.CertNotAfter = store.ACMEValid, serial, notAfter[serial]
		}
		return nil
	})
}

// csrMatchesOrder checks that a CSR asks for the order's identifiers, all
// and only them, and returns the name variables for the profile.
func csrMatchesOrder(csr *x509x.CertificateRequest, o *store.ACMEOrder) (map[string]any, *probs.Problem) {
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, probs.BadCSR("the CSR asks for e-mail addresses or URIs, which ACME orders cannot validate")
	}
	var dnsNames, ips []string
	for _, n := range csr.DNSNames {
		dnsNames = append(dnsNames, strings.ToLower(n))
	}
	for _, ip := range csr.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return nil, probs.BadCSR("the CSR has a malformed IP address")
		}
		ips = append(ips, a.Unmap().String())
	}
	var wantDNS, wantIP []string
	for _, id := range o.Identifiers {
		if id.Type == core.IdentIP {
			wantIP = append(wantIP, id.Value)
		} else {
			wantDNS = append(wantDNS, id.Value)
		}
	}
	if cn := strings.ToLower(strings.TrimSpace(csr.Subject.CommonName)); cn != "" {
		if a, err := netip.ParseAddr(cn); err == nil {
			if !slices.Contains(wantIP, a.Unmap().String()) {
				return nil, probs.BadCSR("the CSR's common name %q is not among the order's identifiers", clip(cn))
			}
		} else if !slices.Contains(wantDNS, cn) {
			return nil, probs.BadCSR("the CSR's common name %q is not among the order's identifiers", clip(cn))
		} else if !slices.Contains(dnsNames, cn) {
			dnsNames = append(dnsNames, cn)
		}
	}
	if !sameSet(dnsNames, wantDNS) || !sameSet(ips, wantIP) {
		return nil, probs.BadCSR("the CSR names %s; the order's identifiers are %s", names(dnsNames, ips), names(wantDNS, wantIP))
	}
	vars := map[string]any{}
	if len(wantDNS) > 0 {
		vars[profile.VarDNSNames] = wantDNS
	}
	if len(wantIP) > 0 {
		vars[profile.VarIPAddresses] = wantIP
	}
	return vars, nil
}

func sameSet(a, b []string) bool {
	as, bs := slices.Clone(a), slices.Clone(b)
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(slices.Compact(as), slices.Compact(bs))
}

func names(dns, ips []string) string {
	all := append(slices.Clone(dns), ips...)
	if len(all) == 0 {
		return "nothing"
	}
	if len(all) > 10 {
		return fmt.Sprintf("%s and %d more", strings.Join(all[:10], ", "), len(all)-10)
	}
	return strings.Join(all, ", ")
}
