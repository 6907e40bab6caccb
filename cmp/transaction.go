package cmp

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/profile"
	"github.com/qpki/qpki/pkg/store"
	"github.com/qpki/qpki/pkg/x509x"
)

// Phase is where a transaction is.
type Phase string

// The phases of a transaction.
const (
	PhaseWaiting   Phase = "waiting"   // submitted, no certificate yet
	PhaseIssued    Phase = "issued"    // returned, waiting for certConf
	PhaseConfirmed Phase = "confirmed" // certConf accepted it, or implicitConfirm
	PhaseRejected  Phase = "rejected"  // the client rejected it, or refused
	PhaseRevoked   Phase = "revoked"   // not confirmed in time
)

// Transaction is a transaction's record.
type Transaction struct {
	Label     string    `json:"label"`
	Phase     Phase     `json:"phase"`
	Type      int       `json:"type"` // the request's body type
	JobID     string    `json:"job,omitempty"`
	CertReqID int64     `json:"cert_req_id"`
	Implicit  bool      `json:"implicit,omitempty"`
	SecretRef string    `json:"secret_ref,omitempty"`
	Signer    string    `json:"signer,omitempty"` // the signer certificate's hash, for signed transactions
	Nonce     []byte    `json:"nonce"`            // our last senderNonce
	Serial    string    `json:"serial,omitempty"`
	CertDER   []byte    `json:"cert,omitempty"`
	ConfirmBy time.Time `json:"confirm_by,omitzero"`
	Created   time.Time `json:"created"`
}

// handle answers one authenticated-or-not request.
func (f *Frontend) handle(ctx context.Context, svc *enroll.Service, l *Label, m *Message) ([]byte, error) {
	if err := f.checkHeader(m); err != nil {
		return nil, err
	}
	var prot *protector
	var sec *secretUse
	var kind signerKind
	var err error
	if len(m.Header.ProtectionAlg.Algorithm) > 0 && !IsMAC(m.Header.ProtectionAlg) && m.Protection.BitLength > 0 {
		prot, kind, err = f.authenticateSigned(svc, l, m)
	} else {
		prot, sec, err = f.authenticate(l, m)
	}
	if err != nil {
		return nil, err
	}
	switch t := m.Type(); t {
	case BodyIR, BodyCR, BodyP10CR, BodyKUR:
		if t == BodyKUR && kind != signerOwn {
			return nil, &pkiError{fail: FailNotAuthorized, msg: "kur must be signed by the certificate being updated, issued here through CMP on this label", prot: prot}
		}
		if t != BodyKUR && sec == nil && kind == signerOwn && m.Type() == BodyIR {
			return nil, &pkiError{fail: FailBadRequest, msg: "an ir is for a first certificate: use cr or kur", prot: prot}
		}
		return f.certRequest(ctx, svc, l, m, prot, sec)
	case BodyCertConf:
		return f.certConf(svc, l, m, prot)
	case BodyPollReq:
		return f.pollReq(ctx, svc, l, m, prot)
	case BodyRR:
		if sec != nil {
			return nil, &pkiError{fail: FailWrongIntegrity, msg: "rr must be signed by the certificate to revoke", prot: prot}
		}
		return f.revocation(svc, l, m, prot, kind)
	case BodyGenM:
		return f.general(svc, l, m, prot)
	}
	return nil, &pkiError{fail: FailBadRequest, msg: fmt.Sprintf("unexpected body type %d", m.Type()), prot: prot}
}

