// Package scep is qpki's Simple Certificate Enrolment Protocol front-end
// (RFC 8894), for MDM-managed devices (Intune, Jamf) and network gear. It
// turns SCEP requests into enroll jobs and holds no CA key.
//
// # Endpoints
//
// /scep serves the default: label of --scep-config, /scep/<label> each
// label; both also with /pkiclient.exe appended, as Cisco-style clients
// send. They answer on the plain-HTTP listener (--http-listen), where
// SCEP clients usually talk, and on HTTPS, with GET and POST:
//
//	operation=GetCACaps      AES GetNextCACert POSTPKIOperation Renewal SHA-256 SHA-512 SCEPStandard
//	operation=GetCACert      the RA and CA certificates, degenerate PKCS#7
//	operation=GetNextCACert  the pending version's certificate after `qpki ca rotate --pending`
//	operation=PKIOperation   a pkiMessage: POST body, or GET message= in base64
//
// A PKIOperation message is at most MaxBody (256 KiB); a larger one is
// answered 413, one that cannot be parsed as a pkiMessage (no single
// signer, no transactionID or 16-byte senderNonce) 400 with a line of
// text. Every other refusal is a CertRep with pkiStatus FAILURE and a
// failInfo (badAlg, badMessageCheck, badRequest, badCertId), its reason
// in the log and in the X-SCEP-Reason header; nothing is issued.
//
// # Messages
//
// PKCSReq and RenewalReq carry a CSR, CertPoll (GetCertInitial) an
// IssuerAndSubject, GetCert and GetCRL an IssuerAndSerialNumber, each in
// an EnvelopedData encrypted to the RA's certificate and signed by the
// client: a self-signed certificate of the CSR's key for PKCSReq, the
// certificate being renewed for RenewalReq. Content encryption is
// AES-128-CBC or AES-256-CBC, DES-CBC and DES-EDE3-CBC only on a label
// with legacy_des: true (Debian's scepclient 2.1 always sends single DES
// and signs with SHA-1, which such a label accepts too); signatures are
// SHA-256 or SHA-512 (SHA-384 is accepted). A CertRep is signed by the
// RA, echoes the transactionID, carries the request's senderNonce as
// recipientNonce and a fresh senderNonce (RFC 8894 §3.2.1), and for
// SUCCESS its certificates (or CRL) are encrypted to the requester in the
// request's own cipher.
//
// # Jobs and pending requests
//
// A PKCSReq's job key is its label, transactionID and challenge; a
// RenewalReq's its label, transactionID and the serial renewed. The same
// request sent again (scepclient resends the identical PKCSReq every 30 s
// instead of polling) is the same job, never a second certificate, and a
// challenge redeemed by a transaction stays usable by that transaction
// only. When the queue has not answered within Options.Wait
// (--scep-wait, 5 s) the answer is PENDING; CertPoll with the same
// transactionID and label then finds the job (recorded in the challenge
// store) and returns its certificate to the holder of its key.
//
// # Challenges and names
//
// Each label's challenge is one-time (the default: passwords from `qpki
// scep challenge add`, stored as SHA-256 hashes in
// <data-dir>/scep-challenges.db, or with --store jetstream in the
// QPKI_<ca>_SCEPCHALLENGES bucket every front-end shares; each usable by
// one transaction, before it expires, on its label), static (one
// password from the environment variable password_env names; Jamf
// style) or a webhook that receives the CSR's subject, names and
// challenge as JSON over TLS and answers {"allow": true} (Intune-style
// dynamic validation). A request is issued only the names its label's
// policy (names:, enroll.NamePolicy) joined with the challenge's grants
// allows: a one-time challenge's --allow-* names, exactly the CSR's
// names for an allowing webhook, the renewed certificate's names for a
// RenewalReq. A device that names its host only in the CN matches the
// grant with it.
//
// Renewal is allowed only for a certificate issued by this CA, recorded,
// unrevoked and unexpired, issued through SCEP on the same label (the
// store's Origin), and signed with its key.
//
// # The RA
//
// Clients encrypt to the RA, which signs the answers: an RSA key (SCEP
// clients encrypt to RSA only), whatever the CA's own algorithm is,
// certified by the CA under the scep/ra profile and kept in
// <ca-dir>/scep/ra.key, never the CA key, which stays in the worker or
// the HSM. serve issues it through the queue at first start when the CA
// has none; `qpki scep ra issue` makes or replaces it. GetCACert returns
// it with the CA's chain; a client that encrypts to every certificate it
// gets and knows only RSA (scepclient) must be given the RA's
// fingerprint (-ca-fingerprint) when the CA is not RSA.
//
// # Several CAs
//
// A label's ca: names a CA by its directory's base name. MountAll takes
// every CA a server hosts; serve hosts one today, so ca: is that one or
// absent.
package scep
