package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The wire protocol between libqpki-testtoken and the daemon (see
// testtoken/lib/internal.h for the list of operations): frames of a 4-byte
// big-endian length and a payload of typed items, 'U' + 8-byte big-endian
// integer or 'B' + 4-byte big-endian length + bytes.
const (
	wireVersion   = 1
	maxFrame      = 4 << 20
	maxData       = 1 << 20 // data to sign, signatures, ciphertexts
	maxAttr       = 64 << 10
	maxTemplate   = 256
	maxPIN        = 255
	maxFindBatch  = 4096
	maxContextLen = 255
)

const (
	opHello        = 1
	opSlotList     = 2
	opSlotInfo     = 3
	opTokenInfo    = 4
	opMechList     = 5
	opMechInfo     = 6
	opInitToken    = 7
	opInitPIN      = 8
	opSetPIN       = 9
	opOpenSession  = 10
	opCloseSession = 11
	opCloseAll     = 12
	opSessionInfo  = 13
	opLogin        = 14
	opLogout       = 15
	opDestroy      = 16
	opGetAttrs     = 17
	opSetAttrs     = 18
	opFindInit     = 19
	opFind         = 20
	opFindFinal    = 21
	opGenKeyPair   = 22
	opSignInit     = 23
	opSign         = 24
	opVerifyInit   = 25
	opVerify       = 26
	opEncapsulate  = 27
	opDecapsulate  = 28
)

const (
	modeLength = 0
	modeOutput = 1
	modeAbort  = 2
)

const (
	attrOK        = 0
	attrSensitive = 1
	attrInvalid   = 2
)

const (
	paramNone        = 0
	paramSignContext = 1
	paramRaw         = 2
)

var errMalformed = errors.New("malformed request")

func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func writeFrame(w io.Writer, payload []byte) error {
	if len(payload) > maxFrame {
		return fmt.Errorf("reply of %d bytes", len(payload))
	}
	buf := make([]byte, 4, 4+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	_, err := w.Write(append(buf, payload...))
	return err
}

// decoder reads items; the first malformed item sets err and every later
// read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) u64() uint64 {
	if d.err != nil || len(d.b) < 9 || d.b[0] != 'U' {
		d.err = errMalformed
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[1:9])
	d.b = d.b[9:]
	return v
}

// bytes returns an item of at most max bytes, as a copy.
func (d *decoder) bytes(max int) []byte {
	if d.err != nil || len(d.b) < 5 || d.b[0] != 'B' {
		d.err = errMalformed
		return nil
	}
	n := binary.BigEndian.Uint32(d.b[1:5])
	if uint64(n) > uint64(len(d.b)-5) || uint64(n) > uint64(max) {
		d.err = errMalformed
		return nil
	}
	v := append([]byte(nil), d.b[5:5+n]...)
	d.b = d.b[5+n:]
	return v
}

// count reads a list length of at most max.
func (d *decoder) count(max int) int {
	n := d.u64()
	if n > uint64(max) {
		d.err = errMalformed
		return 0
	}
	return int(n)
}

// template reads T = U n, (U type, B value)...
func (d *decoder) template() []attribute {
	n := d.count(maxTemplate)
	out := make([]attribute, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		t := d.u64()
		v := d.bytes(maxAttr)
		out = append(out, attribute{typ: t, value: v})
	}
	return out
}

// mechanism reads M = U type, U kind, kind-specific fields.
func (d *decoder) mechanism() mechanism {
	m := mechanism{typ: d.u64()}
	switch kind := d.u64(); kind {
	case paramNone:
	case paramSignContext:
		m.hasContext = true
		m.hedge = d.u64()
		m.context = d.bytes(maxContextLen)
	case paramRaw:
		m.raw = d.bytes(maxAttr)
		m.hasRaw = true
	default:
		d.err = errMalformed
	}
	return m
}

// done reports whether the request was well formed and fully read.
func (d *decoder) done() bool {
	if d.err == nil && len(d.b) != 0 {
		d.err = errMalformed
	}
	return d.err == nil
}

type encoder struct{ b []byte }

func (e *encoder) u64(v uint64) {
	e.b = append(e.b, 'U')
	e.b = binary.BigEndian.AppendUint64(e.b, v)
}

func (e *encoder) bytes(v []byte) {
	e.b = append(e.b, 'B')
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(len(v)))
	e.b = append(e.b, v...)
}

func (e *encoder) str(s string) { e.bytes([]byte(s)) }