// authenticate checks the request's protection; the MAC secret is
// returned unredeemed.
func (f *Frontend) authenticate(l *Label, m *Message) (*protector, *secretUse, error) {
	alg := m.Header.ProtectionAlg
	if len(alg.Algorithm) == 0 || m.Protection.BitLength == 0 {
		return nil, nil, refuse(FailBadMessageCheck, "the message is not protected")
	}
	if !IsMAC(alg) {
		return nil, nil, refuse(FailWrongIntegrity, "signature protection is not accepted on this label")
	}
	ref := string(m.Header.SenderKID)
	s, rev, err := lookupSecret(f.secrets, ref, l.name, txName(l.name, m.Header.TransactionID), time.Now())
	if err != nil && s == nil {
		if errors.Is(err, ErrSecret) {
			return nil, nil, refuse(FailBadMessageCheck, "the MAC does not verify")
		}
		return nil, nil, err
	}
	if verr := verifyMAC(m, []byte(s.Secret)); verr != nil {
		if errors.Is(verr, errMACAlg) {
			return nil, nil, refuse(FailBadAlg, "%v", verr)
		}
		return nil, nil, refuse(FailBadMessageCheck, "the MAC does not verify")
	}
	p := &protector{macAlg: alg, secret: []byte(s.Secret), kid: m.Header.SenderKID}
	if err != nil { // a good MAC with a secret that is used, expired or another label's
		return nil, nil, &pkiError{fail: FailNotAuthorized, msg: "the shared secret is already used, expired or for another label", prot: p}
	}
	return p, &secretUse{s: s, rev: rev}, nil
}

type secretUse struct {
	s   *Secret
	rev uint64
}

// certRequest starts a transaction: ir, cr or p10cr.
func (f *Frontend) certRequest(ctx context.Context, svc *enroll.Service, l *Label, m *Message, prot *protector, sec *secretUse) ([]byte, error) {
	name := txName(l.name, m.Header.TransactionID)
	tx := &Transaction{Label: l.name, Phase: PhaseWaiting, Type: m.Type(), Created: time.Now().UTC()}
	if sec != nil {
		tx.SecretRef = sec.s.Ref
	}
	if prot.client != nil {
		tx.Signer = certID(prot.client)
	}
	if err := f.txs.Create(name, tx); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			return nil, &pkiError{fail: FailTransactionIDInUse, msg: "this transactionID was used already", prot: prot}
		}
		return nil, err
	}
	fail := func(err error) ([]byte, error) {
		tx.Phase = PhaseRejected
		f.saveTx(name, tx)
		var pe *pkiError
		if errors.As(err, &pe) && pe.prot == nil {
			pe.prot = prot
		}
		return nil, err
	}
	if sec != nil {
		if err := redeem(f.secrets, sec.s, sec.rev, name); err != nil {
			if errors.Is(err, ErrSecret) {
				return fail(refuse(FailNotAuthorized, "the shared secret is already used"))
			}
			return fail(err)
		}
	}
	var req enroll.Request
	var reqID int64
	var err error
	if m.Type() == BodyKUR {
		req, reqID, err = f.kurRequest(l, m, prot.client)
	} else {
		req, reqID, err = f.enrollRequest(l, m, sec)
	}
	if err != nil {
		return fail(err)
	}
	if prot.client != nil {
		req.Principal.ClientCert = prot.client
	}
	tx.CertReqID = reqID
	if _, ok := m.Header.generalInfo(OIDITImplicitConfirm); ok && l.ImplicitConfirm {
		tx.Implicit = true
	}
	req.Key = "cmp:" + name
	id, err := svc.Submit(ctx, req)
	if err != nil {
		return fail(submitError(err))
	}
	tx.JobID = id
	return f.answerCert(ctx, svc, l, m, prot, name, tx, f.o.Wait)
}

