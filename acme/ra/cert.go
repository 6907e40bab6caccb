package ra

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/qpki/qpki/acme/core"
	"github.com/qpki/qpki/acme/probs"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/ca"
	"github.com/qpki/qpki/pkg/store"
)

// Certificate returns an account's certificate as PEM chains: the chain
// up to the CA's root (root left out), then alternates through the
// cross-sign link certificates of a rotation (RFC 8555 §7.4.2).
func (ra *RA) Certificate(acct *store.ACMEAccount, serial string) ([][]byte, *probs.Problem) {
	rec, prob := ra.certRecord(serial)
	if prob != nil {
		return nil, prob
	}
	if owner, ok := ra.owners.get(serial); ok {
		if owner != acct.ID {
			return nil, probs.NotFound("no such certificate")
		}
	} else if o, err := ra.orderOf(rec); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, lookupProblem(err, "certificate's order")
	} else if err != nil || o.AccountID != acct.ID {
		return nil, probs.NotFound("no such certificate")
	} else {
		ra.owners.add(serial, o.AccountID)
	}
	chains, err := ra.chains(rec.CAVersion)
	if err != nil {
		return nil, probs.ServerInternal("building the chain: %v", err)
	}
	leaf := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rec.DER})
	out := make([][]byte, len(chains))
	for i, c := range chains {
		out[i] = append(slices.Clip(leaf), c...)
	}
	return out, nil
}

// orderOf finds the order a certificate was issued for, through its
// signing job's idempotency key.
func (ra *RA) orderOf(rec *store.Cert) (*store.ACMEOrder, error) {
	if rec.JobID == "" {
		return nil, store.ErrNotFound
	}
	job, err := ra.svc.Job(rec.JobID)
	if err != nil {
		return nil, err
	}
	id, ok := strings.CutPrefix(job.Key, jobKeyPrefix)
	if !ok {
		return nil, store.ErrNotFound
	}
	return ra.st.Order(id)
}

func (ra *RA) certRecord(serial string) (*store.Cert, *probs.Problem) {
	n, err := store.ParseSerial(serial)
	if err != nil {
		return nil, probs.NotFound("no such certificate")
	}
	st, err := ra.svc.CA.Store()
	if err != nil {
		return nil, probs.ServerInternal("%v", err)
	}
	rec, err := st.Cert(n)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, probs.NotFound("no such certificate")
		}
		return nil, probs.ServerInternal("%v", err)
	}
	return rec, nil
}

type chainEntry struct {
	versions int
	pems     [][]byte
}

// chains returns the PEM issuer chains of a CA version, the default
// first, cached until the CA gains a version.
func (ra *RA) chains(version string) ([][]byte, error) {
	c := ra.svc.CA
	nv := len(c.Meta.Versions)
	ra.chainMu.Lock()
	e, ok := ra.chainCache[version]
	ra.chainMu.Unlock()
	if ok && e.versions == nv {
		return e.pems, nil
	}
	main, err := c.Chain(version)
	if err != nil {
		return nil, err
	}
	pems := [][]byte{ca.EncodeCerts(withoutRoot(main)...)}
	issuer := main[0]
	for _, name := range c.Meta.VersionNames() {
		for _, l := range c.Meta.Versions[name].Links {
			link, err := readCert(filepath.Join(c.Dir, filepath.FromSlash(l)))
			if err != nil || bytes.Equal(link.Raw, issuer.Raw) || !sameKey(link, issuer) ||
				!bytes.Equal(link.RawSubject, issuer.RawSubject) {
				continue
			}
			// The link certifies the issuer's key under another version's
			// key: follow that version's chain.
			for _, other := range c.Meta.VersionNames() {
				oc, err := c.Chain(other)
				if err != nil || oc[0].Equal(issuer) || link.CheckSignatureFrom(oc[0]) != nil {
					continue
				}
				pems = append(pems, ca.EncodeCerts(withoutRoot(append([]*x509.Certificate{link}, oc...))...))
			}
		}
	}
	ra.chainMu.Lock()
	ra.chainCache[version] = chainEntry{nv, pems}
	ra.chainMu.Unlock()
	return pems, nil
}

// withoutRoot drops a self-signed certificate at the end of a chain:
// clients hold their roots.
func withoutRoot(chain []*x509.Certificate) []*x509.Certificate {
	if n := len(chain); n > 1 && bytes.Equal(chain[n-1].RawIssuer, chain[n-1].RawSubject) {
		return chain[:n-1]
	}
	return chain
}

