package cmp

import "testing"

// FuzzParseMessage: the PKIMessage parser and the body parsers a request
// reaches never panic, whatever the bytes.
func FuzzParseMessage(f *testing.F) {
	fe := &Frontend{}
	fail := FailBadRequest
	if der, err := fe.build(&Message{Header: Header{PVNO: 2, TransactionID: make([]byte, 16), SenderNonce: make([]byte, 16)}},
		&protector{macAlg: NewPBMAlg(), secret: []byte("s"), kid: []byte("k")}, BodyError,
		ErrorMsgContent{Status: statusInfo(StatusRejection, &fail, "x")}, nil, nil); err == nil {
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(data)
		if err != nil {
			return
		}
		var msgs []CertReqMsg
		if m.content(&msgs) == nil {
			for _, c := range msgs {
				templateVars(c.CertReq.CertTemplate, nil, nil)
				checkPOP(c, nil)
			}
		}
		var st []CertStatus
		m.content(&st)
		var polls []PollReq
		m.content(&polls)
		var rr []RevDetails
		m.content(&rr)
		var gen []InfoTypeAndValue
		m.content(&gen)
		computeMAC(m.Header.ProtectionAlg, []byte("secret"), data)
		parseSAN(m.Body.Bytes)
	})
}