// submitError maps a refused submission to its failure bits.
func submitError(err error) error {
	switch {
	case errors.Is(err, enroll.ErrNotGranted), errors.Is(err, enroll.ErrNoPrincipal):
		return refuse(FailNotAuthorized, "the name policy refuses the request: %v", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return refuse(FailSystemUnavail, "the signing queue is unavailable; retry later")
	}
	return refuse(FailBadCertTemplate, "%v", err)
}

// answerCert waits for the job and answers ip/cp with the certificate,
// or with "waiting" (the client polls).
func (f *Frontend) answerCert(ctx context.Context, svc *enroll.Service, l *Label, m *Message, prot *protector, name string, tx *Transaction, wait time.Duration) ([]byte, error) {
	wctx, cancel := waitCtx(ctx, wait)
	res, err := svc.Wait(wctx, tx.JobID)
	cancel()
	repType := BodyIP
	switch tx.Type {
	case BodyCR, BodyP10CR:
		repType = BodyCP
	case BodyKUR:
		repType = BodyKUP
	}
	var nonce []byte
	prot.nonce = &nonce
	id := big.NewInt(tx.CertReqID)
	if errors.Is(err, enroll.ErrPending) {
		var content any = CertRepMessage{Response: []CertResponse{{CertReqID: id, Status: statusInfo(StatusWaiting, nil, "the request is queued: poll for it")}}}
		t := repType
		if m.Type() == BodyPollReq {
			t, content = BodyPollRep, []PollRep{{CertReqID: id, CheckAfter: max(1, int(f.o.CheckAfter.Seconds())), Reason: NewFreeText("the request is queued")}}
		}
		der, err := f.build(m, prot, t, content, nil, nil)
		if err != nil {
			return nil, err
		}
		tx.Nonce = nonce
		return der, f.saveTx(name, tx)
	}
	if err != nil {
		return nil, err
	}
	if res.State == store.JobFailed {
		tx.Phase = PhaseRejected
		f.saveTx(name, tx)
		return nil, &pkiError{fail: FailBadCertTemplate, msg: "the request was refused: " + res.Error, prot: prot}
	}
	cert, err := x509.ParseCertificate(res.DER)
	if err != nil {
		return nil, err
	}
	chain := chainFor(svc, cert)
	// CertifiedKeyPair { certOrEncCert: certificate [0] CMPCertificate }.
	certTagged, err := asn1.Marshal(tagged(0, cert.Raw))
	if err != nil {
		return nil, err
	}
	ckp, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: certTagged})
	if err != nil {
		return nil, err
	}
	rep := CertRepMessage{Response: []CertResponse{{CertReqID: id, Status: statusInfo(StatusAccepted, nil, ""), CertifiedKeyPair: asn1.RawValue{FullBytes: ckp}}}}
	if tx.Type == BodyIR && prot.ra == nil && len(chain) > 0 {
		// MAC-protected initial enrollment: the root the client may trust
		// (RFC 9483 §4.1.1, caPubs).
		rep.CAPubs = []asn1.RawValue{{FullBytes: chain[len(chain)-1].Raw}}
	}
	var info []InfoTypeAndValue
	tx.CertDER, tx.Serial = cert.Raw, store.FormatSerial(cert.SerialNumber)
	if tx.Implicit {
		info = []InfoTypeAndValue{{Type: OIDITImplicitConfirm, Value: asn1.NullRawValue}}
		tx.Phase = PhaseConfirmed
	} else {
		tx.Phase, tx.ConfirmBy = PhaseIssued, time.Now().Add(f.o.ConfirmTimeout).UTC()
	}
	der, err := f.build(m, prot, repType, rep, append([]*x509.Certificate{cert}, chain...), info)
	if err != nil {
		return nil, err
	}
	tx.Nonce = nonce
	return der, f.saveTx(name, tx)
}

// chainFor is the issuing CA's chain for cert: the version whose key
// signed it.
func chainFor(svc *enroll.Service, cert *x509.Certificate) []*x509.Certificate {
	for _, v := range svc.CA.Meta.VersionNames() {
		chain, err := svc.CA.Chain(v)
		if err == nil && len(chain) > 0 && x509x.CheckSignatureFrom(cert, chain[0]) == nil {
			return chain
		}
	}
	chain, _ := svc.CA.Chain("")
	return chain
}

// issuedBy reports whether one of the CA's versions signed cert.
func issuedBy(svc *enroll.Service, cert *x509.Certificate) bool {
	for _, v := range svc.CA.Meta.VersionNames() {
		if c, err := svc.CA.Certificate(v); err == nil && x509x.CheckSignatureFrom(cert, c) == nil {
			return true
		}
	}
	return false
}

// saveTx writes a transaction's record (read, then compare-and-set).
func (f *Frontend) saveTx(name string, tx *Transaction) error {
	var old Transaction
	rev, err := f.txs.Get(name, &old)
	if err != nil {
		return err
	}
	return f.txs.Update(name, tx, rev)
}

