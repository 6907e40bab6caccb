package scep

import (
	"crypto/rand"
	"crypto/rsa"
	"strconv"
	"testing"

	"github.com/qpki/qpki/pkg/algo"
	"github.com/qpki/qpki/pkg/cms"
)

// FuzzPKIOperation feeds the PKIOperation parser (outer SignedData, SCEP
// attributes, signature check, envelope and its contents): it may refuse
// anything, never panic.
func FuzzPKIOperation(f *testing.F) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	cert := selfSigned(f, key)
	ra, err := newRA(cert, key)
	if err != nil {
		f.Fatal(err)
	}
	c := &client{t: f, key: key, cert: cert, ra: cert, cipher: cms.OIDAES128CBC}
	csr := c.csr("fuzz.example.com", "pw")
	f.Add(c.message(PKCSReq, "tx", csr))
	f.Add(c.message(CertPoll, "tx", []byte{0x30, 0x00}))
	s, _ := algo.NewSigner(key, algo.RSA2048)
	for _, typ := range []string{"19", "x", "999999999999"} {
		der, _ := cms.Sign(rand.Reader, []byte("junk"), cms.SignOptions{Signer: s, Certificate: cert, Attributes: []cms.Attribute{
			{Type: oidMessageType, Value: printable(typ)}, {Type: oidTransactionID, Value: printable("t")},
			{Type: oidSenderNonce, Value: make([]byte, nonceSize)}}})
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxBody {
			return
		}
		m, err := parseMessage(data)
		if err != nil {
			return
		}
		_ = m.Type.String() + strconv.Itoa(len(m.TransactionID))
		if fl := m.verify(true); fl != nil {
			return
		}
		plain, _, fl := m.decrypt(ra, true)
		if fl != nil {
			return
		}
		challengeOf(plain)
		var ias issuerAndSubject
		asn1Unmarshal(plain, &ias)
	})
}

func challengeOf(der []byte) {
	if csr, err := parseCSR(der); err == nil {
		challengePassword(csr)
	}
}