func sameKey(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ca.ParseCertificates(data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// Revocation reasons an ACME client may give (RFC 5280 §5.3.1): the
// others are the CA's to use.
var clientReasons = map[int]bool{0: true, 1: true, 3: true, 4: true, 5: true}

// Revoke revokes a certificate (RFC 8555 §7.6) for an account that
// ordered it or holds valid authorizations for all its names, or for a
// request signed by the certificate's own key (certKey, SubjectPublicKey
// Info DER; nil for an account request).
func (ra *RA) Revoke(acct *store.ACMEAccount, certKey []byte, der []byte, reason int) *probs.Problem {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return probs.Malformed("the certificate does not parse: %v", err)
	}
	if !clientReasons[reason] {
		return probs.BadRevocationReason("reason %d is not one a subscriber may give (0, 1, 3, 4 or 5)", reason)
	}
	serial := store.FormatSerial(cert.SerialNumber)
	rec, prob := ra.certRecord(serial)
	if prob != nil && prob.Status != http.StatusNotFound {
		// The store could not answer (a NATS leader election): the client
		// may retry, so this must not read as "not ours".
		return prob
	}
	if prob != nil || !bytes.Equal(rec.DER, der) {
		return probs.NotFound("this CA did not issue the certificate")
	}
	if rec.Revocation != nil {
		return probs.AlreadyRevoked("the certificate was revoked on %s", rec.Revocation.Time.Format(time.RFC3339))
	}
	switch {
	case certKey != nil:
		if !bytes.Equal(certKey, cert.RawSubjectPublicKeyInfo) {
			return probs.Unauthorized("the request is not signed by the certificate's key")
		}
	case acct != nil:
		if !ra.mayRevoke(acct, rec, cert) {
			return probs.Unauthorized("the account neither ordered this certificate nor holds valid authorizations for all its names")
		}
	default:
		return probs.Unauthorized("no key to authorize the revocation")
	}
	if _, err := ra.svc.CA.Revoke(serial, reason, ra.now()); err != nil {
		if errors.Is(err, store.ErrRevoked) {
			return probs.AlreadyRevoked("the certificate is already revoked")
		}
		return probs.ServerInternal("revoking: %v", err)
	}
	return nil
}

func (ra *RA) mayRevoke(acct *store.ACMEAccount, rec *store.Cert, cert *x509.Certificate) bool {
	if o, err := ra.orderOf(rec); err == nil && o.AccountID == acct.ID {
		return true
	}
	now := ra.now()
	var ids []store.ACMEIdentifier
	var wild []bool
	for _, n := range cert.DNSNames {
		n = strings.ToLower(n)
		w := strings.HasPrefix(n, "*.")
		ids, wild = append(ids, store.ACMEIdentifier{Type: core.IdentDNS, Value: strings.TrimPrefix(n, "*.")}), append(wild, w)
	}
	for _, ip := range cert.IPAddresses {
		a, _ := netip.AddrFromSlice(ip)
		ids, wild = append(ids, store.ACMEIdentifier{Type: core.IdentIP, Value: a.Unmap().String()}), append(wild, false)
	}
	if len(ids) == 0 {
		return false
	}
	for i, id := range ids {
		a, err := ra.st.LatestAuthz(acct.ID, id, wild[i])
		if err != nil || a.CurrentStatus(now) != store.ACMEValid {
			return false
		}
	}
	return true
}

// AccountKeyDER is a JWK public key as SubjectPublicKeyInfo DER, to
// compare with certificate keys.
func AccountKeyDER(pub any) []byte {
	der, err := algo.MarshalPKIX(pub)
	if err != nil {
		return nil
	}
	return der
}

// RenewalInfo is an ARI response (RFC 9773 §4.2).
type RenewalInfo struct {
	Start, End time.Time
}

// RenewalWindow suggests when to renew a certificate named by its ARI
// identifier: over the last third of its life, ending at three quarters;
// a revoked certificate should be replaced now.
func (ra *RA) RenewalWindow(_ context.Context, certID string) (RenewalInfo, *probs.Problem) {
	aki, serial, err := core.ParseCertID(certID)
	if err != nil {
		return RenewalInfo{}, probs.Malformed("certificate identifier %q: %v", clip(certID), err)
	}
	rec, prob := ra.certRecord(store.FormatSerial(serial))
	if prob != nil {
		return RenewalInfo{}, prob
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil || !bytes.Equal(cert.AuthorityKeyId, aki) {
		return RenewalInfo{}, probs.NotFound("no such certificate")
	}
	if rec.Revocation != nil {
		now := ra.now().UTC().Truncate(time.Second)
		return RenewalInfo{Start: now.Add(-time.Hour), End: now}, nil
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	start := cert.NotBefore.Add(life * 2 / 3)
	end := cert.NotBefore.Add(life * 3 / 4)
	if end.Sub(start) < time.Minute {
		end = start.Add(time.Minute)
	}
	return RenewalInfo{Start: start.UTC().Truncate(time.Second), End: end.UTC().Truncate(time.Second)}, nil
}

// checkReplaces checks an order's replaces field (RFC 9773 §5): the
// certificate exists, the account ordered it, and it shares an
// identifier with the new order.
func (ra *RA) checkReplaces(acct *store.ACMEAccount, certID string, ids []store.ACMEIdentifier) *probs.Problem {
	aki, serial, err := core.ParseCertID(certID)
	if err != nil {
		return probs.Malformed("replaces %q: %v", clip(certID), err)
	}
	s := store.FormatSerial(serial)
	rec, prob := ra.certRecord(s)
	if prob != nil {
		return probs.Malformed("replaces %q: no such certificate", clip(certID))
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil || !bytes.Equal(cert.AuthorityKeyId, aki) {
		return probs.Malformed("replaces %q: no such certificate", clip(certID))
	}
	if o, err := ra.orderOf(rec); err != nil || o.AccountID != acct.ID {
		return probs.Unauthorized("replaces %q: the account did not order that certificate", clip(certID))
	}
	for _, id := range ids {
		for _, n := range rec.Names {
			if strings.EqualFold(strings.TrimPrefix(n, "*."), id.Value) {
				return nil
			}
		}
	}
	return probs.Malformed("replaces %q: the certificate shares no identifier with the order", clip(certID))
}