// loadTx reads a follow-up message's transaction and checks its nonce.
func (f *Frontend) loadTx(l *Label, m *Message, prot *protector) (string, *Transaction, uint64, error) {
	name := txName(l.name, m.Header.TransactionID)
	var tx Transaction
	rev, err := f.txs.Get(name, &tx)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, 0, &pkiError{fail: FailBadRequest, msg: "no such transaction", prot: prot}
	}
	if err != nil {
		return "", nil, 0, err
	}
	if prot.client != nil && tx.Signer != certID(prot.client) || prot.client == nil && tx.SecretRef != string(prot.kid) {
		return "", nil, 0, refuse(FailNotAuthorized, "this transaction was started with another credential")
	}
	if !bytesEqual(m.Header.RecipNonce, tx.Nonce) {
		return "", nil, 0, &pkiError{fail: FailBadRecipientNonce, msg: "recipNonce is not the senderNonce of the last answer", prot: prot}
	}
	return name, &tx, rev, nil
}

// certConf confirms (or rejects) the certificate of a transaction.
func (f *Frontend) certConf(svc *enroll.Service, l *Label, m *Message, prot *protector) ([]byte, error) {
	name, tx, rev, err := f.loadTx(l, m, prot)
	if err != nil {
		return nil, err
	}
	if tx.Phase != PhaseIssued {
		return nil, &pkiError{fail: FailBadRequest, msg: fmt.Sprintf("the transaction is %s, not waiting for certConf", tx.Phase), prot: prot}
	}
	var statuses []CertStatus
	if err := m.content(&statuses); err != nil || len(statuses) != 1 {
		return nil, &pkiError{fail: FailBadDataFormat, msg: "certConf must carry one CertStatus", prot: prot}
	}
	st := statuses[0]
	cert, err := x509.ParseCertificate(tx.CertDER)
	if err != nil {
		return nil, err
	}
	if st.CertReqID == nil || st.CertReqID.Int64() != tx.CertReqID {
		return nil, &pkiError{fail: FailBadCertID, msg: "certReqId is not the request's", prot: prot}
	}
	h, err := certHashAlg(cert, st.HashAlg)
	if err != nil {
		return nil, &pkiError{fail: FailBadAlg, msg: err.Error(), prot: prot}
	}
	d := h.New()
	d.Write(cert.Raw)
	if !bytesEqual(st.CertHash, d.Sum(nil)) {
		return nil, &pkiError{fail: FailBadCertID, msg: "certHash is not the hash of the issued certificate", prot: prot}
	}
	tx.Phase = PhaseConfirmed
	if len(st.StatusInfo.StatusString)+st.StatusInfo.Status > 0 && Status(st.StatusInfo.Status) == StatusRejection {
		// The client rejected the certificate: it never becomes usable.
		tx.Phase = PhaseRejected
		if _, err := svc.CA.Revoke(tx.Serial, reasonCessation, time.Now()); err != nil && !errors.Is(err, store.ErrRevoked) {
			return nil, err
		}
	}
	var nonce []byte
	prot.nonce = &nonce
	der, err := f.build(m, prot, BodyPKIConf, asn1.NullRawValue, nil, nil)
	if err != nil {
		return nil, err
	}
	tx.Nonce = nonce
	if err := f.txs.Update(name, tx, rev); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, &pkiError{fail: FailBadRequest, msg: "the transaction changed meanwhile", prot: prot}
		}
		return nil, err
	}
	return der, nil
}

// reasonCessation revokes certificates that were never confirmed.
const reasonCessation = 5

// certHashAlg is the certConf hash: hashAlg when given, else the hash of
// the certificate's signature algorithm (RFC 9810 §5.3.18).
func certHashAlg(cert *x509.Certificate, alg pkix.AlgorithmIdentifier) (crypto.Hash, error) {
	if len(alg.Algorithm) > 0 {
		if h, ok := digestOf(alg.Algorithm); ok && h != crypto.SHA1 {
			return h, nil
		}
		return 0, errors.New("unsupported certConf hashAlg")
	}
	switch cert.SignatureAlgorithm {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		return crypto.SHA384, nil
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS, x509.PureEd25519:
		return crypto.SHA512, nil
	}
	return crypto.SHA256, nil
}

