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
// waits a little for that.
func (ra *RA) Finalize(ctx context.Context, acct *store.ACMEAccount, accountKey []byte, orderID string, csrDER []byte, requestID string) (*store.ACMEOrder, string, []*store.ACMEAuthz, *probs.Problem) {
	o, err := ra.st.Order(orderID)
	if err != nil || o.AccountID != acct.ID {
		return nil, "", nil, probs.NotFound("no such order")
	}
	o, status, _, prob := ra.orderStatus(o)
	if prob != nil {
		return nil, "", nil, prob
	}
	if status != store.ACMEReady {
		return nil, "", nil, probs.OrderNotReady("the order is %s, not ready", status)
	}
	csr, err := x509x.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, "", nil, probs.BadCSR("%v", err)
	}
	vars, prob := csrMatchesOrder(csr, o)
	if prob != nil {
		return nil, "", nil, prob
	}
	if spki, err := algo.MarshalPKIX(csr.PublicKey); err == nil && bytes.Equal(spki, accountKey) {
		return nil, "", nil, probs.BadCSR("the CSR's key is the account key")
	}
	p, err := ra.profile(o.Profile)
	if err != nil {
		return nil, "", nil, probs.ServerInternal("profile %s: %v", o.Profile, err)
	}
	now := ra.now()
	if !o.NotAfter.IsZero() {
		vars[profile.VarValidity] = validityFor(p, o.NotAfter, now).String()
	}
	// The policy check enroll runs too, here to tell the client's
	// mistakes (badCSR) from the server's.
	if _, err := ra.svc.CA.Prepare(ca.IssueRequest{Profile: o.Profile, Vars: vars, CSR: csr, Now: now}); err != nil {
		var ne *profile.NameError
		if errors.As(err, &ne) {
			return nil, "", nil, probs.BadCSR("%v", err)
		}
		return nil, "", nil, probs.BadCSR("the profile refuses the CSR: %v", err)
	}
	jobID, err := ra.svc.Submit(ctx, enroll.Request{Profile: o.Profile, Vars: vars, CSR: csrDER,
		Key: "acme-order/" + o.ID, Class: queue.ClassInteractive, RequestID: requestID})
	if err != nil {
		if errors.Is(err, store.ErrKeyReused) {
			return nil, "", nil, probs.OrderNotReady("the order was already finalized with another CSR")
		}
		return nil, "", nil, probs.ServerInternal("submitting the order: %v", err)
	}
	o, err = ra.st.UpdateOrder(o.ID, func(o *store.ACMEOrder) error {
		if o.Status == store.ACMEPending {
			o.Status, o.JobID = store.ACMEProcessing, jobID
		}
		return nil
	})
	if err != nil {
		return nil, "", nil, probs.ServerInternal("recording the order: %v", err)
	}
	if o.JobID != jobID {
		return nil, "", nil, probs.OrderNotReady("the order was already finalized")
	}
	o = ra.settle(ctx, o, ra.cfg.FinalizeWait)
	return ra.orderStatus(o)
}

// settle waits up to wait for a processing order's job and records its
// outcome: valid with the certificate, or invalid.
func (ra *RA) settle(ctx context.Context, o *store.ACMEOrder, wait time.Duration) *store.ACMEOrder {
	if o.Status != store.ACMEProcessing || o.JobID == "" {
		return o
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := ra.svc.Wait(wctx, o.JobID)
	if err != nil {
		if !errors.Is(err, enroll.ErrPending) {
			ra.cfg.Log.Error("acme: waiting for a job", "order", o.ID, "job", o.JobID, "error", err)
		}
		return o
	}
	updated, err := ra.st.UpdateOrder(o.ID, func(o *store.ACMEOrder) error {
		if o.Status != store.ACMEProcessing {
			return nil
		}
		if res.State == store.JobDone && res.Cert != nil {
			o.Status, o.CertSerial, o.CertNotAfter = store.ACMEValid, res.Cert.Serial, res.Cert.NotAfter
			if !o.NotAfter.IsZero() {
				o.NotAfter = res.Cert.NotAfter.UTC() // what the certificate says, to the second
			}
			return nil
		}
		o.Status = store.ACMEInvalid
		o.Error = probs.ServerInternal("signing failed: %s", res.Error).JSON()
		return nil
	})
	if err != nil {
		ra.cfg.Log.Error("acme: recording an order's certificate", "order", o.ID, "error", err)
		return o
	}
	return updated
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