// pollReq answers a waiting transaction: its certificate, or pollRep.
func (f *Frontend) pollReq(ctx context.Context, svc *enroll.Service, l *Label, m *Message, prot *protector) ([]byte, error) {
	name, tx, _, err := f.loadTx(l, m, prot)
	if err != nil {
		return nil, err
	}
	var polls []PollReq
	if err := m.content(&polls); err != nil || len(polls) != 1 || polls[0].CertReqID == nil || polls[0].CertReqID.Int64() != tx.CertReqID {
		return nil, &pkiError{fail: FailBadRequest, msg: "pollReq must name the request's certReqId", prot: prot}
	}
	if tx.Phase != PhaseWaiting {
		return nil, &pkiError{fail: FailBadRequest, msg: fmt.Sprintf("the transaction is %s, not waiting", tx.Phase), prot: prot}
	}
	// One job per transaction: polling only waits for it.
	return f.answerCert(ctx, svc, l, m, prot, name, tx, time.Second)
}

// enrollRequest turns ir/cr (one CertReqMsg with signature PoP) or p10cr
// into an enrollment request under the label's and the secret's names.
func (f *Frontend) enrollRequest(l *Label, m *Message, sec *secretUse) (enroll.Request, int64, error) {
	who := enroll.Principal{Frontend: enroll.FrontendCMP, Label: l.name, Names: l.Names}
	if sec != nil {
		who.User = "cmp-secret:" + sec.s.Ref
		who.Names = l.Names.Join(sec.s.Names)
	}
	req := enroll.Request{Profile: l.Profile, Principal: who, Vars: maps.Clone(l.Vars)}
	if m.Type() == BodyP10CR {
		csr, err := x509x.ParseCertificateRequest(m.Body.Bytes)
		if err != nil {
			return req, 0, refuse(FailBadPOP, "the PKCS#10 request does not verify: %v", err)
		}
		req.CSR = csr.Raw
		return req, -1, nil
	}
	var msgs []CertReqMsg
	if err := m.content(&msgs); err != nil {
		return req, 0, refuse(FailBadDataFormat, "%v", err)
	}
	if len(msgs) != 1 {
		return req, 0, refuse(FailBadRequest, "one certificate request per message")
	}
	cr := msgs[0].CertReq
	t := cr.CertTemplate
	if len(t.PublicKey.Bytes) == 0 {
		return req, 0, refuse(FailBadCertTemplate, "the template has no public key (central key generation is not enabled here)")
	}
	spki, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: t.PublicKey.Bytes})
	pub, err := algo.ParsePKIX(spki)
	if err != nil {
		return req, 0, refuse(FailBadAlg, "the template's public key: %v", err)
	}
	if err := checkPOP(msgs[0], pub); err != nil {
		return req, 0, err
	}
	p := f.profiles[l.Profile]
	vars, err := templateVars(t, p, req.Vars)
	if err != nil {
		return req, 0, err
	}
	req.Vars, req.PublicKey = vars, spki
	if cr.CertReqID == nil || !cr.CertReqID.IsInt64() {
		return req, 0, refuse(FailBadRequest, "certReqId")
	}
	return req, cr.CertReqID.Int64(), nil
}

// checkPOP verifies a signature proof of possession over the CertRequest.
func checkPOP(msg CertReqMsg, pub any) error {
	p := msg.POPO
	switch {
	case len(p.FullBytes) == 0:
		return refuse(FailBadPOP, "the request has no proof of possession")
	case p.Class == asn1.ClassContextSpecific && p.Tag == 1:
		var sk POPOSigningKey
		if rest, err := asn1.UnmarshalWithParams(p.FullBytes, &sk, "tag:1"); err != nil || len(rest) > 0 {
			return refuse(FailBadDataFormat, "POPOSigningKey: %v", err)
		}
		if len(sk.Input.FullBytes) > 0 {
			return refuse(FailBadPOP, "poposkInput is not accepted: the template must carry the subject")
		}
		if err := x509x.VerifySignedData(pub, sk.Algorithm.FullBytes, msg.CertReq.Raw, sk.Signature.RightAlign()); err != nil {
			return refuse(FailBadPOP, "the proof-of-possession signature does not verify")
		}
		return nil
	}
	return refuse(FailBadPOP, "only signature proof of possession is accepted")
}

// templateVars are the label's variables and the template's names, for
// the variables the profile declares.
func templateVars(t CertTemplate, p *profile.Profile, vars map[string]any) (map[string]any, error) {
	if vars == nil {
		vars = map[string]any{}
	}
	set := func(k string, v any) {
		if _, given := vars[k]; !given && p != nil && p.Var(k) != nil {
			vars[k] = v
		}
	}
	if len(t.Subject.Bytes) > 0 {
		var rdn pkix.RDNSequence
		if rest, err := asn1.Unmarshal(t.Subject.Bytes, &rdn); err != nil || len(rest) > 0 {
			return nil, refuse(FailBadCertTemplate, "the template's subject does not parse")
		}
		var n pkix.Name
		n.FillFromRDNSequence(&rdn)
		if n.CommonName != "" {
			set(profile.VarCN, n.CommonName)
		}
		for k, v := range map[string][]string{"o": n.Organization, "ou": n.OrganizationalUnit, "c": n.Country} {
			if len(v) > 0 {
				set(k, v[0])
			}
		}
	}
	for _, e := range t.Extensions {
		if !e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			continue
		}
		dns, ips, emails, uris, err := parseSAN(e.Value)
		if err != nil {
			return nil, refuse(FailBadCertTemplate, "subjectAltName: %v", err)
		}
		for k, v := range map[string][]string{profile.VarDNSNames: dns, profile.VarIPAddresses: ips, profile.VarEmails: emails, profile.VarURIs: uris} {
			if len(v) > 0 {
				set(k, v)
			}
		}
	}
	return vars, nil
}

// parseSAN reads a subjectAltName's names.
func parseSAN(der []byte) (dns, ips, emails, uris []string, err error) {
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &names); err != nil || len(rest) > 0 {
		return nil, nil, nil, nil, errors.New("malformed")
	}
	for _, n := range names {
		if n.Class != asn1.ClassContextSpecific {
			continue
		}
		switch n.Tag {
		case 1:
			emails = append(emails, string(n.Bytes))
		case 2:
			dns = append(dns, string(n.Bytes))
		case 6:
			uris = append(uris, string(n.Bytes))
		case 7:
			if len(n.Bytes) != 4 && len(n.Bytes) != 16 {
				return nil, nil, nil, nil, errors.New("bad IP address")
			}
			ips = append(ips, net.IP(n.Bytes).String())
		}
	}
	return
}

// sweepUnconfirmed revokes the certificates whose certConf did not come
// in time (RFC 9810 §5.3.18).
func (f *Frontend) sweepUnconfirmed() {
	tick := time.NewTicker(min(f.o.ConfirmTimeout/2, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tick.C:
			f.SweepOnce(time.Now())
		}
	}
}

// SweepOnce revokes what is unconfirmed at now.
func (f *Frontend) SweepOnce(now time.Time) {
	svc := f.service()
	if svc == nil {
		return
	}
	var list []string
	f.txs.List(func(name string, value []byte) error {
		list = append(list, name)
		return nil
	})
	for _, name := range list {
		var tx Transaction
		rev, err := f.txs.Get(name, &tx)
		if err != nil || tx.Phase != PhaseIssued || now.Before(tx.ConfirmBy) {
			continue
		}
		tx.Phase = PhaseRevoked
		if err := f.txs.Update(name, &tx, rev); err != nil {
			continue // a certConf came meanwhile
		}
		if _, err := svc.CA.Revoke(tx.Serial, reasonCessation, now); err != nil && !errors.Is(err, store.ErrRevoked) {
			f.log.Error("cmp: revoking an unconfirmed certificate", "serial", tx.Serial, "error", err)
			continue
		}
		f.log.Info("cmp: revoked a certificate never confirmed", "serial", tx.Serial)
	}
}

// certID names a signer certificate in a transaction's record.
func certID(c *x509.Certificate) string {
	return enroll.Principal{ClientCert: c}.ID()
}
